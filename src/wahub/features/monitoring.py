"""What an operator must see: queues per channel, who sends them, what is stuck.

``/metrics`` and ``/healthz`` both read one ``Backlog`` (two short indexed queries on
one connection); the verdicts over it are plain functions, so they are tested without
a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection as SyncConnection

from wahub.store import backlog as q
from wahub.store.backlog import ChannelBacklog, InboxBacklog
from wahub.store.database import Database


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
