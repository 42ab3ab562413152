"""Named queries for WhatsApp Web sessions: their state and its history, what the
operator asked of them, and the session leases that give one session process a phone.

Web channels are never leased by ``wahub worker`` (``acquire_channel_leases_sync``
skips them): their connection lives in a session process, which leases them here, on
columns of their own, so a second session process never opens the same phone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import and_, func, or_, select, update

from wahub.store.database import in_one_hop
from wahub.store.notify import EVENTS, notify_sync
from wahub.store.schema import channel_state_history, channels, messages

WEB = "web"
_WEB_ACTIVE = and_(channels.c.kind == WEB, channels.c.removed_at.is_(None))


def acquire_session_leases_sync(
    conn: SyncConnection, *, owner: str, now: float, lease_seconds: float, limit: int
) -> list[dict[str, Any]]:
    """Take or renew the session lease of web channels: every one ``owner`` holds, and
    free or expired ones up to ``limit`` in all. Returns the held channel rows.

    A session process that dies stops renewing; another takes its phones once the
    lease runs out (and resumes them from their stored credentials).
    """
    lease = {"session_lease_owner": owner, "session_lease_until": now + lease_seconds}
    mine = {
        r.id
        for r in conn.execute(
            update(channels)
            .where(_WEB_ACTIVE, channels.c.session_lease_owner == owner)
            .values(lease)
            .returning(channels.c.id)
        )
    }
    free = and_(
        _WEB_ACTIVE,
        or_(channels.c.session_lease_owner.is_(None), channels.c.session_lease_until < now),
    )
    wanted = limit - len(mine)
    if wanted > 0:
        candidates = select(channels.c.id).where(free).order_by(channels.c.id).limit(wanted)
        if conn.dialect.name == "postgresql":
            # As in acquire_channel_leases_sync: skip rows another process is taking now,
            # and check "free" again after the lock.
            locked = candidates.with_for_update(skip_locked=True).cte("free_sessions")
            target = channels.c.id.in_(select(locked.c.id))
        else:
            target = channels.c.id.in_(candidates.scalar_subquery())
        taken = conn.execute(
            update(channels).where(target, free).values(lease).returning(channels.c.id)
        )
        mine.update(r.id for r in taken)
    if not mine:
        return []
    rows = conn.execute(select(channels).where(channels.c.id.in_(sorted(mine))))
    return sorted((dict(r._mapping) for r in rows), key=lambda c: c["id"])


def release_session_leases_sync(
    conn: SyncConnection, *, owner: str, channel_ids: list[str] | None = None
) -> list[str]:
    """Give up the session leases ``owner`` holds (only ``channel_ids`` when given)."""
    stmt = update(channels).where(channels.c.session_lease_owner == owner)
    if channel_ids is not None:
        stmt = stmt.where(channels.c.id.in_(channel_ids))
    rows = conn.execute(
        stmt.values(session_lease_owner=None, session_lease_until=None).returning(channels.c.id)
    )
    return sorted(r.id for r in rows)


def record_session_state_sync(
    conn: SyncConnection,
    channel_id: str,
    *,
    state: str,
    reason: str | None,
    now: float,
    values: dict[str, Any] | None = None,
) -> bool:
    """Store the session's state (with ``values``, other session columns) and, when the
    state or its reason changed, a history row. Returns whether it changed."""
    current = conn.execute(
        select(channels.c.session_state, channels.c.session_reason).where(
            channels.c.id == channel_id
        )
    ).first()
    changed = current is None or (current.session_state, current.session_reason) != (
        state,
        reason,
    )
    update_values: dict[str, Any] = dict(values or {})
    if changed:
        update_values.update(session_state=state, session_reason=reason, session_state_at=now)
        conn.execute(
            channel_state_history.insert().values(
                channel_id=channel_id, state=state, reason=reason, at=now
            )
        )
        # Realtime subscribers in every process hear of it (PostgreSQL).
        notify_sync(conn, EVENTS)
    if update_values:
        conn.execute(update(channels).where(channels.c.id == channel_id).values(update_values))
    return changed


def update_session_values_sync(
    conn: SyncConnection, channel_id: str, values: dict[str, Any]
) -> None:
    if values:
        conn.execute(update(channels).where(channels.c.id == channel_id).values(values))


def stamp_keepalives_sync(conn: SyncConnection, channel_ids: list[str], now: float) -> None:
    """The session process vouches that these sessions are working now."""
    conn.execute(
        update(channels).where(channels.c.id.in_(channel_ids)).values(last_keepalive_at=now)
    )


def mark_linked_sync(conn: SyncConnection, channel_id: str, now: float) -> None:
    """Remember when the number was first linked (a young number's sends are capped)."""
    conn.execute(
        update(channels)
        .where(channels.c.id == channel_id, channels.c.linked_at.is_(None))
        .values(linked_at=now)
    )


def state_history_sync(
    conn: SyncConnection, channel_id: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The channel's latest state changes, newest first."""
    stmt = (
        select(channel_state_history)
        .where(channel_state_history.c.channel_id == channel_id)
        .order_by(channel_state_history.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def latest_state_change_id_sync(conn: SyncConnection) -> int:
    value = conn.execute(select(func.max(channel_state_history.c.id))).scalar()
    return int(value or 0)


def state_changes_after_sync(
    conn: SyncConnection, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """State changes newer than ``after_id`` in id order, with the channel's name."""
    stmt = (
        select(channel_state_history, channels.c.name.label("channel_name"))
        .join(channels, channels.c.id == channel_state_history.c.channel_id)
        .where(channel_state_history.c.id > after_id)
        .order_by(channel_state_history.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_sends_since_sync(conn: SyncConnection, channel_id: str, since: float) -> int:
    """Outbound messages of the channel created since ``since`` that did not fail: what
    a daily cap counts (queued ones included, so the cap is never overshot)."""
    stmt = select(func.count()).where(
        messages.c.channel_id == channel_id,
        messages.c.direction == "out",
        messages.c.created_at >= since,
        messages.c.status != "failed",
    )
    return int(conn.execute(stmt).scalar() or 0)


record_session_state = in_one_hop(record_session_state_sync)
state_history = in_one_hop(state_history_sync)
acquire_session_leases = in_one_hop(acquire_session_leases_sync)
release_session_leases = in_one_hop(release_session_leases_sync)
latest_state_change_id = in_one_hop(latest_state_change_id_sync)
state_changes_after = in_one_hop(state_changes_after_sync)
count_sends_since = in_one_hop(count_sends_since_sync)
update_session_values = in_one_hop(update_session_values_sync)
stamp_keepalives = in_one_hop(stamp_keepalives_sync)
mark_linked = in_one_hop(mark_linked_sync)
