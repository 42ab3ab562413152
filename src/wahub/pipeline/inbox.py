"""The webhook processor: turns stored deliveries into status changes, exactly once.

Receiving (``api/webhooks.py``) only verifies and stores; this loop does the work, in
batches, in the same transaction that marks the deliveries processed. A delivery that
cannot be parsed becomes a dead letter with the reason; one that fails for another
reason is retried with backoff and dead-lettered after ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from wahub.domain.errors import ValidationError, WahubError
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.cloudapi_webhooks import parse_statuses
from wahub.store import inbox as inbox_q
from wahub.store import messages as q
from wahub.store.database import Database

log = logging.getLogger("wahub.inbox")

MAX_ATTEMPTS = 10
BATCH = 256


def observed_statuses(provider: str, body: bytes) -> list[q.ObservedStatus]:
    """Parse one stored delivery. Raises ValidationError for a body of the wrong shape."""
    if provider != "cloudapi":
        raise ValidationError(f"no parser for provider {provider!r}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValidationError("body is not a JSON object")
    return [
        q.ObservedStatus(
            provider_message_id=u.provider_message_id,
            status=u.status,
            timestamp=u.timestamp,
            tracking_id=u.tracking_id,
            error_code=str(u.errors[0].code) if u.errors and u.errors[0].code is not None else None,
            error_title=(u.errors[0].detail or u.errors[0].title) if u.errors else None,
        )
        for u in parse_statuses(payload)
    ]


class InboxProcessor:
    def __init__(
        self, db: Database, wakeup: Wakeup, *, on_change: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.wakeup = wakeup
        self.on_change = on_change or (lambda: None)
        self.processed = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        idle = 0.02
        while not self._stopping.is_set():
            try:
                done = await self.process_batch()
            except WahubError as exc:
                log.warning("inbox batch failed: %s", exc.message)
                done = 0
                await asyncio.sleep(1.0)
            if done:
                idle = 0.02
            else:
                await self.wakeup.wait(idle)
                idle = min(idle * 2, 0.25)

    async def process_batch(self) -> int:
        """Process up to one batch of due deliveries; returns how many were handled."""
        now = time.time()
        poisoned: list[tuple[dict[str, Any], Exception]] = []
        async with self.db.transaction() as conn:
            rows = await inbox_q.lock_pending(conn, now=now, limit=BATCH)
            if not rows:
                return 0
            observed: list[q.ObservedStatus] = []
            good: list[int] = []
            for row in rows:
                try:
                    observed.extend(observed_statuses(row["provider"], row["body"]))
                    good.append(row["id"])
                except ValidationError as exc:
                    await inbox_q.mark_failed(
                        conn, row["id"], error=exc.message, now=now, retry_at=None
                    )
                    log.warning("inbox delivery %s dead-lettered: %s", row["id"], exc.message)
                except Exception as exc:  # a parser bug must not block the whole inbox
                    poisoned.append((row, exc))
            await q.apply_statuses(conn, observed, now)
            await inbox_q.mark_processed(conn, good, now)
        for row, error in poisoned:
            retry_at = None if row["attempts"] + 1 >= MAX_ATTEMPTS else now + 2 ** row["attempts"]
            async with self.db.transaction() as conn:
                await inbox_q.mark_failed(
                    conn,
                    row["id"],
                    error=f"{type(error).__name__}: {error}",
                    now=now,
                    retry_at=retry_at,
                )
            log.error("inbox delivery %s failed", row["id"], exc_info=error)
        self.processed += len(rows)
        self.on_change()
        return len(rows)
