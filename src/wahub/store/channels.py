"""Named queries for channels, their templates and their ownership leases."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import and_, func, or_, select, text, update

from wahub.store import subscriptions as subscriptions_q
from wahub.store.database import in_one_hop
from wahub.store.schema import channels, chats, messages, templates
from wahub.store.sql import insert_ignore

_ACTIVE = channels.c.removed_at.is_(None)
# Taken by every transaction that adds, renames or renumbers a channel on PostgreSQL, so
# two concurrent ones cannot both pass the duplicate check (SQLite has one writer).
_CHANNEL_WRITE_LOCK = 0x77616863  # "wahc"
# Statuses of messages a channel still has to send, or whose send is not settled.
UNFINISHED = ("queued", "sending", "uncertain")


def insert_channel_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(channels.insert(), row)


def get_channel_sync(
    conn: SyncConnection, channel_id: str, *, include_removed: bool = False
) -> dict[str, Any] | None:
    """The channel with this id; a removed one only with ``include_removed``."""
    stmt = select(channels).where(channels.c.id == channel_id)
    if not include_removed:
        stmt = stmt.where(_ACTIVE)
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def find_channel_sync(conn: SyncConnection, ref: str) -> dict[str, Any] | None:
    """The channel ``ref`` names: its id, else its name (removed channels are gone)."""
    stmt = (
        select(channels)
        .where(_ACTIVE, or_(channels.c.id == ref, channels.c.name == ref))
        # An id wins over a name that happens to spell another channel's id.
        .order_by((channels.c.id == ref).desc())
        .limit(1)
    )
    row = conn.execute(stmt).first()
    return None if row is None else dict(row._mapping)


def list_channels_sync(
    conn: SyncConnection, *, include_removed: bool = False
) -> list[dict[str, Any]]:
    """Every channel by id; removed ones only with ``include_removed`` (the outbox, which
    still has to fail what a removed channel had queued)."""
    stmt = select(channels).order_by(channels.c.id)
    if not include_removed:
        stmt = stmt.where(_ACTIVE)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def lock_channel_writes_sync(conn: SyncConnection) -> None:
    """Serialize channel additions and renames until this transaction ends (PostgreSQL;
    SQLite's single writer already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHANNEL_WRITE_LOCK})


def find_duplicate_channel_sync(
    conn: SyncConnection,
    *,
    name: str,
    kind: str,
    phone_number_id: str | None,
    exclude_id: str | None = None,
) -> tuple[str, dict[str, Any]] | None:
    """An active channel other than ``exclude_id`` with this name, or with this
    (kind, phone_number_id): ``(field, channel)``, else None."""
    same_number = (
        and_(channels.c.kind == kind, channels.c.phone_number_id == phone_number_id)
        if phone_number_id is not None
        else None
    )
    clash = (
        channels.c.name == name
        if same_number is None
        else or_(channels.c.name == name, same_number)
    )
    stmt = select(channels).where(_ACTIVE, clash)
    if exclude_id is not None:
        stmt = stmt.where(channels.c.id != exclude_id)
    row = conn.execute(stmt.limit(1)).first()
    if row is None:
        return None
    found = dict(row._mapping)
    return ("name" if found["name"] == name else "phone_number_id", found)


def update_channel_sync(conn: SyncConnection, channel_id: str, values: dict[str, Any]) -> None:
    """Apply ``values``; a change of status, pause or removal is a ``channel.status``
    event for subscribers, stored in this transaction."""
    watched = set(subscriptions_q.CHANNEL_STATE_COLUMNS) & values.keys()
    before = subscriptions_q.channel_state_sync(conn, channel_id) if watched else None
    conn.execute(update(channels).where(channels.c.id == channel_id).values(values))
    if before is not None:
        subscriptions_q.announce_channel_state_sync(conn, channel_id, before, time.time())


def mark_channel_verified_sync(conn: SyncConnection, channel_id: str, now: float) -> bool:
    """Record that the channel's credentials just worked (a send or a check succeeded):
    ``connected`` from ``unverified`` (or any other state). False if it already was."""
    result = conn.execute(
        update(channels)
        .where(channels.c.id == channel_id, channels.c.status != "connected")
        .values(status="connected", verified_at=now)
        .returning(channels.c.id)
    )
    if result.first() is None:
        return False
    # No read before the update: this runs after sends, and usually changes nothing.
    subscriptions_q.announce_channel_state_sync(conn, channel_id, None, now)
    return True


def count_unfinished_messages_sync(conn: SyncConnection, channel_id: str) -> dict[str, int]:
    """How many of the channel's outbound messages are queued, sending or uncertain."""
    stmt = (
        select(messages.c.status, func.count().label("n"))
        .where(messages.c.channel_id == channel_id, messages.c.status.in_(UNFINISHED))
        .group_by(messages.c.status)
    )
    return {str(r.status): int(r.n) for r in conn.execute(stmt)}


def set_channel_base_url_sync(conn: SyncConnection, channel_id: str, base_url: str) -> None:
    conn.execute(update(channels).where(channels.c.id == channel_id).values(base_url=base_url))


def acquire_channel_leases_sync(
    conn: SyncConnection,
    *,
    owner: str,
    now: float,
    lease_seconds: float,
    limit: int | None = None,
) -> list[str]:
    """Take or renew the lease of every channel that is free, expired or already ours.

    A channel is paced by exactly one worker at a time; a worker that dies stops renewing
    and another picks its channels up once the lease runs out. With ``limit``, the
    worker renews what it owns and takes free channels only up to ``limit`` in all, so
    several workers share the channels instead of the first one taking them all.
    """
    lease = {"lease_owner": owner, "lease_until": now + lease_seconds, "heartbeat_at": now}
    # A paused channel is not leased: its messages wait, queued. A removed one is, so its
    # worker fails what comes due on it instead of leaving it queued for ever.
    # A web channel is sent by the session process holding its phone (its own lease,
    # store/sessions.py), never by a worker, which has no connection to send it through.
    sendable = and_(channels.c.paused.is_(False), channels.c.kind != "web")
    free = and_(
        sendable,
        or_(channels.c.lease_owner.is_(None), channels.c.lease_until < now),
    )
    if limit is None:
        rows = conn.execute(
            update(channels)
            .where(or_(free, and_(channels.c.lease_owner == owner, sendable)))
            .values(lease)
            .returning(channels.c.id)
        )
        return sorted(r.id for r in rows)
    mine = {
        r.id
        for r in conn.execute(
            update(channels)
            .where(channels.c.lease_owner == owner, sendable)
            .values(lease)
            .returning(channels.c.id)
        )
    }
    wanted = limit - len(mine)
    if wanted > 0:
        candidates = select(channels.c.id).where(free).order_by(channels.c.id).limit(wanted)
        if conn.dialect.name == "postgresql":
            # Evaluated once (see claim_due_messages_sync); rows another worker is taking
            # right now are skipped, and "free" is checked again after the lock.
            locked = candidates.with_for_update(skip_locked=True).cte("free_channels")
            target = channels.c.id.in_(select(locked.c.id))
        else:
            target = channels.c.id.in_(candidates.scalar_subquery())
        taken = conn.execute(
            update(channels).where(target, free).values(lease).returning(channels.c.id)
        )
        mine.update(r.id for r in taken)
    return sorted(mine)


def release_channel_leases_sync(conn: SyncConnection, *, owner: str, now: float) -> list[str]:
    """Give up every channel ``owner`` holds; returns their ids.

    ``lease_until`` keeps the release time: health measures from it how long a channel's
    queue has had no worker (a channel is free either way, its owner being empty).
    """
    rows = conn.execute(
        update(channels)
        .where(channels.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=now)
        .returning(channels.c.id)
    )
    return sorted(r.id for r in rows)


def upsert_template_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(
        templates.delete().where(
            and_(
                templates.c.channel_id == row["channel_id"],
                templates.c.name == row["name"],
                templates.c.language == row["language"],
            )
        )
    )
    conn.execute(templates.insert(), row)


def get_template_sync(
    conn: SyncConnection, channel_id: str, name: str, language: str
) -> dict[str, Any] | None:
    stmt = select(templates).where(
        templates.c.channel_id == channel_id,
        templates.c.name == name,
        templates.c.language == language,
    )
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def list_templates_sync(conn: SyncConnection, channel_id: str) -> list[dict[str, Any]]:
    stmt = select(templates).where(templates.c.channel_id == channel_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def get_chat_sync(conn: SyncConnection, chat_id: str) -> dict[str, Any] | None:
    row = (conn.execute(select(chats).where(chats.c.chat_id == chat_id))).first()
    return None if row is None else dict(row._mapping)


def ensure_chat_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    """Create the chat row on first use; an existing row is left as it is."""
    conn.execute(insert_ignore(conn, chats), row)


def upsert_group_chat_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    """Register or rename a group (admins may register groups before any provider sync)."""
    existing = get_chat_sync(conn, row["chat_id"])
    if existing is None:
        conn.execute(chats.insert(), row)
    else:
        # Re-registering changes only what was given: a missing name or channel keeps
        # the one stored.
        values = {
            k: v for k, v in row.items() if k not in ("chat_id", "created_at") and v is not None
        }
        conn.execute(update(chats).where(chats.c.chat_id == row["chat_id"]).values(values))


def list_chats_sync(conn: SyncConnection, chat_ids: Sequence[str] | None = None) -> list[Any]:
    stmt = select(chats).order_by(chats.c.chat_id)
    if chat_ids is not None:
        stmt = stmt.where(chats.c.chat_id.in_(chat_ids))
    return [dict(r._mapping) for r in conn.execute(stmt)]


# The async faces: each runs its whole body in one hop.
insert_channel = in_one_hop(insert_channel_sync)
get_channel = in_one_hop(get_channel_sync)
find_channel = in_one_hop(find_channel_sync)
list_channels = in_one_hop(list_channels_sync)
set_channel_base_url = in_one_hop(set_channel_base_url_sync)
lock_channel_writes = in_one_hop(lock_channel_writes_sync)
find_duplicate_channel = in_one_hop(find_duplicate_channel_sync)
update_channel = in_one_hop(update_channel_sync)
mark_channel_verified = in_one_hop(mark_channel_verified_sync)
count_unfinished_messages = in_one_hop(count_unfinished_messages_sync)
acquire_channel_leases = in_one_hop(acquire_channel_leases_sync)
release_channel_leases = in_one_hop(release_channel_leases_sync)
upsert_template = in_one_hop(upsert_template_sync)
get_template = in_one_hop(get_template_sync)
list_templates = in_one_hop(list_templates_sync)
get_chat = in_one_hop(get_chat_sync)
ensure_chat = in_one_hop(ensure_chat_sync)
upsert_group_chat = in_one_hop(upsert_group_chat_sync)
list_chats = in_one_hop(list_chats_sync)
