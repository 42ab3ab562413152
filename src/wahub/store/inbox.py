"""Named queries for the inbox: raw provider webhook deliveries, stored before the 200."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from wahub.store.database import Connection
from wahub.store.schema import inbox
from wahub.store.sql import insert_ignore


async def store_delivery(
    conn: Connection,
    *,
    provider: str,
    dedupe_key: str,
    headers: dict[str, str],
    body: bytes,
    now: float,
) -> bool:
    """Store one delivery; False when the same delivery was stored before (a provider retry)."""
    result = await conn.execute(
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
    return bool(result.rowcount)


async def lock_pending(conn: Connection, *, now: float, limit: int) -> list[dict[str, Any]]:
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
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def mark_processed(conn: Connection, ids: list[int], now: float) -> None:
    if ids:
        await conn.execute(
            update(inbox)
            .where(inbox.c.id.in_(ids))
            .values(status="processed", processed_at=now, attempts=inbox.c.attempts + 1)
        )


async def mark_failed(
    conn: Connection, delivery_id: int, *, error: str, now: float, retry_at: float | None
) -> None:
    """Record a processing failure: retry later, or dead-letter when ``retry_at`` is None."""
    values: dict[str, Any] = {"attempts": inbox.c.attempts + 1, "error": error[:2000]}
    if retry_at is None:
        values.update(status="dead", processed_at=now)
    else:
        values.update(next_attempt_at=retry_at)
    await conn.execute(update(inbox).where(inbox.c.id == delivery_id).values(values))


async def count_by_status(conn: Connection) -> dict[str, int]:
    stmt = select(inbox.c.status, func.count().label("n")).group_by(inbox.c.status)
    return {str(row.status): int(row.n) for row in await conn.execute(stmt)}


async def list_deliveries(
    conn: Connection, *, status: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = select(inbox).order_by(inbox.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(inbox.c.status == status)
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def store_deliveries(
    conn: Connection, deliveries: list[tuple[str, str, dict[str, str], bytes]], *, now: float
) -> None:
    """Store many deliveries (provider, dedupe_key, headers, body); duplicates are skipped."""
    await conn.execute(
        insert_ignore(conn, inbox),
        [
            {
                "provider": provider,
                "dedupe_key": dedupe_key,
                "headers": headers,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "received_at": now,
            }
            for provider, dedupe_key, headers, body in deliveries
        ],
    )
