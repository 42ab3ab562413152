"""``wahub sandbox``: the fake provider on its own, so it outlives hub crashes."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from wahub.cli.common import console


def sandbox(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9090,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to POST signed status webhooks.")
    ] = None,
    app_secret: Annotated[
        str | None,
        typer.Option(
            help="Secret the webhooks are signed with: the hub's WAHUB_CLOUDAPI_APP_SECRET "
            "(default: that variable, else a random one, printed at start).",
            envvar="WAHUB_CLOUDAPI_APP_SECRET",
            show_envvar=False,
        ),
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="Added latency per send.")] = 0.0,
    fail_fraction: Annotated[
        float, typer.Option(help="Fraction of sends whose status ends in failed.")
    ] = 0.0,
    duplicate_fraction: Annotated[
        float, typer.Option(help="Fraction of webhooks delivered twice.")
    ] = 0.0,
    shuffle: Annotated[
        bool, typer.Option(help="Deliver a message's statuses out of order.")
    ] = False,
) -> None:
    """Run the fake Cloud API provider standalone (it outlives hub crashes)."""
    from wahub.logs import configure_logging
    from wahub.providers.sandbox import SandboxConfig, run_sandbox

    configure_logging("INFO")
    if app_secret is None:
        # Printed: the hub needs it, and a sandbox's secret protects nothing real.
        app_secret = secrets.token_urlsafe(24)
        console.print(
            f"signing webhooks with a random app secret: {app_secret}\n"
            "  (start the hub with WAHUB_CLOUDAPI_APP_SECRET set to it)",
            soft_wrap=True,
        )
    config = SandboxConfig(
        webhook_url=webhook_url,
        app_secret=app_secret,
        latency_ms=latency_ms,
        fail_fraction=fail_fraction,
        duplicate_fraction=duplicate_fraction,
        shuffle=shuffle,
    )
    run_sandbox(config, host, port)
