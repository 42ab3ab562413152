"""Named queries for ``media_downloads``: received files still to be fetched."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, select, update

from wahub.store.schema import media_downloads, messages


def insert_download_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(media_downloads.insert(), row)


def claim_due_sync(
    conn: SyncConnection, *, now: float, lease_until: float, limit: int
) -> list[dict[str, Any]]:
    """Due downloads, each claimed by moving ``next_attempt_at`` to ``lease_until`` (a
    claim another process took first in between is skipped): a process that dies while
    fetching leaves the row due again once the lease ends."""
    due = conn.execute(
        select(media_downloads)
        .where(media_downloads.c.next_attempt_at <= now)
        .order_by(media_downloads.c.next_attempt_at)
        .limit(limit)
    ).all()
    claimed: list[dict[str, Any]] = []
    for row in due:
        taken = conn.execute(
            update(media_downloads)
            .where(
                media_downloads.c.message_id == row.message_id,
                media_downloads.c.next_attempt_at == row.next_attempt_at,
            )
            .values(next_attempt_at=lease_until)
        )
        if taken.rowcount == 1:
            claimed.append(dict(row._mapping))
    return claimed


def retry_later_sync(
    conn: SyncConnection, message_id: str, *, attempts: int, at: float, error: str
) -> None:
    conn.execute(
        update(media_downloads)
        .where(media_downloads.c.message_id == message_id)
        .values(attempts=attempts, next_attempt_at=at, last_error=error)
    )


def finish_sync(conn: SyncConnection, message_id: str, outcome: dict[str, Any]) -> None:
    """Forget the download and record ``outcome`` as the message's ``wahub_media``."""
    conn.execute(delete(media_downloads).where(media_downloads.c.message_id == message_id))
    row = conn.execute(select(messages.c.content).where(messages.c.id == message_id)).first()
    if row is None:
        return
    content = dict(row.content) if isinstance(row.content, dict) else {}
    content["wahub_media"] = outcome
    conn.execute(update(messages).where(messages.c.id == message_id).values(content=content))


def pending_count_sync(conn: SyncConnection) -> int:
    return len(conn.execute(select(media_downloads.c.message_id)).all())
