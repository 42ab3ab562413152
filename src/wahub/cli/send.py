"""``wahub send``: queue one message from the command line, and follow it if asked."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError as PydanticValidationError

from wahub.cli.common import (
    DatabaseOpt,
    JsonOpt,
    console,
    err,
    operator,
    run,
    settings_for,
    with_hub,
)
from wahub.cli.output import emit

if TYPE_CHECKING:
    from wahub.domain.content import SendRequest
    from wahub.runtime import Hub

# How often --wait looks at the message: a status is a row, and reading it is cheap.
_POLL_SECONDS = 0.2


def send(
    to: Annotated[
        str, typer.Argument(help="A phone number (E.164, e.g. +4915123456789) or chat id.")
    ],
    text: Annotated[str | None, typer.Option(help="Send this text.")] = None,
    template: Annotated[
        str | None, typer.Option(help="Send this registered template (by name) instead.")
    ] = None,
    language: Annotated[str, typer.Option(help="The template's language code.")] = "en_US",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A body parameter of the template, in order (repeat)."),
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="Channel name or id (omit when there is one channel).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Sending again with the same key returns the first message."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow the status until it is final (delivered, read or failed); needs a "
            "running `wahub serve` or `wahub worker` on the same database.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="With --wait: give up after this many seconds.")
    ] = 60.0,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a text or template message for the workers to send.

    With --wait, print each status as it changes and exit 1 unless it ends delivered or
    read.
    """
    request = _request(to, text, template, language, param or [], channel)

    async def go(hub: Hub) -> dict[str, Any]:
        accepted = await hub.messaging.send(operator(), request, idempotency_key=idempotency_key)
        message = dict(accepted.message)
        if not as_json:
            verb = "queued" if accepted.created else "already queued (same idempotency key)"
            console.print(f"message {message['id']} {verb} to {message['chat_id']}")
        if wait:
            message = await _follow(hub, message, give_up_after=timeout, show=not as_json)
        return message

    message = run(lambda: with_hub(settings_for(database), go))
    if as_json:
        emit(message, True)
    if wait and message["status"] not in ("delivered", "read"):
        raise typer.Exit(1)


def _request(
    to: str,
    text: str | None,
    template: str | None,
    language: str,
    params: list[str],
    channel: str | None,
) -> SendRequest:
    from wahub.domain.content import SendRequest

    if (text is None) == (template is None):
        err.print("error: give exactly one of --text and --template")
        raise typer.Exit(2)
    body: dict[str, Any] = {"to": to, "channel_id": channel}
    if text is not None:
        body |= {"type": "text", "text": {"body": text}}
    else:
        components = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
        body |= {
            "type": "template",
            "template": {
                "name": template,
                "language": {"code": language},
                "components": components if params else [],
            },
        }
    try:
        return SendRequest.model_validate(body)
    except PydanticValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "message"
            err.print(f"error: {where}: {problem['msg']}")
        raise typer.Exit(2) from None


async def _follow(
    hub: Hub, message: dict[str, Any], *, give_up_after: float, show: bool
) -> dict[str, Any]:
    """Poll the message until its status is final or ``give_up_after`` seconds pass."""
    from wahub.domain.status import Status, is_final

    deadline = time.monotonic() + give_up_after
    seen = message["status"]
    if show:
        console.print(f"  {seen}")
    while not is_final(Status(message["status"])):
        if time.monotonic() > deadline:
            err.print(
                f"error: still {message['status']} after {give_up_after:g} s "
                "(is `wahub serve` or `wahub worker` running on this database?)"
            )
            return message
        await asyncio.sleep(_POLL_SECONDS)
        message = await hub.messaging.get(operator(), message["id"], with_history=False)
        if show and message["status"] != seen:
            seen = message["status"]
            detail = (
                f" ({message['error_code']}: {message['error_detail']})" if seen == "failed" else ""
            )
            console.print(f"  {seen}{detail}")
    return message
