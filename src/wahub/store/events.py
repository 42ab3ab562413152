"""Reading the status history as a feed (for realtime subscribers)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select

from wahub.store.database import in_one_hop
from wahub.store.schema import message_events, messages


def latest_event_id_sync(conn: SyncConnection) -> int:
    value = (conn.execute(select(func.max(message_events.c.id)))).scalar()
    return int(value or 0)


def events_after_sync(conn: SyncConnection, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Events newer than ``after_id`` with the message fields a subscriber filters on."""
    stmt = (
        select(
            message_events.c.id,
            message_events.c.message_id,
            message_events.c.status.label("event_status"),
            message_events.c.source,
            message_events.c.error_code,
            message_events.c.recorded_at,
            messages.c.status,
            messages.c.chat_id,
            messages.c.channel_id,
            messages.c.sender_user_id,
            messages.c.provider_message_id,
        )
        .join(messages, messages.c.id == message_events.c.message_id)
        .where(message_events.c.id > after_id)
        .order_by(message_events.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


# The async faces: each runs its whole body in one hop.
latest_event_id = in_one_hop(latest_event_id_sync)
events_after = in_one_hop(events_after_sync)
