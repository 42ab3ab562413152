"""The whole product on one machine: hub + HTTP server + (optionally) the sandbox provider.

Used by ``wahub demo``, ``wahub serve --sandbox``, ``wahub bench`` and the end-to-end
tests, so they all exercise the same wiring over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from pydantic import SecretStr

from wahub.config import Settings
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.store.migrate import upgrade
from wahub.webhook_secrets import refuse_placeholder_secrets, with_generated_secrets

SANDBOX_PHONE_NUMBER_ID = "100000000000001"
SANDBOX_TOKEN = "sandbox-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    hub: Hub
    url: str
    sandbox: Sandbox | None
    sandbox_url: str | None


async def start_server(app: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError(f"HTTP server did not start on {host}:{port}")
        await asyncio.sleep(0.01)
    return server, task


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings,
    *,
    sandbox_config: SandboxConfig | None = None,
    with_sandbox: bool = True,
    workers: bool = True,
    sandbox_channel: bool = False,
    sandbox_port: int = 0,
) -> AsyncIterator[Stack]:
    """Start the hub with its HTTP server (and the sandbox, pointed at the hub's webhook).

    Raises ``PlaceholderSecret`` when a receiver's secret is a known placeholder. With the
    sandbox, every signing receiver left unset gets a random secret for this run, which
    the sandbox signs with. ``sandbox_channel`` (``serve --sandbox``) also adds the
    sandbox channel, or points the one a previous run added at this run's sandbox, and
    makes it the default for sends without ``channel_id``, before any worker can lease it.
    ``sandbox_port`` 0 takes any free port.
    """
    from wahub.app import create_app  # the API layer imports the runtime, not vice versa

    refuse_placeholder_secrets(settings)
    port = settings.port or free_port()
    url = f"http://{settings.host}:{port}"
    sandbox: Sandbox | None = None
    sandbox_url: str | None = None
    if with_sandbox:
        settings = with_generated_secrets(settings)
        config = sandbox_config or SandboxConfig()
        config.webhook_url = f"{url}/v1/webhooks/cloudapi"
        config.app_secret = _secret(settings.cloudapi_app_secret) or ""
        # Simulated inbound traffic reaches this hub on every provider's receiver.
        config.whapi_webhook_url = f"{url}/v1/webhooks/whapi"
        config.whapi_webhook_secret = _secret(settings.whapi_webhook_secret)
        config.periskope_webhook_url = f"{url}/v1/webhooks/periskope"
        config.periskope_signing_key = _secret(settings.periskope_webhook_secret)
        sandbox = Sandbox(config)
        sandbox_url = await sandbox.start("127.0.0.1", sandbox_port)
    hub = Hub.build(settings)
    if sandbox_channel and sandbox_url is not None:
        # Before the workers start: one leasing the channel first would keep sending to
        # the previous run's sandbox port. (Migrating twice is a no-op.)
        await upgrade(hub.db)
        channel = await follow_sandbox(hub, sandbox_url)
        hub.messaging.default_channel_id = channel["id"]
    await hub.start(workers=workers)
    server, task = await start_server(create_app(settings, hub=hub), settings.host, port)
    try:
        yield Stack(hub, url, sandbox, sandbox_url)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.stop()
        if sandbox is not None:
            await sandbox.stop()


def _secret(value: SecretStr | None) -> str | None:
    return (value.get_secret_value() or None) if value is not None else None


async def follow_sandbox(hub: Hub, sandbox_url: str) -> dict[str, Any]:
    """The sandbox channel, pointed at ``sandbox_url``: added with its templates when
    missing, else the stored one (found by the sandbox's phone number id, whatever its
    name) with its base URL updated, so a database reused across runs follows the
    sandbox's new port instead of failing every send with "Cannot connect"."""
    for channel in await hub.channels.list_all():
        if channel["kind"] == "cloudapi" and channel["phone_number_id"] == SANDBOX_PHONE_NUMBER_ID:
            await hub.channels.set_base_url(channel["id"], sandbox_url)
            return {**channel, "base_url": sandbox_url.rstrip("/")}
    return await add_sandbox_channel(hub, sandbox_url)


async def describe_send_default(hub: Hub) -> str:
    """One line saying where a send without ``channel_id`` goes, for the start banner."""
    channel = await hub.messaging.default_channel()
    if channel is not None:
        return (
            f"sends without channel_id go to channel {channel['name']} ({channel['id']}, "
            f"{channel['kind']} at {channel['base_url']})"
        )
    count = len(await hub.channels.list_all())
    if count == 0:
        return "no channel yet: sends are refused until one is added (wahub channels add)"
    return f"{count} channels and no default: sends must name their channel_id"


async def add_sandbox_whapi_channel(
    hub: Hub, sandbox_url: str, *, config: SandboxConfig | None = None, name: str = "sandbox-whapi"
) -> dict[str, Any]:
    """A WHAPI channel on the sandbox's ``/whapi`` routes, with the sandbox's WHAPI token
    and own number (from ``config``, default ``SandboxConfig()``), so group listings tell
    the groups it left. Its ``phone_number_id`` is the sandbox's WHAPI ``channel_id``,
    which is how inbound WHAPI webhooks name the channel they are for."""
    config = config or SandboxConfig()
    return await hub.channels.create(
        name=name,
        kind="whapi",
        access_token=config.whapi_token or "sandbox-whapi-token",
        base_url=f"{sandbox_url}/whapi",
        phone_number="+" + config.whapi_own_phone,
        phone_number_id=config.whapi_channel_id,
    )


async def add_sandbox_channel(
    hub: Hub, sandbox_url: str, *, rate_per_second: float = 80.0, pair_interval_seconds: float = 6.0
) -> dict[str, Any]:
    """A Cloud API channel whose base URL is the sandbox, plus the demo's templates."""
    channel = await hub.channels.create(
        name="sandbox",
        phone_number_id=SANDBOX_PHONE_NUMBER_ID,
        access_token=SANDBOX_TOKEN,
        base_url=sandbox_url,
        phone_number="+15550001234",
        rate_per_second=rate_per_second,
        pair_interval_seconds=pair_interval_seconds,
    )
    await hub.channels.add_template(
        channel["id"], name="order_update", language="en_US", body_parameters=1, category="utility"
    )
    await hub.channels.add_template(
        channel["id"], name="welcome", language="en_US", body_parameters=0, category="marketing"
    )
    return channel
