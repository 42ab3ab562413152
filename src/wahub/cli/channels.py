"""``wahub channels``: provider connections and their templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub
from wahub.cli.output import emit, render

if TYPE_CHECKING:
    from wahub.runtime import Hub

app = typer.Typer(help="Provider channels and their templates.", no_args_is_help=True)

ChannelArg = Annotated[str, typer.Argument(help="The channel's name or id.")]

# What `channels list` shows people; --json carries every public field.
_LIST_COLUMNS = (
    "id",
    "name",
    "kind",
    "phone_number",
    "phone_number_id",
    "status",
    "paused",
    "base_url",
)


@app.command("add")
def add(
    name: Annotated[str, typer.Option(help="A name for humans.")],
    token: Annotated[
        str,
        typer.Option(
            help="Cloud API access token, WHAPI channel token or Periskope API key "
            "(stored, never shown); web channels have none.",
            envvar="WAHUB_CHANNEL_TOKEN",
        ),
    ] = "",
    kind: Annotated[
        str,
        typer.Option(
            help="Provider: cloudapi, whapi, periskope or web (a WhatsApp Web session: "
            "link its phone with `wahub channels connect NAME`)."
        ),
    ] = "cloudapi",
    phone_number_id: Annotated[
        str | None, typer.Option(help="Cloud API phone number id (required for cloudapi).")
    ] = None,
    phone_number: Annotated[
        str | None,
        typer.Option(
            help="The channel's own number; for whapi it tells groups we left; for "
            "periskope it is the org phone (required)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="API base URL (default: the provider's; a sandbox URL for testing, "
            "e.g. http://127.0.0.1:PORT/whapi, or the sandbox's root for a web channel)."
        ),
    ] = None,
    api_version: Annotated[str, typer.Option(help="Graph API version.")] = "21.0",
    rate: Annotated[
        float | None,
        typer.Option(help="Messages per second for this number (default 80; web 0.5)."),
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a Cloud API, WHAPI, Periskope (chat names only) or WhatsApp Web channel.

    It is unverified until a send succeeds. An empty token, a name another channel has,
    or another channel's phone number id on the same provider is refused.
    """
    row = on_hub(
        database,
        lambda hub: hub.channels.create(
            name=name,
            kind=kind,
            phone_number_id=phone_number_id,
            phone_number=phone_number,
            access_token=token,
            base_url=base_url,
            api_version=api_version,
            rate_per_second=rate,
        ),
    )
    emit(row, as_json, lambda r: console.print(f"channel {r['name']} added: {r['id']}"))


