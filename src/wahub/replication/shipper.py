"""One sink's shipper: reads the log from the sink's cursor and hands changes to the sink.

- One active shipper per sink across processes: the cursor row is leased (renewed while
  shipping, given up when the sink is paused); a shipper that loses its lease drops
  what it holds and the new owner resumes from the stored cursor (at least once).
- Per-chat order: changes are queued per ordering key (the chat; a row outside any
  chat on its own). A chat whose head change failed waits (capped exponential backoff)
  while other chats go on; after ``max_attempts`` failures the head change is
  dead-lettered and the chat moves on. A rejected change is dead-lettered at once.
- The cursor is the highest seq below which everything is delivered or dead-lettered,
  stored after each round together with the round's dead letters.
- ``SinkUnavailable`` (database down, Elasticsearch unreachable) backs the whole sink
  off without counting against the changes: an outage of any length loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection as SyncConnection

from wahub.domain.backoff import backoff
from wahub.domain.errors import WahubError
from wahub.replication.config import SinkSettings
from wahub.replication.horizon import CommitHorizon
from wahub.replication.sinks.base import Outcome, Outcomes, Sink, SinkUnavailable
from wahub.store import changelog as q
from wahub.store.changelog import Change
from wahub.store.database import Database

log = logging.getLogger("wahub.replication")

OnShipped = Callable[[list[Change], float], None]


@dataclass
class _Window:
    """Changes loaded but not finished, per ordering key, and their retry state."""

    loaded_to: int
    queues: dict[str, deque[Change]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    size: int = 0

    def add(self, changes: list[Change]) -> None:
        for change in changes:
            self.queues.setdefault(change.ordering_key, deque()).append(change)
        self.size += len(changes)
        if changes:
            self.loaded_to = changes[-1].seq

    def cursor(self) -> int:
        heads = [queue[0].seq for queue in self.queues.values() if queue]
        return min(heads) - 1 if heads else self.loaded_to

    def ready(self, now: float, limit: int) -> list[Change]:
        batch: list[Change] = []
        for key, queue in self.queues.items():
            if self.not_before.get(key, 0.0) > now:
                continue
            for change in queue:
                if len(batch) >= limit:
                    return sorted(batch, key=lambda c: c.seq)
                batch.append(change)
        return sorted(batch, key=lambda c: c.seq)

    def pop(self, key: str) -> Change:
        change = self.queues[key].popleft()
        self.size -= 1
        self.attempts.pop(change.seq, None)
        if not self.queues[key]:
            del self.queues[key]
            self.not_before.pop(key, None)
        return change

    def next_due(self) -> float | None:
        due = [self.not_before.get(key, 0.0) for key, queue in self.queues.items() if queue]
        return min(due) if due else None


class Shipper:
    """Ships the log to one sink until ``stop()``."""

    def __init__(
        self,
        db: Database,
        sink: Sink,
        config: SinkSettings,
        *,
        owner: str,
        lease_seconds: float = 15.0,
        poll_interval: float = 0.1,
        on_shipped: OnShipped | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.sink = sink
        self.config = config
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.on_shipped = on_shipped
        self.clock = clock
        self.horizon = CommitHorizon(db)
        self.max_window = config.batch_size * 10
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._window: _Window | None = None
        self._lease_renew_at = 0.0
        self._opened = False
        self._unavailable_streak = 0
        self._stored_cursor = 0
        self._error: str | None = None
        self.delivered_total = 0

    @property
    def leased(self) -> bool:
        return self._window is not None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    wait = await self.step()
                except WahubError as exc:  # the hub's database is down: try again later
                    log.warning("replication to %s paused by the database: %s", self.sink.name, exc)
                    self._window = None
                    wait = min(self.lease_seconds / 3, 5.0)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=wait)
        finally:
            await self._release()
            with contextlib.suppress(Exception):
                await self.sink.close()

    async def _release(self) -> None:
        if self._window is None:
            return
        self._window = None
        with contextlib.suppress(Exception):
            await self.db.write(
                lambda c: q.release_lease_sync(c, sink=self.sink.name, owner=self.owner)
            )

    async def step(self) -> float:
        """One round: lease, load, deliver, store. Returns seconds to wait before the next."""
        now = self.clock()
        if self._window is None or now >= self._lease_renew_at:
            row = await self.db.write(
                lambda c: q.acquire_lease_sync(
                    c,
                    sink=self.sink.name,
                    owner=self.owner,
                    now=now,
                    lease_seconds=self.lease_seconds,
                )
            )
            if row is None:
                self._window = None  # paused, or shipped by another process
                return self.lease_seconds / 3
            self._lease_renew_at = now + self.lease_seconds / 3
            if self._window is None:
                self._window = _Window(loaded_to=int(row["last_seq"]))
                self._stored_cursor = int(row["last_seq"])
                self._error = row["last_error"]
        window = self._window
        if not self._opened:
            try:
                await self.sink.open()
                self._opened = True
            except SinkUnavailable as exc:
                return await self._unavailable(str(exc))
        if window.size < self.max_window:
            await self._load(window)
        batch = window.ready(self.clock(), self.config.batch_size)
        if not batch:
            due = window.next_due()
            idle = self.poll_interval if due is None else max(0.0, due - self.clock())
            return min(idle, self.poll_interval)
        try:
            outcomes = await self.sink.deliver(batch)
        except SinkUnavailable as exc:
            return await self._unavailable(str(exc))
        except Exception as exc:  # a sink bug must not stop replication for good
            log.exception("sink %s failed unexpectedly", self.sink.name)
            return await self._unavailable(f"{type(exc).__name__}: {exc}")
        self._unavailable_streak = 0
        shipped = self._settle(window, batch, outcomes)
        await self._store(window, shipped.parked, error=None)
        if self.on_shipped is not None and shipped.delivered:
            self.on_shipped(shipped.delivered, self.clock())
        self.delivered_total += len(shipped.delivered)
        return 0.0 if window.size else self.poll_interval

    async def _load(self, window: _Window) -> None:
        upto = await self.horizon.current()
        if upto is not None and upto <= window.loaded_to:
            return
        limit = min(self.config.batch_size, self.max_window - window.size)
        after = window.loaded_to
        changes = await _read(self.db, after, upto, limit)
        window.add(changes)

    def _settle(self, window: _Window, batch: list[Change], outcomes: Outcomes) -> _Settled:
        settled = _Settled()
        now = self.clock()
        blocked: set[str] = set()
        for change in batch:
            key = change.ordering_key
            if key in blocked:
                continue
            delivery = outcomes.get(change.ident)
            outcome = Outcome.DELIVERED if delivery is None else delivery.outcome
            if outcome is Outcome.DELIVERED:
                window.pop(key)
                settled.delivered.append(change)
                continue
            reason = (delivery.reason if delivery is not None else None) or outcome.value
            if outcome is Outcome.REJECTED:
                window.pop(key)
                settled.parked.append((change, reason, window.attempts.get(change.seq, 0) + 1))
                continue
            attempts = window.attempts.get(change.seq, 0) + 1
            if attempts >= self.config.max_attempts:
                window.pop(key)
                settled.parked.append(
                    (change, f"gave up after {attempts} tries: {reason}", attempts)
                )
                # The chat's next change goes out in the next round.
                blocked.add(key)
                continue
            window.attempts[change.seq] = attempts
            window.not_before[key] = now + backoff(
                attempts,
                base=self.config.backoff_base_seconds,
                cap=self.config.backoff_max_seconds,
                rng=self._rng,
            )
            blocked.add(key)
            if reason != self._error:
                log.warning(
                    "sink %s: change %d will be retried: %s", self.sink.name, change.seq, reason
                )
        return settled

    async def _store(
        self, window: _Window, parked: list[tuple[Change, str, int]], *, error: str | None
    ) -> None:
        cursor = window.cursor()
        if cursor == self._stored_cursor and not parked and error == self._error:
            return
        now = self.clock()
        for change, reason, _ in parked:
            log.warning("sink %s: change %d dead-lettered: %s", self.sink.name, change.seq, reason)

        def store(conn: SyncConnection) -> bool:
            q.park_sync(conn, sink=self.sink.name, parked=parked, now=now)
            return q.advance_cursor_sync(
                conn, sink=self.sink.name, owner=self.owner, last_seq=cursor, now=now, error=error
            )

        if await self.db.write(store):
            self._stored_cursor = cursor
            self._error = error
        else:
            log.info("sink %s: lease lost; another process ships it now", self.sink.name)
            self._window = None

    async def _unavailable(self, reason: str) -> float:
        self._unavailable_streak += 1
        self._opened = self._opened and self._unavailable_streak < 3
        if reason != self._error:
            log.warning("sink %s unavailable: %s", self.sink.name, reason)
        if self._window is not None:
            await self._store(self._window, [], error=reason)
        return backoff(
            self._unavailable_streak,
            base=self.config.backoff_base_seconds,
            cap=self.config.backoff_max_seconds,
            rng=self._rng,
        )


@dataclass
class _Settled:
    delivered: list[Change] = field(default_factory=list)
    parked: list[tuple[Change, str, int]] = field(default_factory=list)


async def _read(db: Database, after: int, upto: int | None, limit: int) -> list[Change]:
    async with db.read() as conn:
        return await conn.run_sync(
            lambda c: q.read_changes_sync(c, after=after, upto=upto, limit=limit)
        )
