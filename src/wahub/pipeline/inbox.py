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
from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import OperationalError

from wahub.domain.errors import ValidationError, WahubError
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.cloudapi_webhooks import parse_statuses
from wahub.store import inbox as inbox_q
from wahub.store import messages as q
from wahub.store.database import Database

log = logging.getLogger("wahub.inbox")

MAX_ATTEMPTS = 10
BATCH = 256
LINGER_SECONDS = 0.02


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
                if done < BATCH:
                    # Let the next deliveries gather: one transaction for many statuses
                    # costs far less than one each (statuses may wait this long).
                    await asyncio.sleep(LINGER_SECONDS)
            else:
                await self.wakeup.wait(idle)
                idle = min(idle * 2, 0.25)

    async def process_batch(self) -> int:
        """Process up to one batch of due deliveries; returns how many were handled.

        The batch is applied in one transaction (one hop to the database, group-committed
        with other writers). If applying it fails for a reason that is not the
        database's (a bug, a value the parser let through), each delivery is applied in
        its own savepoint instead, so the bad one is retried with backoff and then
        dead-lettered, and it never blocks the others.
        """
        now = time.time()
        handled, poisoned = await self.db.write(lambda conn: self._process_sync(conn, now))
        for delivery_id, attempts, error in poisoned:
            log.error(
                "inbox delivery %s failed (attempt %d of %d): %s",
                delivery_id,
                attempts,
                MAX_ATTEMPTS,
                error,
            )
        if handled:
            self.processed += handled
            self.on_change()
        return handled

    def _process_sync(
        self, conn: SyncConnection, now: float
    ) -> tuple[int, list[tuple[int, int, str]]]:
        rows = inbox_q.lock_pending_sync(conn, now=now, limit=BATCH)
        parsed: list[tuple[dict[str, Any], list[q.ObservedStatus]]] = []
        crashed: list[tuple[dict[str, Any], Exception]] = []
        for row in rows:
            try:
                parsed.append((row, observed_statuses(row["provider"], row["body"])))
            except ValidationError as exc:
                inbox_q.mark_failed_sync(conn, row["id"], error=exc.message, now=now, retry_at=None)
                log.warning("inbox delivery %s dead-lettered: %s", row["id"], exc.message)
            except Exception as exc:
                crashed.append((row, exc))
        try:
            with conn.begin_nested():
                self._apply_sync(conn, parsed, now)
        except OperationalError:
            raise  # the database's own trouble: the whole batch waits for the next try
        except Exception:
            log.exception("inbox batch failed: applying its deliveries one at a time")
            for row, observed in parsed:
                try:
                    with conn.begin_nested():
                        self._apply_sync(conn, [(row, observed)], now)
                except OperationalError:
                    raise
                except Exception as exc:
                    crashed.append((row, exc))
        poisoned: list[tuple[int, int, str]] = []
        for row, error in crashed:
            attempts = int(row["attempts"]) + 1
            retry_at = None if attempts >= MAX_ATTEMPTS else now + 2 ** row["attempts"]
            message = f"{type(error).__name__}: {error}"
            inbox_q.mark_failed_sync(conn, row["id"], error=message, now=now, retry_at=retry_at)
            poisoned.append((row["id"], attempts, message))
        return len(rows), poisoned

    @staticmethod
    def _apply_sync(
        conn: SyncConnection,
        parsed: list[tuple[dict[str, Any], list[q.ObservedStatus]]],
        now: float,
    ) -> None:
        q.apply_statuses_sync(conn, [o for _, observed in parsed for o in observed], now)
        inbox_q.mark_processed_sync(conn, [row["id"] for row, _ in parsed], now)
