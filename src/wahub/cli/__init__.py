"""The ``wahub`` command: everything an operator does.

One module per command group; this one only assembles them, so ``wahub --help`` and the
modules cannot disagree about what exists.
"""

from __future__ import annotations

from typing import Annotated

import typer

from wahub import __version__
from wahub.cli import (
    bench,
    campaigns,
    channels,
    chats,
    demo,
    groups,
    keys,
    migrate,
    replicate,
    sandbox,
    send,
    serve,
    sessions,
    settings,
    subscriptions,
    users,
    worker,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="wahub",
    help="Self-hosted WhatsApp messaging hub: durable outbox, verified webhooks, realtime status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"wahub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Self-hosted WhatsApp messaging hub: durable outbox, verified webhooks, realtime status."""


app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("sessions")(sessions.sessions)
app.command("sandbox")(sandbox.sandbox)
app.command("demo")(demo.demo)
app.command("migrate")(migrate.migrate)
app.command("send")(send.send)
app.command("settings")(settings.settings)
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(channels.app, name="channels")
app.add_typer(chats.app, name="chats")
app.add_typer(groups.app, name="groups")
app.add_typer(campaigns.app, name="campaigns")
app.add_typer(campaigns.stats_app, name="stats")
app.add_typer(replicate.app, name="replicate")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(bench.app, name="bench")


def main() -> None:
    app()
