"""Webhook intake with group commit.

Every delivery must be durable before we answer 200 (DESIGN invariant 9). Committing
each one in its own transaction makes the commit, not the work, the bottleneck: Meta
sends one status per request, three per message. Here concurrent requests queue their
rows and one flusher writes whatever has gathered in a single transaction, then releases
every waiting request at once. Each request still returns only after its row committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from wahub.store import inbox as inbox_q
from wahub.store.database import Database

MAX_BATCH = 512


@dataclass(slots=True)
class _Pending:
    provider: str
    dedupe_key: str
    headers: dict[str, str]
    body: bytes
    done: asyncio.Future[None]


class WebhookIntake:
    def __init__(self, db: Database, *, on_stored: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_stored = on_stored or (lambda: None)
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(
        self, *, provider: str, dedupe_key: str, headers: dict[str, str], body: bytes
    ) -> None:
        """Return once the delivery is committed (a duplicate counts as stored).

        Raises whatever the database raised (StoreUnavailable when it is away), so the
        caller answers 5xx and the provider retries.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(provider, dedupe_key, headers, body, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="webhook-intake")
        await done

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                now = time.time()
                async with self.db.transaction() as conn:
                    await inbox_q.store_deliveries(
                        conn,
                        [(p.provider, p.dedupe_key, p.headers, p.body) for p in batch],
                        now=now,
                    )
            except BaseException as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for p in batch:
                if not p.done.done():
                    p.done.set_result(None)
            self.on_stored()
