"""``/v1/notifications``: what inbound processing told the people who see a chat.

``record_inbound_sync`` writes one notification per inbound message, addressed to the
conversation's assigned user or, when nobody is assigned, to everyone who sees the chat.
A caller sees the ones addressed to them or to everyone, of conversations they may see:
admins and viewers every chat, agents the chats assigned to their employee groups and
the conversations assigned to them (the rule of ``/v1/conversations``).

``read_at`` is the notification's, not one reader's: whoever marks a notification for
everyone read marks it read for everyone, as marking its conversation read does.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.domain.actors import Actor
from wahub.domain.errors import NotFound, ValidationError
from wahub.domain.ids import MAX_SQL_INT
from wahub.features.conversations import MAX_PAGE
from wahub.store import conversations as q
from wahub.store.database import Database

# Notification ids are 64-bit integers: a larger number must not reach the driver.
MAX_ID = MAX_SQL_INT


@dataclass(frozen=True, slots=True)
class NotificationPage:
    rows: list[dict[str, Any]]
    next_before: int | None  # the ``before`` of the next page; None on the last one
    unread_count: int  # the caller's unread notifications, all pages


class Notifications:
    """List a caller's notifications and mark them read."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_page(
        self, actor: Actor, *, unread_only: bool, before: int | None, limit: int
    ) -> NotificationPage:
        """A page, newest first, and the caller's unread count, in one hop."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        if before is not None and not 1 <= before <= MAX_ID:
            raise ValidationError(
                "before: not an id returned by this API (use next_before as given)",
                details={"field": "before"},
            )
        rows, unread = await self.db.read_one(
            functools.partial(
                _page_sync,
                reader=_reader(actor),
                unread_only=unread_only,
                before=before,
                limit=limit,
            )
        )
        page = rows[:limit]
        next_before = page[-1]["id"] if len(rows) > limit else None
        return NotificationPage(page, next_before, unread)

    async def mark_read(self, actor: Actor, notification_id: int) -> dict[str, Any]:
        """The notification, read (a second call keeps the first ``read_at``). NotFound
        when absent or not visible to ``actor``."""
        row = None
        if 1 <= notification_id <= MAX_ID:
            row = await self.db.read_one(
                functools.partial(
                    q.get_visible_notification_sync,
                    reader=_reader(actor),
                    notification_id=notification_id,
                )
            )
        if row is None:
            raise NotFound(f"no notification {notification_id}")
        if row["read_at"] is not None:
            return row  # read already: nothing to write
        now = time.time()
        marked = await self.db.write(
            lambda conn: q.mark_notification_read_sync(conn, notification_id, now)
        )
        return marked if marked is not None else row

    async def mark_all_read(self, actor: Actor, *, conversation_id: str | None) -> int:
        """Every unread notification ``actor`` sees (of one conversation, when given)
        read; how many that was. NotFound for a conversation ``actor`` may not see."""
        reader = _reader(actor)
        now = time.time()

        def mark(conn: SyncConnection) -> int | None:
            if conversation_id is not None and not q.is_conversation_seen_by_sync(
                conn, reader, conversation_id
            ):
                return None
            return q.mark_notifications_read_sync(
                conn, reader, conversation_id=conversation_id, now=now
            )

        marked = await self.db.write(mark)
        if marked is None:
            raise NotFound(f"no conversation {conversation_id}")
        return marked


def _reader(actor: Actor) -> q.Reader:
    return q.Reader(
        user_id=actor.user_id, every_chat=actor.sees_everything, channel_ids=actor.channel_ids
    )


def _page_sync(
    conn: SyncConnection, *, reader: q.Reader, unread_only: bool, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int]:
    # One hop for both queries (Database.read_one). On PostgreSQL each statement sees its
    # own snapshot there, so a notification written between the two is in the count but
    # not yet in the page: the count is a badge and the next request agrees, where a
    # transaction would cost two more round trips on every page.
    rows = q.list_visible_notifications_sync(
        conn, reader, unread_only=unread_only, before=before, limit=limit + 1
    )
    return rows, q.count_unread_notifications_sync(conn, reader)
