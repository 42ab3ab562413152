"""What an operator must see: queues per channel, who sends them, what is stuck.

``/metrics`` and ``/healthz`` both read one ``Backlog`` (two short indexed queries on
one connection); the verdicts over it are plain functions, so they are tested without
a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.store import backlog as q
from wahub.store import inbox as inbox_q
from wahub.store.backlog import ChannelBacklog, FailureCount, InboxBacklog
from wahub.store.database import Database

FAILURE_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Backlog:
    channels: list[ChannelBacklog]
    inbox: InboxBacklog

    def live_workers(self, now: float) -> int:
        """Distinct workers holding at least one channel lease at ``now``."""
        return len({c.lease_owner for c in self.channels if c.held_at(now)})


@dataclass(frozen=True, slots=True)
class StalledChannel:
    """A channel whose queued messages have had no worker for ``unattended_seconds``."""

    channel_id: str
    name: str
    queued: int
    unattended_seconds: float

    @property
    def reason(self) -> str:
        return (
            f"channel {self.name} ({self.channel_id}): {self.queued} queued message(s) and "
            f"no worker holding the channel for {self.unattended_seconds:.0f} s"
        )


async def read_backlog(db: Database) -> Backlog:
    """Every channel's queue and lease, and the inbox backlog, in one hop."""
    return await db.read_one(_read_backlog_sync)


def _read_backlog_sync(conn: SyncConnection) -> Backlog:
    return Backlog(q.channel_backlogs_sync(conn), q.inbox_backlog_sync(conn))


def stalled_channels(
    backlog: Backlog, *, now: float, threshold_seconds: float
) -> list[StalledChannel]:
    """Channels with queued messages that no worker has held for more than the threshold.

    The clock starts at the later of the oldest queued message's arrival and the end of
    the channel's last lease: a queue that just formed, or a worker that just stopped,
    is not yet a problem (another worker takes a free channel within a second).
    """
    stalled = []
    for channel in backlog.channels:
        if channel.queued == 0 or channel.oldest_queued_at is None or channel.held_at(now):
            continue
        since = max(channel.oldest_queued_at, channel.lease_until or 0.0)
        if now - since > threshold_seconds:
            stalled.append(
                StalledChannel(channel.channel_id, channel.name, channel.queued, now - since)
            )
    return stalled


def health_reasons(replication: dict[str, Any], stalled: list[StalledChannel]) -> list[str]:
    """Why the hub is degraded (empty: it is not), from the replication status
    (``Replication.status()``) and the stalled channels: what ``/healthz`` and the
    dashboard's overview both say."""
    reasons: list[str] = []
    if replication["status"] == "degraded":
        lagging = ", ".join(replication["lagging"]) or "no sink"
        errors = "; ".join(replication.get("config_errors", [])) or "no error"
        reasons.append(f"replication lagging ({lagging}) or misconfigured ({errors})")
    reasons.extend(channel.reason for channel in stalled)
    return reasons


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the dashboard's overview shows, read once."""

    now: float
    backlog: Backlog
    stalled: list[StalledChannel]
    failures: list[FailureCount]  # in the last FAILURE_WINDOW_SECONDS
    dead_letters: int  # webhook deliveries whose processing failed for good
    replication: dict[str, Any]
    reasons: list[str]

    @property
    def stalled_ids(self) -> set[str]:
        return {channel.channel_id for channel in self.stalled}


async def read_overview(
    db: Database, replication: dict[str, Any], *, now: float, stalled_threshold: float
) -> Overview:
    """The overview at ``now``: the same backlog ``/metrics`` and ``/healthz`` read, the
    failures of the last hour per reason and the dead letters, in one hop; the verdicts
    come from the same functions ``/healthz`` uses."""

    def read(conn: SyncConnection) -> tuple[Backlog, list[FailureCount], int]:
        backlog = _read_backlog_sync(conn)
        failures = q.failures_since_sync(conn, now - FAILURE_WINDOW_SECONDS)
        dead = inbox_q.count_by_status_sync(conn).get("dead", 0)
        return backlog, failures, dead

    backlog, failures, dead = await db.read_one(read)
    stalled = stalled_channels(backlog, now=now, threshold_seconds=stalled_threshold)
    return Overview(
        now=now,
        backlog=backlog,
        stalled=stalled,
        failures=failures,
        dead_letters=dead,
        replication=replication,
        reasons=health_reasons(replication, stalled),
    )
