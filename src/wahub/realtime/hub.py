"""Fan status events out to subscribers.

The hub tails ``message_events`` (append-only, ordered by id) rather than listening to
in-process calls, so a client connected to this process also sees statuses applied by a
``wahub worker`` in another process. In-process writers call ``poke()`` to skip the poll
delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wahub.domain.errors import WahubError
from wahub.pipeline.wakeup import Wakeup
from wahub.store import events as q
from wahub.store.database import Database

log = logging.getLogger("wahub.realtime")

Filter = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)
class Subscription:
    accepts: Filter
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(10_000))
    dropped: int = 0


class RealtimeHub:
    def __init__(self, db: Database, *, poll_seconds: float = 0.1) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self._subs: set[Subscription] = set()
        self._wakeup = Wakeup()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0

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
                except WahubError:
                    continue
                # Someone may have subscribed while we read: then keep the cursor, so
                # they get everything from before their subscription on.
                if not self._subs:
                    self._cursor = latest
                continue
            try:
                async with self.db.read() as conn:
                    rows = await q.events_after(conn, self._cursor, 2000)
            except WahubError as exc:
                log.warning("realtime tail failed: %s", exc.message)
                continue
            for row in rows:
                self._cursor = row["id"]
                event = {
                    "type": "message.status",
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
                for sub in list(self._subs):
                    if sub.accepts(event):
                        try:
                            sub.queue.put_nowait(event)
                        except asyncio.QueueFull:
                            sub.dropped += 1
            if len(rows) == 2000:
                self._wakeup.notify()
