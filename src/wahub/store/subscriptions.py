"""Event subscriptions and their outbox: named queries over ``subscriptions``,
``event_deliveries`` and ``delivery_attempts``.

A delivery row is written before any attempt (``insert_deliveries_sync``, idempotent by
``(subscription_id, webhook_id)`` so deriving the same change twice stores it once),
leased by ``claim_due_deliveries_sync`` (per subscription and ordering key, only the
oldest pending rows, so a chat's events go out in order and one waiting for a retry
holds its chat), and settled by ``settle_sync`` with its attempt logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    or_,
    select,
    update,
)

from wahub.domain.subscription_events import CHANNEL_STATUS, Event, delivery_rows
from wahub.store.schema import channels, delivery_attempts, event_deliveries, subscriptions
from wahub.store.sql import insert_ignore

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATES = (PENDING, DELIVERED, DEAD)

# -- subscriptions -------------------------------------------------------------------


def insert_subscription_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(subscriptions.insert().values(**row))


def get_subscription_sync(conn: SyncConnection, subscription_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id)).first()
    return None if row is None else dict(row._mapping)


def list_subscriptions_sync(conn: SyncConnection) -> list[dict[str, Any]]:
    stmt = select(subscriptions).order_by(subscriptions.c.created_at, subscriptions.c.id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def update_subscription_sync(
    conn: SyncConnection, subscription_id: str, values: dict[str, Any]
) -> dict[str, Any] | None:
    """Apply ``values``; the row after the change, or None when there is no such row."""
    conn.execute(
        update(subscriptions).where(subscriptions.c.id == subscription_id).values(**values)
    )
    return get_subscription_sync(conn, subscription_id)


def delete_subscription_sync(conn: SyncConnection, subscription_id: str) -> bool:
    """Delete the subscription, its outbox and its log (SQLite enforces no cascade)."""
    conn.execute(
        delete(delivery_attempts).where(delivery_attempts.c.subscription_id == subscription_id)
    )
    conn.execute(
        delete(event_deliveries).where(event_deliveries.c.subscription_id == subscription_id)
    )
    gone = conn.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))
    return bool(gone.rowcount)


def subscription_counts_sync(conn: SyncConnection) -> dict[str, int]:
    """Subscriptions by ``active``/``paused`` (for metrics)."""
    stmt = select(subscriptions.c.paused, func.count()).group_by(subscriptions.c.paused)
    counts = {"active": 0, "paused": 0}
    for paused, n in conn.execute(stmt):
        counts["paused" if paused else "active"] += int(n)
    return counts


# -- the outbox ----------------------------------------------------------------------


def insert_deliveries_sync(conn: SyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Store deliveries; one already stored (same subscription and webhook id) is kept."""
    if rows:
        conn.execute(insert_ignore(conn, event_deliveries), list(rows))


