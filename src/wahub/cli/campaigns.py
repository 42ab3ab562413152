"""``wahub campaigns`` and ``wahub stats``: bulk template sends and their exact funnels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub, operator, usage_error
from wahub.cli.output import emit, render

app = typer.Typer(
    help="Campaigns: bulk template sends with live per-template funnels.", no_args_is_help=True
)
stats_app = typer.Typer(help="Campaign counters and their exactness.", no_args_is_help=True)

CampaignArg = Annotated[str, typer.Argument(help="The campaign's id.")]


def template_option(text: str) -> dict[str, Any]:
    """``name:language[:weight][:col1,col2]`` -> a template object."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise typer.BadParameter(f"{text!r}: use name:language[:weight][:column,column]")
    spec: dict[str, Any] = {"name": parts[0], "language": parts[1]}
    for extra in parts[2:]:
        try:
            spec["weight"] = float(extra)
        except ValueError:
            spec["parameters"] = [c for c in extra.split(",") if c]
    return spec


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="The campaign's name.")],
    template: Annotated[
        list[str],
        typer.Option(
            help="name:language[:weight][:col1,col2] (repeat for a split); the columns are "
            "the CSV columns filling the body parameters, in order."
        ),
    ],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Audience: phone plus variable columns.")
    ] = None,
    contacts: Annotated[bool, typer.Option(help="Audience: every contact.")] = False,
    channel: Annotated[
        str | None, typer.Option(help="Channel name or id (omit if only one).")
    ] = None,
    start_at: Annotated[
        str | None, typer.Option(help="ISO 8601 time to start by itself (default: on start).")
    ] = None,
    reply_window_hours: Annotated[float | None, typer.Option(min=0.01)] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a scheduled campaign; rows of the CSV that cannot be used are listed."""
    from datetime import datetime

    from wahub.features.campaigns import CampaignCreate

    if (csv_file is None) == (not contacts):
        raise usage_error("give exactly one of --csv FILE and --contacts")
    start = datetime.fromisoformat(start_at).timestamp() if start_at else None
    request = CampaignCreate(
        name=name,
        channel_id=channel,
        templates=[template_option(t) for t in template],
        audience="contacts" if contacts else "csv",
        start_at=start,
        reply_window_hours=reply_window_hours,
    )
    text = csv_file.read_text(encoding="utf-8-sig") if csv_file is not None else None
    created = on_hub(database, lambda hub: hub.campaigns.create(operator(), request, text))
    result = {
        "campaign": created.campaign,
        "accepted": created.accepted,
        "rejected": [e.as_json() for e in created.rejected],
    }

    def human(value: dict[str, Any]) -> None:
        campaign = value["campaign"]
        console.print(
            f"campaign {campaign['id']} ({campaign['name']}) {campaign['status']}: "
            f"{value['accepted']} recipient(s) accepted, {len(value['rejected'])} rejected"
        )
        if value["rejected"]:
            console.print(render(value["rejected"]))

    emit(result, as_json, human)


@app.command("list")
def list_campaigns(
    status: Annotated[str | None, typer.Option(help="Only campaigns in this state.")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Campaigns, newest first."""
    rows = on_hub(database, lambda hub: hub.campaigns.list_campaigns(status=status))

    def human(value: list[dict[str, Any]]) -> None:
        console.print(render([{k: r[k] for k in ("id", "status", "name")} for r in value]))

    emit(rows, as_json, human)


def _act(action: str, campaign_id: str, database: str | None, as_json: bool) -> None:
    row = on_hub(database, lambda hub: hub.campaigns.act(operator(), campaign_id, action))
    emit(row, as_json, lambda r: console.print(f"{r['id']}  {r['status']}"))


@app.command("start")
def start(campaign_id: CampaignArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Start a campaign now: the workers queue its recipients, paced by its channel."""
    _act("start", campaign_id, database, as_json)


@app.command("pause")
def pause(campaign_id: CampaignArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Pause a running campaign: no more recipients are queued (those already queued
    are still sent) until it is resumed."""
    _act("pause", campaign_id, database, as_json)


@app.command("resume")
def resume(
    campaign_id: CampaignArg, database: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """Resume a paused campaign: queuing its remaining recipients goes on."""
    _act("resume", campaign_id, database, as_json)


@app.command("cancel")
def cancel(
    campaign_id: CampaignArg, database: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """Cancel a campaign for good: its recipients not yet queued are never sent."""
    _act("cancel", campaign_id, database, as_json)


@app.command("stats")
def stats(campaign_id: CampaignArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """The funnel per template, totals and rates."""
    emit(on_hub(database, lambda hub: hub.campaigns.stats(campaign_id)), as_json)


@stats_app.command("verify")
def verify(
    campaign: Annotated[str | None, typer.Option(help="One campaign (default: all).")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recount every funnel from messages (and inbound messages for replies) and report
    each counter that differs. Exits 1 when any does."""
    differences = on_hub(database, lambda hub: hub.campaigns.verify(campaign))

    def human(_: Any) -> None:
        if not differences:
            console.print("every counter equals its recount")
        for d in differences:
            console.print(
                f"{d['campaign_id']} {d['template_name']} {d['counter']}: "
                f"stored {d['stored']}, recount {d['recounted']}"
            )

    emit({"consistent": not differences, "differences": differences}, as_json, human)
    if differences:
        raise typer.Exit(1)
