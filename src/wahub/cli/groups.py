"""``wahub groups``: group directories synced from the providers, and lookup by phone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from wahub.cli.common import (
    DatabaseOpt,
    JsonOpt,
    console,
    err,
    on_hub,
    run,
    settings_for,
    with_hub,
)
from wahub.cli.output import emit, render

if TYPE_CHECKING:
    from wahub.features.groups import SyncReport
    from wahub.runtime import Hub

app = typer.Typer(
    help="Group directories: sync members, look phones up, cache health.", no_args_is_help=True
)


def duration_seconds(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds -> seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 7d, 12h, 30m or 90s") from None
    if seconds <= 0:
        raise typer.BadParameter("the duration must be positive")
    return seconds


@app.command("sync")
def sync(
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's groups.")
    ] = None,
    directory: Annotated[
        bool,
        typer.Option(
            "--directory", help="Every group the channels list, not only accounts' groups."
        ),
    ] = False,
    channel: Annotated[
        str | None, typer.Option("--channel", help="With --directory: only this channel.")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sync group members from the providers now (a failed group keeps its old members)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from wahub.api.groups import sync_out
    from wahub.features.groups import GroupSyncResult, SyncProgress

    class Bar(SyncProgress):
        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.task = progress.add_task("syncing groups", total=None)

        def started(self, total: int | None) -> None:
            self.progress.update(self.task, total=total)

        def advanced(self, result: GroupSyncResult) -> None:
            self.progress.advance(self.task)

    async def go(hub: Hub) -> SyncReport:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err, disable=as_json, transient=True) as progress:
            bar = Bar(progress)
            if directory:
                return await hub.group_sync.sync_directory(channel, progress=bar)
            return await hub.group_sync.sync_accounts(account, progress=bar)

    report = run(lambda: with_hub(settings_for(database), go))

    def human(_: Any) -> None:
        for result in report.groups:
            if not result.ok:
                console.print(f"[red]failed[/red] {result.chat_id}: {result.error}")
        for error in report.errors:
            console.print(f"[red]error[/red] {error}")
        console.print(
            f"{report.success_count} group(s) synced, {report.fail_count} failed, "
            f"{sum(g.members for g in report.groups)} member(s) stored"
        )

    emit(sync_out(report), as_json, human)


@app.command("cleanup")
def cleanup(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Remove members of groups not synced for this long (7d, 12h)."
        ),
    ] = "7d",
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached members of groups not synced successfully for --older-than, and of
    groups the provider says are gone. Linked-id links are kept."""
    seconds = duration_seconds(older_than)
    removed = on_hub(database, lambda hub: hub.groups.cleanup(older_than_seconds=seconds))
    emit(
        removed,
        as_json,
        lambda r: console.print(
            f"removed {r['members_removed']} member(s) of {r['groups']} group(s)"
        ),
    )


@app.command("health")
def health(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """How fresh and complete the member cache is (as GET /v1/groups/health)."""
    emit(on_hub(database, lambda hub: hub.groups.health()), as_json)


@app.command("lookup")
def lookup(
    phone: Annotated[str, typer.Argument(help="A phone number, in any usual spelling.")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which accounts' groups this phone is in, and with what rank."""
    found = on_hub(database, lambda hub: hub.groups.lookup(phone))
    result = {"phone": found.phone.e164, "forms": sorted(found.phone.forms), "data": found.matches}

    def human(value: dict[str, Any]) -> None:
        if not value["data"]:
            console.print(f"{value['phone']} is in no account's group")
            return
        console.print(
            render(
                [
                    {
                        "account": m["account_name"],
                        "group": m["group_name"] or m["chat_id"],
                        "rank": m["rank"],
                    }
                    for m in value["data"]
                ]
            )
        )

    emit(result, as_json, human)