@app.command("list")
def list_channels(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """List channels (never their credentials)."""
    rows = on_hub(database, lambda hub: hub.channels.list_all())

    def human(value: list[dict[str, Any]]) -> None:
        console.print(render([{c: r.get(c) for c in _LIST_COLUMNS} for r in value]))

    emit(rows, as_json, human)


@app.command("template")
def template(
    channel: ChannelArg,
    name: Annotated[str, typer.Option(help="Template name as approved by Meta.")],
    language: Annotated[str, typer.Option(help="Language code, e.g. en_US.")] = "en_US",
    body_parameters: Annotated[
        int, typer.Option(help="How many {{n}} parameters the body takes.")
    ] = 0,
    category: Annotated[
        str, typer.Option(help="utility, marketing or authentication.")
    ] = "utility",
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an approved template on a channel, so sends naming it are accepted."""
    on_hub(
        database,
        lambda hub: hub.channels.add_template(
            channel,
            name=name,
            language=language,
            body_parameters=body_parameters,
            category=category,
        ),
    )
    emit(
        {"channel": channel, "template": name, "language": language},
        as_json,
        lambda v: console.print(
            f"template {v['template']} ({v['language']}) registered on {v['channel']}"
        ),
    )


@app.command("update")
def update(
    channel: ChannelArg,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="A new token (stored sealed; the channel is unverified until a send works).",
            envvar="WAHUB_CHANNEL_TOKEN",
        ),
    ] = None,
    phone_number_id: Annotated[str | None, typer.Option(help="A new phone number id.")] = None,
    phone_number: Annotated[str | None, typer.Option(help="The channel's own number.")] = None,
    base_url: Annotated[str | None, typer.Option(help="A new API base URL.")] = None,
    api_version: Annotated[str | None, typer.Option(help="Graph API version.")] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second for this number.")] = None,
    paused: Annotated[
        bool | None,
        typer.Option(
            "--pause/--resume",
            help="Pause: workers leave its messages queued. Resume: they send them again.",
        ),
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a channel (by name or id); only the options given change."""
    row = on_hub(
        database,
        lambda hub: hub.channels.update(
            channel,
            name=name,
            access_token=token,
            phone_number_id=phone_number_id,
            phone_number=phone_number,
            base_url=base_url,
            api_version=api_version,
            rate_per_second=rate,
            paused=paused,
        ),
    )
    emit(
        row,
        as_json,
        lambda r: console.print(
            f"channel {r['name']} ({r['id']}) updated: {r['status']}"
            + (", paused" if r.get("paused") else "")
        ),
    )


@app.command("remove")
def remove(
    channel: ChannelArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove it even with messages queued: they fail with channel_removed.",
        ),
    ] = False,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a channel (by name or id); refused while it has messages to send.

    Its messages and chats are kept; its token is erased; its name and number can be
    used by a new channel.
    """
    removal = on_hub(database, lambda hub: hub.channels.remove(channel, force=force))
    emit(
        {"id": removal.channel_id, "removed": True, "failed_messages": removal.failed_messages},
        as_json,
        lambda v: console.print(
            f"channel {v['id']} removed"
            + (f"; {v['failed_messages']} queued message(s) failed" if v["failed_messages"] else "")
        ),
    )


@app.command("check")
def check(channel: ChannelArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Prove a channel's token with a provider call that sends nothing; on success the
    channel is stored as connected. Exits 1 when the provider refuses."""

    async def go(hub: Hub) -> dict[str, Any]:
        result = await hub.channels.check(channel, hub.providers)
        error = None if result.error is None else result.error.message
        return {"ok": result.ok, "channel": result.channel, "error": error}

    outcome = on_hub(database, go)

    def human(v: dict[str, Any]) -> None:
        name = v["channel"]["name"]
        if v["ok"]:
            console.print(f"channel {name}: connected")
        else:
            console.print(f"channel {name}: check failed: {v['error']}")

    emit(outcome, as_json, human)
    if not outcome["ok"]:
        raise typer.Exit(1)


@app.command("connect")
def connect(
    channel: ChannelArg,
    timeout: Annotated[
        float, typer.Option(min=1, help="Give up after this many seconds without a link.")
    ] = 300.0,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Link a web channel's phone: start its session, show each QR code in the terminal
    (scan it in WhatsApp: Settings > Linked devices) and wait until the session works.
    Needs the session process (`wahub serve`, or `wahub sessions`). Exits 1 when the
    session fails, is logged out, or no link came within --timeout."""

    async def go(hub: Hub) -> dict[str, Any]:
        return await link_phone(hub, channel, timeout_s=timeout, quiet=as_json)

    view = on_hub(database, go)
    emit(view, as_json, lambda v: console.print(f"linked as {(v['me'] or {}).get('phone')}"))
    if view["state"] != "working":
        raise typer.Exit(1)


async def link_phone(hub: Hub, ref: str, *, timeout_s: float, quiet: bool) -> dict[str, Any]:
    """Start ``ref``'s session and print its QR codes until it works, fails or
    ``timeout_s`` passes; returns the session as the API shows it."""
    import asyncio
    import time

    import segno

    from wahub.domain.errors import ConflictError

    started = time.time()
    view = await hub.web_sessions.start(ref)
    shown: str | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = await hub.web_sessions.status(ref)
        # A failure from before this start (the session is being reopened) is history.
        ended = view["state"] in ("failed", "logged_out") and (view["since"] or 0) >= started
        if view["state"] == "working" or ended:
            if view["state"] != "working" and not quiet:
                console.print(f"session {view['state']}: {view['reason']}")
            return view
        if view["state"] == "scan_qr":
            try:
                qr = await hub.web_sessions.qr(ref)
            except ConflictError:
                qr = None
            if qr is not None and qr.code != shown and not quiet:
                shown = qr.code
                segno.make(qr.code, error="l").terminal(compact=True)
                console.print("scan it in WhatsApp: Settings > Linked devices > Link a device")
        await asyncio.sleep(0.25)
    if not quiet:
        console.print(f"no link within {timeout_s:g} s (session {view['state']})")
    return view
