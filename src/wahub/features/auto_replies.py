"""Auto-reply rules: their admin use cases, and answering an inbound message.

Loop protection, all checked in the transaction that queues the reply (on PostgreSQL
that transaction already holds the conversation's row lock, taken when the inbound
message was folded into it, so two processes cannot both pass the checks for one chat):

- never an answer to our own number's messages (``from_me``) or to reactions and
  system notices (the caller does not ask);
- at most one reply per rule and chat per the rule's ``cooldown_seconds`` (default a
  day), so two bots answering each other stop after one round;
- at most ``max_per_chat_per_hour`` replies per chat across all rules;
- at most one reply per inbound message, and none to a message older than 24 hours (a
  replayed dead letter): WhatsApp would refuse a free-form reply then anyway.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.domain.errors import NotFound, ValidationError
from wahub.domain.ids import new_id
from wahub.domain.inbound import MATCH_KINDS, rule_matches, validate_rule
from wahub.features.outbound import queued_message
from wahub.store import auto_replies as q
from wahub.store import channels as channel_q
from wahub.store.database import Database

STALE_SECONDS = 24 * 3600


def queue_auto_reply_sync(
    conn: SyncConnection,
    *,
    channel_id: str,
    chat_id: str,
    text: str | None,
    at: float,
    first_message: bool,
    max_per_chat_per_hour: int,
    now: float,
) -> dict[str, Any] | None:
    """Queue the reply of the first matching rule that is not cooling down in this chat;
    returns the queued message row, or None when no rule answers.

    Keyword and regex rules are tried before first-message and outside-hours rules (the
    specific answer wins), each group oldest rule first.
    """
    if now - at > STALE_SECONDS:
        return None
    rules = q.enabled_rules_sync(conn, channel_id)
    if not rules:
        return None
    if q.count_chat_replies_sync(conn, chat_id, now - 3600) >= max_per_chat_per_hour:
        return None
    rules.sort(key=lambda r: MATCH_KINDS.index(r["match_kind"]) // 2)
    for rule in rules:
        try:
            matched = rule_matches(rule, text=text, at=at, first_message=first_message)
        except ValidationError:
            continue  # a rule stored before validation existed must not block inbound
        if not matched:
            continue
        if q.replied_recently_sync(conn, rule["id"], chat_id, now - rule["cooldown_seconds"]):
            continue
        row = queued_message(
            channel_id=channel_id,
            chat_id=chat_id,
            content={"type": "text", "text": {"body": rule["reply_text"]}},
            now=now,
            source="auto_reply",
        )
        q.insert_reply_message_sync(conn, row)
        q.log_reply_sync(conn, rule_id=rule["id"], chat_id=chat_id, message_id=row["id"], now=now)
        return row
    return None


_EDITABLE = (
    "name",
    "channel_id",
    "match_kind",
    "pattern",
    "reply_text",
    "business_hours",
    "enabled",
    "cooldown_seconds",
)


class AutoReplies:
    """Admin use cases for ``/v1/auto-replies``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add a rule. Raises ValidationError (bad kind, pattern, hours, unknown channel)."""
        now = time.time()
        row = {
            "id": new_id("ar"),
            "channel_id": None,
            "pattern": None,
            "business_hours": None,
            "enabled": True,
            "cooldown_seconds": 86400,
            **{k: v for k, v in fields.items() if k in _EDITABLE},
            "created_at": now,
            "updated_at": now,
        }
        validate_rule(row["match_kind"], row["pattern"], row["business_hours"])
        async with self.db.transaction() as conn:
            await self._check_channel(conn, row["channel_id"])
            await q.insert_rule(conn, row)
        return row

    async def list_all(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.list_rules(conn)

    async def get(self, rule_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await q.get_rule(conn, rule_id)
        if row is None:
            raise NotFound(f"no auto-reply rule {rule_id}")
        return row

    async def update(self, rule_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fields; the result is validated as a whole. NotFound, ValidationError."""
        current = await self.get(rule_id)
        values = {k: v for k, v in changes.items() if k in _EDITABLE}
        merged = {**current, **values}
        validate_rule(merged["match_kind"], merged["pattern"], merged["business_hours"])
        values["updated_at"] = time.time()
        async with self.db.transaction() as conn:
            await self._check_channel(conn, merged["channel_id"])
            if not await q.update_rule(conn, rule_id, values):
                raise NotFound(f"no auto-reply rule {rule_id}")
        return {**merged, "updated_at": values["updated_at"]}

    async def delete(self, rule_id: str) -> None:
        async with self.db.transaction() as conn:
            if not await q.delete_rule(conn, rule_id):
                raise NotFound(f"no auto-reply rule {rule_id}")

    @staticmethod
    async def _check_channel(conn: Any, channel_id: str | None) -> None:
        if channel_id is not None and await channel_q.get_channel(conn, channel_id) is None:
            raise ValidationError(
                f"channel_id: unknown channel {channel_id!r}", details={"field": "channel_id"}
            )
