"""``wahub replicate``: the change log's sinks: status, pause, replay, backfill."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, err, on_hub
from wahub.cli.output import emit, render

if TYPE_CHECKING:
    from wahub.runtime import Hub

app = typer.Typer(
    help="Replication to sinks (WAHUB_REPLICATION_SINKS): status, pause, replay, backfill.",
    no_args_is_help=True,
)
SinkOpt = Annotated[str, typer.Option("--sink", "-s", help="The sink's name.")]


@app.command("status")
def status(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every sink's cursor, backlog, lag, dead letters and last error."""
    result = on_hub(database, lambda hub: hub.replication.status())

    def human(value: dict[str, Any]) -> None:
        rows = []
        for sink in value["sinks"]:
            state = "paused" if sink["paused"] else ("shipping" if sink["shipper"] else "idle")
            rows.append(
                {
                    "sink": sink["name"],
                    "kind": sink["kind"] or "-",
                    "state": state if sink["configured"] else "not configured",
                    "cursor": sink["last_seq"],
                    "pending": sink["pending"],
                    "lag s": f"{sink['lag_seconds']:.1f}",
                    "dead": sink["dead_letters"],
                    "last error": sink["last_error"] or "",
                }
            )
        console.print(render(rows))
        console.print(f"log head: {value['head_seq']}; status: {value['status']}")
        for error in value["config_errors"]:
            console.print(f"[red]config error[/red] {error}")

    emit(result, as_json, human)


@app.command("pause")
def pause(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Stop shipping to a sink (within a few seconds, in every process)."""
    on_hub(database, lambda hub: hub.replication.set_paused(sink, True))
    emit({"sink": sink, "paused": True}, as_json, lambda v: console.print(f"sink {sink} paused"))


@app.command("resume")
def resume(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Ship to a paused sink again, from its cursor."""
    on_hub(database, lambda hub: hub.replication.set_paused(sink, False))
    emit({"sink": sink, "paused": False}, as_json, lambda v: console.print(f"sink {sink} resumed"))


@app.command("dead-letters")
def dead_letters(
    sink: Annotated[str | None, typer.Option("--sink", "-s", help="Only this sink.")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Changes a sink refused or kept failing, with the reason."""
    letters = on_hub(database, lambda hub: hub.replication.dead_letters(sink))

    def human(value: list[dict[str, Any]]) -> None:
        for d in value:
            console.print(f"{d['sink']} #{d['seq']} {d['table_name']} {d['row_key']}: {d['error']}")
        console.print(f"{len(value)} dead letter(s)")

    emit(letters, as_json, human)


@app.command("replay")
def replay(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Send a sink's dead letters again, oldest first."""
    result = on_hub(database, lambda hub: hub.replication.replay(sink))
    emit(
        result,
        as_json,
        lambda r: console.print(f"{r['replayed']} replayed, {r['failed']} still failing"),
    )


@app.command("backfill")
def backfill(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Copy every existing row to a sink, then let it follow the log from there."""
    from rich.progress import Progress

    async def go(hub: Hub) -> dict[str, Any]:
        with Progress(console=err, disable=as_json) as bar:
            tasks: dict[str, Any] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=total)
                bar.update(tasks[table], completed=done, total=total)

            result: dict[str, Any] = await hub.replication.backfill(sink, progress=progress)
            return result

    def human(r: dict[str, Any]) -> None:
        rows = ", ".join(f"{n} {t}" for t, n in r["rows"].items())
        console.print(f"backfilled {sink} at log position {r['position']}: {rows}")

    emit(on_hub(database, go), as_json, human)


@app.command("forget")
def forget(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Drop the cursor of a sink no longer configured (it holds back log pruning)."""
    found = on_hub(database, lambda hub: hub.replication.forget(sink))
    emit(
        {"sink": sink, "forgotten": found},
        as_json,
        lambda v: console.print(
            f"sink {sink} forgotten" if found else f"no cursor for sink {sink}"
        ),
    )
