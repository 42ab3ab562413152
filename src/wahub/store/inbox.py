"""Named queries for the inbox: raw provider webhook deliveries, stored before the 200."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select, update

from wahub.store.database import in_one_hop
from wahub.store.notify import INBOX, notify_sync
from wahub.store.schema import inbox
from wahub.store.sql import insert_ignore, one_of


def store_delivery_sync(
    conn: SyncConnection,
    *,
    provider: str,
    dedupe_key: str,
    headers: dict[str, str],
    body: bytes,
    now: float,
) -> bool:
    """Store one delivery; False when the same delivery was stored before (a provider retry)."""
    result = conn.execute(
        insert_ignore(conn, inbox),
        {
            "provider": provider,
            "dedupe_key": dedupe_key,
            "headers": headers,
            "body": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
        },
    )
    if result.rowcount:
        notify_sync(conn, INBOX)
    return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A verified webhook delivery to store (see ``store_deliveries_sync``)."""

    provider: str
    dedupe_key: str
    headers: dict[str, str]
    body: bytes
    received_at: float


def store_deliveries_sync(conn: SyncConnection, deliveries: Sequence[NewDelivery]) -> list[bool]:
    """Store many deliveries with one statement; for each, False when the same delivery
    was stored before (a provider retry) or appears earlier in ``deliveries``."""
    first: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for index, d in enumerate(deliveries):
        if d.dedupe_key in first:
            continue
        first[d.dedupe_key] = index
        rows.append(
            {
                "provider": d.provider,
                "dedupe_key": d.dedupe_key,
                "headers": d.headers,
                "body": d.body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": d.received_at,
                "received_at": d.received_at,
            }
        )
    # A multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the keys that come back
    # are the new ones.
    stmt = insert_ignore(conn, inbox).returning(inbox.c.dedupe_key)
    stored = {r.dedupe_key for r in conn.execute(stmt, rows)} if rows else set()
    if stored:
        notify_sync(conn, INBOX)
    return [first[d.dedupe_key] == i and d.dedupe_key in stored for i, d in enumerate(deliveries)]


def lock_pending_sync(conn: SyncConnection, *, now: float, limit: int) -> list[dict[str, Any]]:
    """Oldest pending deliveries that are due. On PostgreSQL the rows stay locked (skipped by
    other processors) until the transaction ends, so each is processed exactly once."""
    stmt = (
        select(inbox)
        .where(inbox.c.status == "pending", inbox.c.next_attempt_at <= now)
        .order_by(inbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def mark_processed_sync(conn: SyncConnection, ids: list[int], now: float) -> None:
    if ids:
        conn.execute(
            update(inbox)
            .where(one_of(conn, inbox.c.id, ids))
            .values(status="processed", processed_at=now, attempts=inbox.c.attempts + 1)
        )


def mark_failed_sync(
    conn: SyncConnection, delivery_id: int, *, error: str, now: float, retry_at: float | None
) -> None:
    """Record a processing failure: retry later, or dead-letter when ``retry_at`` is None."""
    values: dict[str, Any] = {"attempts": inbox.c.attempts + 1, "error": error[:2000]}
    if retry_at is None:
        values.update(status="dead", processed_at=now)
    else:
        values.update(next_attempt_at=retry_at)
    conn.execute(update(inbox).where(inbox.c.id == delivery_id).values(values))


def count_by_status_sync(conn: SyncConnection) -> dict[str, int]:
    stmt = select(inbox.c.status, func.count().label("n")).group_by(inbox.c.status)
    return {str(row.status): int(row.n) for row in conn.execute(stmt)}


def list_deliveries_sync(
    conn: SyncConnection, *, status: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = select(inbox).order_by(inbox.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(inbox.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


# The async faces: each runs its whole body in one hop.
store_delivery = in_one_hop(store_delivery_sync)
lock_pending = in_one_hop(lock_pending_sync)
mark_processed = in_one_hop(mark_processed_sync)
mark_failed = in_one_hop(mark_failed_sync)
count_by_status = in_one_hop(count_by_status_sync)
list_deliveries = in_one_hop(list_deliveries_sync)
