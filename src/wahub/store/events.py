"""Reading the status history as a feed (for realtime subscribers)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from wahub.store.database import Connection
from wahub.store.schema import message_events, messages


async def latest_event_id(conn: Connection) -> int:
    value = (await conn.execute(select(func.max(message_events.c.id)))).scalar()
    return int(value or 0)


async def events_after(conn: Connection, after_id: int, limit: int) -> list[dict[str, Any]]:
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
    return [dict(r._mapping) for r in await conn.execute(stmt)]
