"""The webhook processor: turns stored deliveries into status changes and inbound
messages, exactly once.

Receiving (``api/webhooks.py``) only verifies and stores; this loop does the work, in
batches, in the same transaction that marks the deliveries processed. Each delivery is
parsed by its provider's parser (``pipeline/parsers.py``); statuses go through the
outbound status machine, messages through ``features/conversations.py``, in the order
the deliveries were received. A delivery that cannot be parsed, or whose messages name
a channel we do not have, becomes a dead letter with the reason; one that fails for
another reason is retried with backoff and dead-lettered after ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import OperationalError

from wahub.domain.errors import ValidationError, WahubError
from wahub.features.conversations import (
    InboundPolicy,
    record_inbound_sync,
    resolve_channel_refs_sync,
    resolve_channels_sync,
)
from wahub.features.identities import (
    apply_group_change_sync,
    known_phone_sync,
    link_identity_sync,
)
from wahub.features.inbound_media import (
    CONTENT_KEY,
    PENDING,
    download_ref,
    queue_download_sync,
)
from wahub.pipeline.parsers import parse_stored_delivery
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.base import GroupChange, IdentityLink, InboundMessage
from wahub.store import inbox as inbox_q
from wahub.store import messages as q
from wahub.store.database import Database, is_unavailable

log = logging.getLogger("wahub.inbox")

MAX_ATTEMPTS = 10
BATCH = 256
LINGER_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class PreparedDelivery:
    """A parsed delivery, its inbound messages' channels resolved."""

    statuses: list[q.ObservedStatus]
    messages: tuple[InboundMessage, ...]
    channels: dict[str | None, dict[str, Any]]
    group_changes: tuple[GroupChange, ...] = ()
    identities: tuple[IdentityLink, ...] = ()


def prepare_delivery_sync(conn: SyncConnection, provider: str, body: bytes) -> PreparedDelivery:
    """Parse one stored delivery and find its messages' channels. Raises ValidationError
    for a body of the wrong shape or a message for a channel we do not have."""
    parsed = parse_stored_delivery(provider, body)
    statuses = [
        q.ObservedStatus(
            provider_message_id=u.provider_message_id,
            status=u.status,
            timestamp=u.timestamp,
            tracking_id=u.tracking_id,
            error_code=str(u.errors[0].code) if u.errors and u.errors[0].code is not None else None,
            error_title=(u.errors[0].detail or u.errors[0].title) if u.errors else None,
        )
        for u in parsed.statuses
    ]
    channels = resolve_channels_sync(conn, provider, parsed.messages) if parsed.messages else {}
    for change in parsed.group_changes:
        if change.channel_ref not in channels:
            channels.update(resolve_channel_refs_sync(conn, provider, [change.channel_ref]))
    return PreparedDelivery(
        statuses, parsed.messages, channels, parsed.group_changes, parsed.identities
    )


class InboxProcessor:
    def __init__(
        self,
        db: Database,
        wakeup: Wakeup,
        *,
        on_change: Callable[[], None] | None = None,
        policy: InboundPolicy | None = None,
    ) -> None:
        self.db = db
        self.wakeup = wakeup
        self.on_change = on_change or (lambda: None)
        self.policy = policy or InboundPolicy()
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
        if not rows:
            # Nothing due (often: another processor took them). Every processor is woken
            # by every stored delivery, so an empty pass must cost only the one select.
            return 0, []
        parsed: list[tuple[dict[str, Any], PreparedDelivery]] = []
        crashed: list[tuple[dict[str, Any], Exception]] = []
        for row in rows:
            try:
                parsed.append((row, prepare_delivery_sync(conn, row["provider"], row["body"])))
            except ValidationError as exc:
                inbox_q.mark_failed_sync(conn, row["id"], error=exc.message, now=now, retry_at=None)
                log.warning("inbox delivery %s dead-lettered: %s", row["id"], exc.message)
            except Exception as exc:
                crashed.append((row, exc))
        try:
            with conn.begin_nested():
                self._apply_sync(conn, parsed, now)
        except Exception as batch_error:
            if _database_trouble(batch_error):
                raise  # the whole batch waits for the next try
            log.exception("inbox batch failed: applying its deliveries one at a time")
            for row, observed in parsed:
                try:
                    with conn.begin_nested():
                        self._apply_sync(conn, [(row, observed)], now)
                except Exception as exc:
                    if _database_trouble(exc):
                        raise
                    crashed.append((row, exc))
        poisoned: list[tuple[int, int, str]] = []
        for row, error in crashed:
            attempts = int(row["attempts"]) + 1
            retry_at = None if attempts >= MAX_ATTEMPTS else now + 2 ** row["attempts"]
            message = f"{type(error).__name__}: {error}"
            inbox_q.mark_failed_sync(conn, row["id"], error=message, now=now, retry_at=retry_at)
            poisoned.append((row["id"], attempts, message))
        return len(rows), poisoned

    def _apply_sync(
        self,
        conn: SyncConnection,
        parsed: list[tuple[dict[str, Any], PreparedDelivery]],
        now: float,
    ) -> None:
        q.apply_statuses_sync(conn, [o for _, prepared in parsed for o in prepared.statuses], now)
        # Received order: the inbox ids (one chat's messages are folded in sequence).
        for _, prepared in parsed:
            for message in prepared.messages:
                channel = prepared.channels[message.channel_ref]
                _record_sync(conn, known_phone_sync(conn, message), channel, self.policy, now)
            for change in prepared.group_changes:
                apply_group_change_sync(conn, change, prepared.channels[change.channel_ref], now)
            for link in prepared.identities:
                link_identity_sync(conn, link, now)
        inbox_q.mark_processed_sync(conn, [row["id"] for row, _ in parsed], now)


def _record_sync(
    conn: SyncConnection,
    message: InboundMessage,
    channel: dict[str, Any],
    policy: InboundPolicy,
    now: float,
) -> None:
    """Store one message; one that names a file is stored with its download queued (its
    content says ``pending``), in this transaction. The download happens later, outside
    the writer (``features/inbound_media.py``): a slow or failing provider never holds
    the message back."""
    ref = download_ref(channel["kind"], message.content)
    if ref is not None:
        message = replace(message, content={**message.content, CONTENT_KEY: PENDING})
    recorded = record_inbound_sync(conn, message, channel, policy, now)
    if recorded is not None and ref is not None:
        queue_download_sync(
            conn,
            message_id=recorded.message_id,
            channel_id=channel["id"],
            chat_id=recorded.chat_id,
            ref=ref,
            now=now,
        )


def _database_trouble(exc: Exception) -> bool:
    """The database's own trouble, not this delivery's: an outage (on PostgreSQL a
    dropped connection is no OperationalError) or SQLite's OperationalError (locked, a
    missing table). Retrying the delivery one by one or dead-lettering it would be wrong."""
    return isinstance(exc, OperationalError) or is_unavailable(exc)