def claim_due_deliveries_sync(
    conn: SyncConnection,
    *,
    owner: str,
    now: float,
    lease_seconds: float,
    limit: int,
    per_key: int,
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` deliveries of active subscriptions: for each (subscription,
    ordering key) whose oldest pending row is due and not leased, that row and up to
    ``per_key - 1`` rows after it. Returned in id order, with the subscription's url
    and sealed secret."""
    ed = event_deliveries
    ranked = (
        select(
            ed.c.id,
            ed.c.subscription_id,
            ed.c.ordering_key,
            ed.c.next_attempt_at,
            ed.c.lease_until,
            func.row_number()
            .over(partition_by=(ed.c.subscription_id, ed.c.ordering_key), order_by=ed.c.id)
            .label("rank"),
        )
        .where(ed.c.state == PENDING)
        .subquery("ranked")
    )
    now_p = bindparam("b_now", type_=Float)
    heads = (
        select(ranked.c.subscription_id, ranked.c.ordering_key)
        .join(subscriptions, subscriptions.c.id == ranked.c.subscription_id)
        .where(
            ranked.c.rank == 1,
            subscriptions.c.paused == false(),
            ranked.c.next_attempt_at <= now_p,
            or_(ranked.c.lease_until.is_(None), ranked.c.lease_until < now_p),
        )
        .subquery("heads")
    )
    chosen = (
        select(ranked.c.id)
        .join(
            heads,
            and_(
                heads.c.subscription_id == ranked.c.subscription_id,
                heads.c.ordering_key == ranked.c.ordering_key,
            ),
        )
        .where(ranked.c.rank <= bindparam("b_per_key", type_=Integer))
        .order_by(ranked.c.id)
        .limit(bindparam("b_limit", type_=Integer))
    )
    stmt = (
        update(ed)
        .where(
            ed.c.id.in_(chosen.scalar_subquery()),
            ed.c.state == PENDING,
            # Re-checked under the row lock on PostgreSQL: a row another worker leased
            # since our snapshot is not taken twice.
            or_(ed.c.lease_until.is_(None), ed.c.lease_until < now_p),
        )
        .values(
            lease_owner=bindparam("b_owner", type_=String),
            lease_until=bindparam("b_lease_until", type_=Float),
        )
        .returning(ed.c.id)
    )
    params = {
        "b_now": now,
        "b_owner": owner,
        "b_lease_until": now + lease_seconds,
        "b_limit": limit,
        "b_per_key": per_key,
    }
    ids = [int(r[0]) for r in conn.execute(stmt, params)]
    if not ids:
        return []
    rows = conn.execute(
        select(ed, subscriptions.c.url, subscriptions.c.secret)
        .join(subscriptions, subscriptions.c.id == ed.c.subscription_id)
        .where(ed.c.id.in_(ids))
        .order_by(ed.c.id)
    )
    return [dict(r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class Settled:
    """What happened to one claimed delivery.

    ``state`` is the row's new state (pending: try again at ``next_attempt_at``);
    ``attempted`` is False for a row released without a request (its chat's earlier
    event failed first), which logs nothing and counts no attempt."""

    delivery_id: int
    subscription_id: str
    state: str
    next_attempt_at: float
    attempted: bool = True
    status_code: int | None = None
    latency_ms: float = 0.0
    error: str | None = None


def settle_sync(conn: SyncConnection, settled: Sequence[Settled], *, owner: str, now: float) -> int:
    """Record results of a worker's claimed deliveries (only rows it still leases: one
    whose lease lapsed belongs to another worker now) and log each attempt. Returns how
    many rows were settled."""
    ed = event_deliveries
    done: dict[int, int] = {}  # delivery id -> its attempts count after this one
    delivered = [i for i in settled if i.attempted and i.state == DELIVERED]
    if delivered:
        # The common case in one statement: a chat's run of successes.
        rows = conn.execute(
            update(ed)
            .where(ed.c.id.in_([i.delivery_id for i in delivered]), ed.c.lease_owner == owner)
            .values(
                state=DELIVERED,
                attempts=ed.c.attempts + 1,
                last_status_code=case(
                    *((ed.c.id == i.delivery_id, i.status_code) for i in delivered),
                    else_=None,
                ),
                last_error=None,
                delivered_at=now,
                next_attempt_at=now,
                lease_owner=None,
                lease_until=None,
            )
            .returning(ed.c.id, ed.c.attempts)
        )
        done.update((int(r[0]), int(r[1])) for r in rows)
    for item in settled:
        if item.attempted and item.state == DELIVERED:
            continue
        values: dict[str, Any] = {
            "state": item.state,
            "next_attempt_at": item.next_attempt_at,
            "lease_owner": None,
            "lease_until": None,
        }
        if item.attempted:
            values["attempts"] = ed.c.attempts + 1
            values["last_status_code"] = item.status_code
            values["last_error"] = item.error
            values["first_failure_at"] = func.coalesce(ed.c.first_failure_at, now)
        row = conn.execute(
            update(ed)
            .where(ed.c.id == item.delivery_id, ed.c.lease_owner == owner)
            .values(**values)
            .returning(ed.c.attempts)
        ).first()
        if row is not None:
            done[item.delivery_id] = int(row[0])
    log = [
        {
            "delivery_id": item.delivery_id,
            "subscription_id": item.subscription_id,
            "attempt": done[item.delivery_id],
            "status_code": item.status_code,
            "latency_ms": item.latency_ms,
            "error": item.error,
            "attempted_at": now,
        }
        for item in settled
        if item.attempted and item.delivery_id in done
    ]
    if log:
        conn.execute(delivery_attempts.insert(), log)
    return len(done)


def mark_subscription_result_sync(
    conn: SyncConnection, subscription_id: str, *, succeeded: bool, now: float
) -> dict[str, Any] | None:
    """A success clears ``failing_since``; a failure starts it if not running. Returns
    the row after the change."""
    s = subscriptions
    if succeeded:
        values: dict[str, Any] = {"failing_since": None, "last_success_at": now}
    else:
        values = {"failing_since": func.coalesce(s.c.failing_since, now)}
    conn.execute(update(s).where(s.c.id == subscription_id).values(**values))
    return get_subscription_sync(conn, subscription_id)


def pause_subscription_sync(
    conn: SyncConnection, subscription_id: str, *, reason: str | None, now: float
) -> bool:
    """Pause (True when it was active). An operator's pause has no reason."""
    result = conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id, subscriptions.c.paused == false())
        .values(paused=True, paused_reason=reason, paused_at=now, updated_at=now)
    )
    return bool(result.rowcount)


def resume_subscription_sync(conn: SyncConnection, subscription_id: str, *, now: float) -> None:
    """Resume: deliveries waiting for a retry are due now, and the day-long failure
    clock starts again."""
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(
            paused=False, paused_reason=None, paused_at=None, failing_since=None, updated_at=now
        )
    )
    conn.execute(
        update(event_deliveries)
        .where(
            event_deliveries.c.subscription_id == subscription_id,
            event_deliveries.c.state == PENDING,
        )
        .values(next_attempt_at=now, first_failure_at=None)
    )


# -- the log, dead letters and replay ------------------------------------------------


def list_deliveries_sync(
    conn: SyncConnection,
    subscription_id: str,
    *,
    state: str | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first."""
    ed = event_deliveries
    stmt = select(ed).where(ed.c.subscription_id == subscription_id)
    if state is not None:
        stmt = stmt.where(ed.c.state == state)
    if before_id is not None:
        stmt = stmt.where(ed.c.id < before_id)
    stmt = stmt.order_by(ed.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def list_attempts_sync(
    conn: SyncConnection,
    subscription_id: str,
    *,
    delivery_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The delivery log, newest first, with each attempt's event id and type."""
    a, ed = delivery_attempts, event_deliveries
    stmt = (
        select(a, ed.c.webhook_id, ed.c.event_type)
        .join(ed, ed.c.id == a.c.delivery_id)
        .where(a.c.subscription_id == subscription_id)
    )
    if delivery_id is not None:
        stmt = stmt.where(a.c.delivery_id == delivery_id)
    stmt = stmt.order_by(a.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def delivery_counts_sync(conn: SyncConnection) -> dict[str, dict[str, int]]:
    """Deliveries per subscription and state."""
    ed = event_deliveries
    stmt = select(ed.c.subscription_id, ed.c.state, func.count()).group_by(
        ed.c.subscription_id, ed.c.state
    )
    counts: dict[str, dict[str, int]] = {}
    for subscription_id, state, n in conn.execute(stmt):
        counts.setdefault(str(subscription_id), dict.fromkeys(STATES, 0))[str(state)] = int(n)
    return counts


def replay_sync(
    conn: SyncConnection,
    subscription_id: str,
    *,
    delivery_id: int | None,
    since: float | None,
    until: float | None,
    now: float,
) -> int:
    """Make deliveries pending and due again (same webhook id: receivers deduplicate):
    one delivery by id (whatever its state), or the delivered and dead ones created in
    ``[since, until)``. Returns how many."""
    ed = event_deliveries
    stmt = update(ed).where(ed.c.subscription_id == subscription_id)
    if delivery_id is not None:
        stmt = stmt.where(ed.c.id == delivery_id)
    else:
        stmt = stmt.where(ed.c.state != PENDING)
        if since is not None:
            stmt = stmt.where(ed.c.created_at >= since)
        if until is not None:
            stmt = stmt.where(ed.c.created_at < until)
    result = conn.execute(
        stmt.values(
            state=PENDING,
            next_attempt_at=now,
            first_failure_at=None,
            lease_owner=None,
            lease_until=None,
        )
    )
    return int(result.rowcount)


# -- channel.status ------------------------------------------------------------------

CHANNEL_STATE_COLUMNS = ("status", "paused", "removed_at")


def channel_state_sync(conn: SyncConnection, channel_id: str) -> dict[str, Any] | None:
    """What a ``channel.status`` event reports about a channel."""
    row = conn.execute(
        select(
            channels.c.id,
            channels.c.name,
            channels.c.kind,
            *(channels.c[c] for c in CHANNEL_STATE_COLUMNS),
        ).where(channels.c.id == channel_id)
    ).first()
    return None if row is None else dict(row._mapping)


def announce_channel_state_sync(
    conn: SyncConnection, channel_id: str, before: dict[str, Any] | None, now: float
) -> int:
    """Store a ``channel.status`` event for the subscriptions asking for it, in the
    transaction that changed the channel, when its status, pause or removal changed
    (``before``: the state read before the change). Returns deliveries stored."""
    after = channel_state_sync(conn, channel_id)
    if after is None:
        return 0
    changed = before is None or any(before[c] != after[c] for c in CHANNEL_STATE_COLUMNS)
    if not changed:
        return 0
    data = {
        "channel_id": channel_id,
        "name": after["name"],
        "kind": after["kind"],
        "status": after["status"],
        "paused": bool(after["paused"]),
        "removed": after["removed_at"] is not None,
        "previous_status": None if before is None else before["status"],
    }
    event = Event(
        webhook_id=f"evt_channel_{channel_id}_{int(now * 1_000_000)}",
        type=CHANNEL_STATUS,
        ordering_key=f"channel:{channel_id}",
        channel_id=channel_id,
        data=data,
        occurred_at=now,
    )
    rows = delivery_rows(list_subscriptions_sync(conn), [event], now)
    insert_deliveries_sync(conn, rows)
    return len(rows)
