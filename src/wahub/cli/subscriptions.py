"""``wahub subscriptions``: the CRM's event webhooks (docs/events.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub, usage_error
from wahub.cli.output import emit, render
from wahub.domain.subscription_events import EVENT_TYPES

app = typer.Typer(
    help="Event subscriptions: signed (Standard Webhooks) deliveries of hub events to a URL.",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="The subscription's id (sub_...).")]


def _when(value: Any) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_subscriptions(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every subscription with its state and deliveries (pending, delivered, dead)."""
    rows = on_hub(database, lambda hub: hub.subscriptions.all())

    def human(value: list[dict[str, Any]]) -> None:
        console.print(
            render(
                [
                    {
                        "id": r["id"],
                        "url": r["url"],
                        "events": ", ".join(r["event_types"]),
                        "state": "paused" if r["paused"] else "active",
                        "pending": r["deliveries"]["pending"],
                        "dead": r["deliveries"]["dead"],
                        "reason": r["paused_reason"] or "",
                    }
                    for r in value
                ]
            )
        )

    emit(rows, as_json, human)


@app.command("create")
def create(
    url: Annotated[str, typer.Option(help="http(s) URL receiving the events.")],
    event: Annotated[
        list[str],
        typer.Option(
            "--event",
            help="An event type (repeat the option): " + ", ".join(EVENT_TYPES) + ".",
        ),
    ],
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="Only this channel's events (repeatable; default all)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for operators.")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a subscription. Its signing secret is printed once."""
    created = on_hub(
        database,
        lambda hub: hub.subscriptions.create(
            url=url, event_types=event, channel_ids=channel or None, description=description
        ),
    )

    def human(value: dict[str, Any]) -> None:
        console.print(f"subscription {value['id']} -> {value['url']}; secret, shown once:")
        print(value["secret"])

    emit(created, as_json, human)


def _set_paused(subscription_id: str, paused: bool, database: str | None, as_json: bool) -> None:
    row = on_hub(database, lambda hub: hub.subscriptions.set_paused(subscription_id, paused))
    emit(
        row,
        as_json,
        lambda v: console.print(f"{v['id']}: {'paused' if v['paused'] else 'active'}"),
    )


@app.command("pause")
def pause(subscription_id: IdArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Stop delivering (events keep being stored for it)."""
    _set_paused(subscription_id, True, database, as_json)


@app.command("resume")
def resume(subscription_id: IdArg, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Deliver again, starting with what waited."""
    _set_paused(subscription_id, False, database, as_json)


@app.command("replay")
def replay(
    subscription_id: IdArg,
    delivery: Annotated[int | None, typer.Option(help="One delivery, by its id.", min=1)] = None,
    since: Annotated[
        dt.datetime | None,
        typer.Option(help="Deliveries created from this time (UTC), delivered or dead."),
    ] = None,
    until: Annotated[
        dt.datetime | None, typer.Option(help="... and before this time (UTC; default now).")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send deliveries again (same webhook-id, so receivers deduplicate)."""
    if (delivery is None) == (since is None):
        raise usage_error("give either --delivery or --since")

    def stamp(value: dt.datetime | None) -> float | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()

    queued = on_hub(
        database,
        lambda hub: hub.subscriptions.replay(
            subscription_id, delivery_id=delivery, since=stamp(since), until=stamp(until)
        ),
    )
    emit({"queued": queued}, as_json, lambda v: console.print(f"{v['queued']} queued again"))


@app.command("dead")
def dead_letters(
    subscription_id: IdArg,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The subscription's dead letters, newest first, with the last answer."""
    rows = on_hub(
        database,
        lambda hub: hub.subscriptions.deliveries(subscription_id, state="dead", limit=limit),
    )

    def human(value: list[dict[str, Any]]) -> None:
        console.print(
            render(
                [
                    {
                        "id": r["id"],
                        "event": r["event_type"],
                        "webhook_id": r["webhook_id"],
                        "attempts": r["attempts"],
                        "created": _when(r["created_at"]),
                        "last error": r["last_error"] or "",
                    }
                    for r in value
                ]
            )
        )

    emit(rows, as_json, human)
