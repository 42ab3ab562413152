"""Reading the status history as a feed (for realtime subscribers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Select, and_, func, select

from wahub.store.database import in_one_hop
from wahub.store.schema import conversations, message_events, messages


def latest_event_id_sync(conn: SyncConnection) -> int:
    value = (conn.execute(select(func.max(message_events.c.id)))).scalar()
    return int(value or 0)


def _feed() -> Select[Any]:
    return (
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
            messages.c.direction,
            messages.c.type.label("message_type"),
            messages.c.campaign_id,
            conversations.c.id.label("conversation_id"),
            conversations.c.unread_count,
        )
        .join(messages, messages.c.id == message_events.c.message_id)
        # The conversation lets a received message also announce its conversation.
        .outerjoin(
            conversations,
            and_(
                conversations.c.channel_id == messages.c.channel_id,
                conversations.c.chat_id == messages.c.chat_id,
            ),
        )
        .order_by(message_events.c.id)
    )


def events_after_sync(conn: SyncConnection, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Events newer than ``after_id`` with the message fields a subscriber filters on."""
    stmt = _feed().where(message_events.c.id > after_id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def events_by_ids_sync(conn: SyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The events among ``ids`` that exist (are committed) now, in id order."""
    if not ids:
        return []
    stmt = _feed().where(message_events.c.id.in_(ids))
    return [dict(r._mapping) for r in conn.execute(stmt)]


# The async faces: each runs its whole body in one hop.
latest_event_id = in_one_hop(latest_event_id_sync)
events_after = in_one_hop(events_after_sync)
events_by_ids = in_one_hop(events_by_ids_sync)
