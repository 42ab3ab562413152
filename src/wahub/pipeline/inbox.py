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
from wahub.store.database import Connection, Database

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
            except Exception:
                # Never let the processor die: log, back off, go on.
                log.exception("inbox batch crashed")
                done = 0
                await asyncio.sleep(1.0)
            if done:
                idle = 0.02
            else:
                await self.wakeup.wait(idle)
                idle = min(idle * 2, 0.25)

    async def process_batch(self) -> int:
        """Process up to one batch of due deliveries; returns how many were handled.

        The batch is applied in one transaction. If applying it fails for a reason that
        is not the database's (a bug, a value the parser let through), the batch is
        rolled back and its deliveries are applied one at a time, so the bad one is
        retried with backoff and then dead-lettered, and it never blocks the others.
        """
        now = time.time()
        try:
            async with self.db.transaction() as conn:
                rows = await inbox_q.lock_pending(conn, now=now, limit=BATCH)
                poisoned = await self._apply(conn, rows, now)
        except WahubError:
            raise
        except Exception:
            log.exception("inbox batch failed: applying its deliveries one at a time")
            async with self.db.read() as conn:
                rows = await inbox_q.lock_pending(conn, now=now, limit=BATCH)
            poisoned = []
            for row in rows:
                try:
                    async with self.db.transaction() as conn:
                        poisoned += await self._apply(conn, [row], now)
                except WahubError:
                    raise
                except Exception as exc:
                    poisoned.append((row, exc))
        for row, error in poisoned:
            await self._record_failure(row, error, now)
        if rows:
            self.processed += len(rows)
            self.on_change()
        return len(rows)

    async def _apply(
        self, conn: Connection, rows: list[dict[str, Any]], now: float
    ) -> list[tuple[dict[str, Any], Exception]]:
        """Parse and apply ``rows``; returns those whose parser crashed (not dead letters)."""
        observed: list[q.ObservedStatus] = []
        good: list[int] = []
        poisoned: list[tuple[dict[str, Any], Exception]] = []
        for row in rows:
            try:
                observed.extend(observed_statuses(row["provider"], row["body"]))
                good.append(row["id"])
            except ValidationError as exc:
                await inbox_q.mark_failed(
                    conn, row["id"], error=exc.message, now=now, retry_at=None
                )
                log.warning("inbox delivery %s dead-lettered: %s", row["id"], exc.message)
            except Exception as exc:
                poisoned.append((row, exc))
        await q.apply_statuses(conn, observed, now)
        await inbox_q.mark_processed(conn, good, now)
        return poisoned

    async def _record_failure(self, row: dict[str, Any], error: Exception, now: float) -> None:
        attempts = int(row["attempts"]) + 1
        retry_at = None if attempts >= MAX_ATTEMPTS else now + 2 ** row["attempts"]
        async with self.db.transaction() as conn:
            await inbox_q.mark_failed(
                conn,
                row["id"],
                error=f"{type(error).__name__}: {error}",
                now=now,
                retry_at=retry_at,
            )
        log.error(
            "inbox delivery %s failed (attempt %d of %d)",
            row["id"],
            attempts,
            MAX_ATTEMPTS,
            exc_info=error,
        )
