"""Named queries for auto-reply rules and the log that rate-limits them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, or_, select, update

from wahub.domain.status import Status
from wahub.store.database import in_one_hop
from wahub.store.messages import EventRecord, record_events_sync
from wahub.store.schema import auto_reply_log, auto_reply_rules, messages


def insert_rule_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(auto_reply_rules.insert(), row)


def get_rule_sync(conn: SyncConnection, rule_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(auto_reply_rules).where(auto_reply_rules.c.id == rule_id)).first()
    return None if row is None else dict(row._mapping)


def list_rules_sync(conn: SyncConnection) -> list[dict[str, Any]]:
    stmt = select(auto_reply_rules).order_by(auto_reply_rules.c.created_at, auto_reply_rules.c.id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def update_rule_sync(conn: SyncConnection, rule_id: str, values: dict[str, Any]) -> bool:
    result = conn.execute(
        update(auto_reply_rules).where(auto_reply_rules.c.id == rule_id).values(values)
    )
    return bool(result.rowcount)


def delete_rule_sync(conn: SyncConnection, rule_id: str) -> bool:
    """Delete a rule and its log (its cooldowns end with it)."""
    conn.execute(auto_reply_log.delete().where(auto_reply_log.c.rule_id == rule_id))
    result = conn.execute(auto_reply_rules.delete().where(auto_reply_rules.c.id == rule_id))
    return bool(result.rowcount)


def enabled_rules_sync(conn: SyncConnection, channel_id: str) -> list[dict[str, Any]]:
    """Enabled rules for ``channel_id`` and for every channel, oldest first."""
    stmt = (
        select(auto_reply_rules)
        .where(
            auto_reply_rules.c.enabled.is_(True),
            or_(
                auto_reply_rules.c.channel_id.is_(None),
                auto_reply_rules.c.channel_id == channel_id,
            ),
        )
        .order_by(auto_reply_rules.c.created_at, auto_reply_rules.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def replied_recently_sync(conn: SyncConnection, rule_id: str, chat_id: str, since: float) -> bool:
    """Whether ``rule_id`` answered in ``chat_id`` at or after ``since`` (its cooldown)."""
    stmt = (
        select(auto_reply_log.c.id)
        .where(
            auto_reply_log.c.rule_id == rule_id,
            auto_reply_log.c.chat_id == chat_id,
            auto_reply_log.c.sent_at >= since,
        )
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


def count_chat_replies_sync(conn: SyncConnection, chat_id: str, since: float) -> int:
    """Auto-replies of any rule in ``chat_id`` at or after ``since``."""
    stmt = (
        select(func.count())
        .select_from(auto_reply_log)
        .where(auto_reply_log.c.chat_id == chat_id, auto_reply_log.c.sent_at >= since)
    )
    return int(conn.execute(stmt).scalar() or 0)


def log_reply_sync(
    conn: SyncConnection, *, rule_id: str, chat_id: str, message_id: str, now: float
) -> None:
    conn.execute(
        auto_reply_log.insert(),
        {"rule_id": rule_id, "chat_id": chat_id, "message_id": message_id, "sent_at": now},
    )


def insert_reply_message_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    """Queue an auto-reply in the outbox, with its ``queued`` event (source auto_reply)."""
    conn.execute(messages.insert(), row)
    record_events_sync(
        conn, [EventRecord(row["id"], Status.QUEUED, "auto_reply")], row["created_at"]
    )


# The async faces: each runs its whole body in one hop.
insert_rule = in_one_hop(insert_rule_sync)
get_rule = in_one_hop(get_rule_sync)
list_rules = in_one_hop(list_rules_sync)
update_rule = in_one_hop(update_rule_sync)
delete_rule = in_one_hop(delete_rule_sync)
