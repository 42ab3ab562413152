"""Events for subscribers, derived from the replication log.

The change log is already durable, in commit order and ordered per chat, so events are
read from it instead of being emitted by every writer: ``EventFanout`` is a replication
sink (shipped by the same ``Shipper``, from its own cursor ``@subscriptions``) whose
"delivery" stores one ``event_deliveries`` row per event per matching subscription. The
cursor moves only after those rows commit; a change derived twice (a shipper taking
over) stores nothing new, because an event's id is a function of the change.

What each change means (``derive_events``):

- ``messages`` insert of an inbound message: ``message.received``.
- ``message_events`` insert for an outbound message: ``message.status``, and also
  ``message.failed`` when the status is ``failed``.
- ``conversations`` insert or update: ``conversation.updated``.
- ``leads`` insert or update: ``lead.updated``.
- ``campaign_stats`` insert or update: ``campaign.progress``; once the campaign has
  finished (completed, cancelled or failed), ``campaign.completed`` once per template.
- ``chats`` update of a group with a sync time: ``group.synced``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.domain.subscription_events import (
    CAMPAIGN_COMPLETED,
    CAMPAIGN_PROGRESS,
    CONVERSATION_UPDATED,
    GROUP_SYNCED,
    LEAD_UPDATED,
    MESSAGE_FAILED,
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    Event,
    delivery_rows,
)
from wahub.replication.config import SinkSettings
from wahub.replication.shipper import Shipper
from wahub.replication.sinks.base import Outcomes
from wahub.store import changelog
from wahub.store import subscriptions as q
from wahub.store.changelog import Change
from wahub.store.database import Database
from wahub.store.schema import campaigns, messages

CURSOR_NAME = "@subscriptions"
FINISHED_CAMPAIGN = frozenset({"completed", "cancelled", "failed"})


@dataclass(frozen=True, slots=True)
class Context:
    """What a change alone does not say: a status event's message (channel, direction)
    and a campaign's status."""

    messages: dict[str, dict[str, Any]]
    campaign_status: dict[str, str]


def derive_events(change: Change, context: Context) -> list[Event]:
    """The events ``change`` means (none for most changes)."""
    data = change.data

    def event(kind: str, channel_id: Any, payload: dict[str, Any], key: str | None = None) -> Event:
        return Event(
            webhook_id=f"evt_{change.seq}_{kind}",
            type=kind,
            ordering_key=key or change.ordering_key,
            channel_id=None if channel_id is None else str(channel_id),
            data=payload,
            occurred_at=change.created_at,
        )

    if change.op == "delete":
        return []
    if change.table == "messages":
        if change.op == "insert" and data.get("direction") == "in":
            return [event(MESSAGE_RECEIVED, data.get("channel_id"), data)]
        return []
    if change.table == "message_events":
        message = context.messages.get(str(data.get("message_id")))
        if change.op != "insert" or message is None or message.get("direction") != "out":
            return []
        payload = {**data, "chat_id": message.get("chat_id"), "channel_id": message["channel_id"]}
        events = [event(MESSAGE_STATUS, message["channel_id"], payload)]
        if data.get("status") == "failed":
            events.append(event(MESSAGE_FAILED, message["channel_id"], payload))
        return events
    if change.table == "conversations":
        return [event(CONVERSATION_UPDATED, data.get("channel_id"), data)]
    if change.table == "leads":
        return [event(LEAD_UPDATED, None, data)]
    if change.table == "campaign_stats":
        campaign_id = str(data.get("campaign_id"))
        key = f"campaign:{campaign_id}"
        events = [event(CAMPAIGN_PROGRESS, None, data, key)]
        status = context.campaign_status.get(campaign_id)
        if status in FINISHED_CAMPAIGN:
            done = event(CAMPAIGN_COMPLETED, None, {**data, "status": status}, key)
            # Once per campaign and template, whichever change first sees it finished.
            template = data.get("template_name")
            events.append(
                Event(
                    f"evt_campaign_completed_{campaign_id}_{template}"[:80],
                    done.type,
                    done.ordering_key,
                    None,
                    done.data,
                    done.occurred_at,
                )
            )
        return events
    synced_group = change.op == "update" and data.get("kind") == "group"
    if change.table == "chats" and synced_group and data.get("last_synced_at"):
        return [event(GROUP_SYNCED, data.get("channel_id"), data)]
    return []


class EventFanout:
    """The replication sink that turns changes into stored deliveries."""

    name = CURSOR_NAME

    def __init__(self, db: Database, *, on_stored: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_stored = on_stored

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, changes: list[Change]) -> Outcomes:
        now = time.time()

        def store(conn: SyncConnection) -> int:
            subs = q.list_subscriptions_sync(conn)
            if not subs:
                return 0
            events: list[Event] = []
            context = _context(conn, changes)
            for change in changes:
                events.extend(derive_events(change, context))
            rows = delivery_rows(subs, events, now)
            q.insert_deliveries_sync(conn, rows)
            return len(rows)

        stored = await self.db.write(store)
        if stored and self.on_stored is not None:
            self.on_stored()
        return {}


def _context(conn: SyncConnection, changes: list[Change]) -> Context:
    message_ids = {str(c.data.get("message_id")) for c in changes if c.table == "message_events"}
    campaign_ids = {str(c.data.get("campaign_id")) for c in changes if c.table == "campaign_stats"}
    found: dict[str, dict[str, Any]] = {}
    if message_ids:
        rows = conn.execute(
            select(
                messages.c.id, messages.c.channel_id, messages.c.chat_id, messages.c.direction
            ).where(messages.c.id.in_(sorted(message_ids)))
        )
        found = {str(r.id): dict(r._mapping) for r in rows}
    status: dict[str, str] = {}
    if campaign_ids:
        rows = conn.execute(
            select(campaigns.c.id, campaigns.c.status).where(
                campaigns.c.id.in_(sorted(campaign_ids))
            )
        )
        status = {str(r.id): str(r.status) for r in rows}
    return Context(messages=found, campaign_status=status)


async def fanout_shipper(
    db: Database,
    *,
    owner: str,
    lease_seconds: float,
    poll_interval: float,
    on_stored: Callable[[], None] | None = None,
) -> Shipper:
    """The shipper reading the log into subscriptions' outboxes (its cursor made if new).

    Its failures are the database's (``store`` raising), retried with the shipper's
    backoff; ``max_attempts`` is high because giving up would drop events."""
    now = time.time()
    await db.write(lambda c: changelog.ensure_cursors_sync(c, [CURSOR_NAME], now))
    settings = SinkSettings(
        name="subscriptions",
        batch_size=500,
        max_attempts=1_000_000,
        backoff_base_seconds=0.5,
        backoff_max_seconds=30.0,
    )
    return Shipper(
        db,
        EventFanout(db, on_stored=on_stored),
        settings,
        owner=owner,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
    )
