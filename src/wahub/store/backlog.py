"""Named queries for what an operator watches: each channel's queue and lease, the inbox.

Read at every ``/metrics`` scrape and ``/healthz`` probe, so each query touches only
the rows that wait (queued messages through ``ix_messages_status_seq``, pending
deliveries through the partial ``ix_inbox_pending``) and the few channel rows, never
the whole message log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select

from wahub.store.schema import channels, inbox, messages


@dataclass(frozen=True, slots=True)
class ChannelBacklog:
    """One channel: its queued messages and who holds its lease.

    ``oldest_queued_at`` is the ``created_at`` of its oldest queued message (None when
    nothing is queued); ``lease_until`` is when the current or last lease runs out (a
    released lease keeps the time it was released at, None if never leased).
    """

    channel_id: str
    name: str
    kind: str
    status: str
    queued: int
    oldest_queued_at: float | None
    lease_owner: str | None
    lease_until: float | None

    def held_at(self, now: float) -> bool:
        """Whether a worker holds this channel's lease at ``now``."""
        return self.lease_owner is not None and (self.lease_until or 0.0) >= now


@dataclass(frozen=True, slots=True)
class InboxBacklog:
    """Webhook deliveries stored but not processed yet, and the oldest one's arrival."""

    pending: int
    oldest_received_at: float | None


def channel_backlogs_sync(conn: SyncConnection) -> list[ChannelBacklog]:
    """Every channel with its queued count and oldest queued message, by channel id."""
    queued = {
        row.channel_id: (int(row.n), row.oldest)
        for row in conn.execute(
            select(
                messages.c.channel_id,
                func.count().label("n"),
                func.min(messages.c.created_at).label("oldest"),
            )
            .where(messages.c.status == "queued")
            .group_by(messages.c.channel_id)
        )
    }
    rows = conn.execute(
        select(
            channels.c.id,
            channels.c.name,
            channels.c.kind,
            channels.c.status,
            channels.c.lease_owner,
            channels.c.lease_until,
        ).order_by(channels.c.id)
    )
    return [
        ChannelBacklog(
            channel_id=row.id,
            name=row.name,
            kind=row.kind,
            status=row.status,
            queued=queued.get(row.id, (0, None))[0],
            oldest_queued_at=queued.get(row.id, (0, None))[1],
            lease_owner=row.lease_owner,
            lease_until=row.lease_until,
        )
        for row in rows
    ]


def inbox_backlog_sync(conn: SyncConnection) -> InboxBacklog:
    """Pending webhook deliveries (processing not done yet, retries included)."""
    row = conn.execute(
        select(func.count().label("n"), func.min(inbox.c.received_at).label("oldest")).where(
            inbox.c.status == "pending"
        )
    ).one()
    return InboxBacklog(pending=int(row.n), oldest_received_at=row.oldest)


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Messages that failed since a moment, for one provider error code and title."""

    error_code: str
    error_title: str | None
    count: int


def failures_since_sync(conn: SyncConnection, since: float, limit: int = 20) -> list[FailureCount]:
    """Failed messages with ``failed_at >= since``, counted per error code, most first.

    Reaches the failed messages through ``ix_messages_status_seq``.
    """
    count = func.count().label("n")
    stmt = (
        select(messages.c.error_code, func.max(messages.c.error_title).label("title"), count)
        .where(messages.c.status == "failed", messages.c.failed_at >= since)
        .group_by(messages.c.error_code)
        .order_by(count.desc(), messages.c.error_code)
        .limit(limit)
    )
    return [
        FailureCount(str(row.error_code or "unknown"), row.title, int(row.n))
        for row in conn.execute(stmt)
    ]
