"""Fan status events out to subscribers.

An inbound message is a ``received`` event in the same table (the inbox processor
records it with the message), published as ``message.received`` followed by
``conversation.updated``, so inbound traffic needs no second feed.

Campaign funnels ride the same feed: a pass that published events of campaign
messages reads those campaigns' counter rows (committed with the statuses, by
triggers) and publishes one ``campaign.stats`` event per campaign. Derived here rather
than announced by each writer, it covers every process that changes a status, and a
burst of statuses costs one read per pass, not one per status.

The hub tails ``message_events`` (append-only, ordered by id) rather than listening to
in-process calls, so a client connected to this process also sees statuses applied by a
``wahub worker`` or another ``serve`` in another process. In-process writers call
``poke()`` to skip the poll delay; on PostgreSQL a ``LISTEN`` on ``wahub_events``
(``wahub.store.notify``) pokes it when another process commits an event.

Ids are handed out at insert but become visible at commit, and on PostgreSQL two
writers can commit out of order: id 11 can be readable while 10 is not yet. Moving the
cursor past 11 would lose 10 forever, so the ids skipped over are kept as *gaps* and
looked up again on each pass until they appear or ``gap_seconds`` pass (a rolled-back
transaction leaves a gap that never fills). SQLite has one writer, so no gaps there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wahub.domain.campaigns import stats_view
from wahub.domain.errors import WahubError
from wahub.domain.inbound import RECEIVED
from wahub.pipeline.wakeup import Wakeup
from wahub.store import campaigns as campaign_q
from wahub.store import events as q
from wahub.store import sessions as session_q
from wahub.store.database import Database

log = logging.getLogger("wahub.realtime")

Filter = Callable[[dict[str, Any]], bool]

BATCH = 2000
MAX_GAPS = 10_000


@dataclass(eq=False)
class Subscription:
    accepts: Filter
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(10_000))
    dropped: int = 0


class RealtimeHub:
    def __init__(
        self, db: Database, *, poll_seconds: float = 0.1, gap_seconds: float = 5.0
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.gap_seconds = gap_seconds
        # id -> monotonic time after which we stop waiting for it
        self._gaps: dict[int, float] = {}
        self._subs: set[Subscription] = set()
        self._wakeup = Wakeup()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        # Web channels' session state changes (channel_state_history), published as
        # ``channel.session`` events after the message events of the same pass.
        self._state_cursor = 0

    def poke(self) -> None:
        self._wakeup.notify()

    def subscribe(self, accepts: Filter) -> Subscription:
        sub = Subscription(accepts)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def start(self) -> None:
        async with self.db.read() as conn:
            self._cursor = await q.latest_event_id(conn)
            self._state_cursor = await session_q.latest_state_change_id(conn)
        self._task = asyncio.create_task(self._tail(), name="realtime-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tail(self) -> None:
        while True:
            await self._wakeup.wait(self.poll_seconds)
            if not self._subs:
                # Nobody listens: skip reading, but move the cursor so a late subscriber
                # starts from now instead of replaying a backlog.
                try:
                    async with self.db.read() as conn:
                        latest = await q.latest_event_id(conn)
                        latest_state = await session_q.latest_state_change_id(conn)
                except WahubError:
                    continue
                # Someone may have subscribed while we read: then keep the cursor, so
                # they get everything from before their subscription on.
                if not self._subs:
                    self._cursor = latest
                    self._state_cursor = latest_state
                    self._gaps.clear()
                continue
            try:
                async with self.db.read() as conn:
                    late = await q.events_by_ids(conn, sorted(self._gaps)) if self._gaps else []
                    rows = await q.events_after(conn, self._cursor, BATCH)
                    states = await session_q.state_changes_after(conn, self._state_cursor, BATCH)
            except WahubError as exc:
                log.warning("realtime tail failed: %s", exc.message)
                continue
            for row in late:
                del self._gaps[row["id"]]
                self._publish(row)
            self._expire_gaps()
            for row in rows:
                self._note_gaps(row["id"])
                self._cursor = row["id"]
                self._publish(row)
            for change in states:
                self._state_cursor = change["id"]
                self._publish_state_change(change)
            touched = {r["campaign_id"] for r in (*late, *rows) if r.get("campaign_id")}
            if touched:
                await self._publish_campaign_stats(sorted(touched))
            if len(rows) == BATCH:
                self._wakeup.notify()

    async def _publish_campaign_stats(self, campaign_ids: list[str]) -> None:
        try:
            async with self.db.read() as conn:
                rows = await campaign_q.stats_for(conn, campaign_ids)
        except WahubError as exc:
            log.warning("campaign stats for realtime failed: %s", exc.message)
            return
        by_campaign: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_campaign.setdefault(row["campaign_id"], []).append(row)
        for campaign_id, stats in by_campaign.items():
            # No chat: only subscribers who see every chat (admins, viewers) get it.
            event = {
                "type": "campaign.stats",
                "campaign_id": campaign_id,
                **stats_view(campaign_id, stats),
                "at": time.time(),
                "_sender_user_id": None,
            }
            self.publish(event)

    def _publish_state_change(self, change: dict[str, Any]) -> None:
        # No chat: only subscribers who see every chat (admins, viewers) get it.
        event = {
            "type": "channel.session",
            "state_change_id": change["id"],
            "channel_id": change["channel_id"],
            "channel": change["channel_name"],
            "state": change["state"],
            "reason": change["reason"],
            "at": change["at"],
            "_sender_user_id": None,
        }
        for sub in list(self._subs):
            if sub.accepts(event):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.dropped += 1

    def _note_gaps(self, event_id: int) -> None:
        if event_id <= self._cursor + 1:
            return
        give_up = time.monotonic() + self.gap_seconds
        for missing in range(self._cursor + 1, min(event_id, self._cursor + 1 + MAX_GAPS)):
            self._gaps[missing] = give_up
        if len(self._gaps) > MAX_GAPS:
            for old in sorted(self._gaps)[: len(self._gaps) - MAX_GAPS]:
                del self._gaps[old]

    def _expire_gaps(self) -> None:
        now = time.monotonic()
        for event_id in [i for i, give_up in self._gaps.items() if give_up < now]:
            del self._gaps[event_id]

    def _publish(self, row: dict[str, Any]) -> None:
        received = row["event_status"] == RECEIVED
        event = {
            "type": "message.received" if received else "message.status",
            "event_id": row["id"],
            "message_id": row["message_id"],
            "status": row["status"],
            "event": row["event_status"],
            "source": row["source"],
            "chat_id": row["chat_id"],
            "channel_id": row["channel_id"],
            "provider_message_id": row["provider_message_id"],
            "error_code": row["error_code"],
            "at": row["recorded_at"],
            "_sender_user_id": row["sender_user_id"],
        }
        events = [event]
        if received:
            event["direction"] = row["direction"]
            event["message_type"] = row["message_type"]
            event["conversation_id"] = row["conversation_id"]
            events.append(
                {
                    "type": "conversation.updated",
                    "event_id": row["id"],
                    "conversation_id": row["conversation_id"],
                    "chat_id": row["chat_id"],
                    "channel_id": row["channel_id"],
                    "last_message_id": row["message_id"],
                    "unread_count": row["unread_count"],
                    "at": row["recorded_at"],
                    "_sender_user_id": None,
                }
            )
        self.publish(*events)

    def publish(self, *events: dict[str, Any]) -> None:
        """Hand ``events`` to every subscriber that accepts them, in order.

        For events this process knows of from its own committed writes (an edit by
        ``PATCH``): call it after the commit. They reach the streams of this process;
        other processes' clients learn of the change through the replication log.
        """
        for sub in list(self._subs):
            for item in events:
                if sub.accepts(item):
                    try:
                        sub.queue.put_nowait(item)
                    except asyncio.QueueFull:
                        sub.dropped += 1
