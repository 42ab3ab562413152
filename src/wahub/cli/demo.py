"""``wahub demo``: the whole product on this machine, checked end to end."""

from __future__ import annotations

from typing import Annotated

import typer

from wahub.cli.common import console, run, usage_error


def demo(
    messages: Annotated[int, typer.Option(help="How many messages to send.")] = 2000,
    chats: Annotated[int, typer.Option(help="Over how many chats.")] = 50,
    campaign: Annotated[
        bool,
        typer.Option(help="Then a campaign to the same people, half of whom reply."),
    ] = True,
    web: Annotated[
        bool,
        typer.Option(
            help="Then link a sandbox phone by QR (drawn here) and send to a group through it."
        ),
    ] = True,
) -> None:
    """Show the whole product on this machine: hub + sandbox, live statuses, a checked summary.

    Exits non-zero unless every message reached a final state and the sandbox received
    each exactly once; with the campaign, also unless every reply was stored once and the
    funnel equals a recount; with the web act, also unless the phone linked and its group
    message was read.
    """
    from wahub.demo import run_demo

    if not 1 <= chats <= 100:
        raise usage_error("--chats must be 1 to 100")
    result = run(
        lambda: run_demo(
            messages=messages, chats=chats, console=console, campaign=campaign, web=web
        )
    )
    raise typer.Exit(0 if result.ok else 1)
