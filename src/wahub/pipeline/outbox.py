"""The send worker: claims due messages, paces them per channel, hands them to the
provider and records what happened.

Guarantees (DESIGN.md invariants 2, 4, 6, 7, 8):
- a message is claimed (leased) before it is sent, so two workers never send it at once;
- a chat's messages go out in order, one in flight at a time (the claim query);
- a channel is paced by the one worker holding its lease;
- a claimed message stays ``queued`` while it waits for pacing; only once it is paced
  is it marked ``sending`` (one UPDATE for every message ready at that moment,
  committed before their requests leave), so a crash before that leaves it ``queued``
  in its place, and only one whose request may have left can become ``uncertain``;
- an error response is a proof of non-delivery and is retried with backoff; a timeout
  is not, and makes the message ``uncertain`` until a status webhook or the grace policy
  settles it, so a crash or a slow provider never turns into a duplicate send.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import IntegrityError

from wahub.config import Settings
from wahub.domain.errors import (
    CredentialsUnreadable,
    PermanentProviderError,
    ProviderError,
    ProviderOutcomeUnknown,
    QuotedMessageNotSent,
    RetryableProviderError,
    WahubError,
)
from wahub.domain.ids import is_message_id
from wahub.domain.phones import chat_recipient, is_group_chat
from wahub.features.channels import CHANNEL_REMOVED
from wahub.features.media import MediaLibrary, media_ref
from wahub.media import media_store_from_settings
from wahub.pipeline.backoff import PAIR_LIMIT_CODE, retry_delay
from wahub.pipeline.pacing import PairLimiter, TokenBucket
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.base import MediaUploader, OutboundMessage
from wahub.providers.registry import ProviderRegistry, echoes_tracking_id
from wahub.store import channels as channel_q
from wahub.store import messages as q
from wahub.store.database import Database

log = logging.getLogger("wahub.outbox")

# A pacing wait longer than this gives the message back to the queue (with its
# next_attempt_at set) instead of holding a lease and a send slot while sleeping.
MAX_INLINE_WAIT = 1.0
CLAIM_LINGER_SECONDS = 0.005

# Provider codes that mean "this number (or app) is sending too fast": slow the channel.
THROUGHPUT_CODES = frozenset({4, 80007, 130429})


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()) & 0xFFFF:04x}"


@dataclass
class _ChannelPacing:
    fingerprint: tuple[float, int, float]
    bucket: TokenBucket
    pairs: PairLimiter


@dataclass
class OutboxStats:
    claimed: int = 0
    started: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0
    deferred: int = 0
    # Passes over the owned channels (lease renewals with their re-read).
    refreshes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        providers: ProviderRegistry,
        wakeup: Wakeup,
        *,
        worker_id: str | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers
        self.wakeup = wakeup
        self.worker_id = worker_id or worker_identity()
        self.on_change = on_change or (lambda: None)
        self.stats = OutboxStats()
        self._media: MediaLibrary | None = None
        self._channels: dict[str, dict[str, Any]] = {}
        self._pacing: dict[str, _ChannelPacing] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        # Messages a task of ours holds (claimed, pacing or sending). A claim can lapse
        # while its task still waits, and claiming it again only renews the lease.
        self._held: set[str] = set()
        self._slot_freed = asyncio.Event()
        self._results: asyncio.Queue[q.SendOutcome] = asyncio.Queue()
        # Paced messages waiting for ``sending`` to be recorded: (id, where to say the
        # attempt number, or None when the message is no longer ours to send).
        self._starts: asyncio.Queue[tuple[str, asyncio.Future[int | None]]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._verifying: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()``; then finish in-flight sends and record their results."""
        writer = asyncio.create_task(self._write_results(), name="outbox-results")
        starter = asyncio.create_task(self._write_starts(), name="outbox-starts")
        leases = asyncio.create_task(self._renew_channel_leases(), name="outbox-leases")
        maintenance = asyncio.create_task(self._maintain(), name="outbox-maintenance")
        try:
            await self.refresh_channels()
            await self._claim_loop()
        finally:
            leases.cancel()
            maintenance.cancel()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            await self._results.join()
            writer.cancel()
            starter.cancel()
            for task in (leases, maintenance, writer, starter):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(WahubError):
                async with self.db.transaction() as conn:
                    released = await channel_q.release_channel_leases(
                        conn, owner=self.worker_id, now=time.time()
                    )
                if released:
                    log.info(
                        "channel leases released",
                        extra={"worker": self.worker_id, "channels": released},
                    )

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    # -- channels ----------------------------------------------------------------------

    @property
    def channel_ids(self) -> frozenset[str]:
        """The channels this worker sends for now (as of its last refresh)."""
        return frozenset(self._channels)

    async def refresh_channels(self) -> None:
        """Take or renew channel leases and re-read the channels this worker owns (their
        pacing, status, removal). Runs every second by itself; a send between a change
        and the next refresh still sees the channel as it was."""
        rows = await self._take_channels()
        self.stats.refreshes += 1
        self._log_lease_changes(self._channels, rows)
        self._channels = rows
        for channel_id, channel in rows.items():
            fingerprint = (
                float(channel["rate_per_second"]),
                int(channel["pair_burst"]),
                float(channel["pair_interval_seconds"]),
            )
            pacing = self._pacing.get(channel_id)
            if pacing is None or pacing.fingerprint != fingerprint:
                rate, burst, interval = fingerprint
                self._pacing[channel_id] = _ChannelPacing(
                    fingerprint, TokenBucket(rate, rate), PairLimiter(burst, interval)
                )

    async def _take_channels(self) -> dict[str, dict[str, Any]]:
        """Lease channels and return the rows of those this worker may send now."""
        async with self.db.transaction() as conn:
            owned = await channel_q.acquire_channel_leases(
                conn,
                owner=self.worker_id,
                now=time.time(),
                lease_seconds=self.settings.channel_lease_seconds,
                limit=self.settings.worker_max_channels,
            )
            return {
                c["id"]: c
                for c in await channel_q.list_channels(conn, include_removed=True)
                if c["id"] in owned
            }

    def _log_lease_changes(
        self, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
    ) -> None:
        # Which worker sends which channel is what an operator asks first when a
        # channel stalls; a lost lease means another worker took the channel over
        # (ours ran out, e.g. while the database was unreachable).
        for channel_id in after.keys() - before.keys():
            log.info(
                "channel lease taken",
                extra={
                    "worker": self.worker_id,
                    "channel_id": channel_id,
                    "channel": after[channel_id]["name"],
                },
            )
        for channel_id in before.keys() - after.keys():
            log.warning(
                "channel lease lost",
                extra={
                    "worker": self.worker_id,
                    "channel_id": channel_id,
                    "channel": before[channel_id]["name"],
                },
            )

    async def _renew_channel_leases(self) -> None:
        # At least every second: renewing is one cheap UPDATE, and it is also how this
        # worker notices channels added (or released by a dead worker) since the last look.
        while True:
            await asyncio.sleep(min(self.settings.channel_lease_seconds / 3, 1.0))
            try:
                await self.refresh_channels()
            except WahubError as exc:
                log.warning("channel lease renewal failed: %s", exc.message)

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        idle = 0.02
        while not self._stopping.is_set():
            free = self.settings.worker_concurrency - len(self._inflight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            limit = min(free, 256, self._claim_budget())
            if limit <= 0:
                # The channels are paced to their limit for now: claim once tokens come.
                await asyncio.sleep(CLAIM_LINGER_SECONDS * 10)
                continue
            try:
                rows = await self.db.write(
                    functools.partial(
                        q.claim_due_messages_sync,
                        channel_ids=list(self._channels),
                        owner=self.worker_id,
                        now=time.time(),
                        lease_seconds=self.settings.lease_seconds,
                        limit=limit,
                    )
                )
            except WahubError as exc:
                log.warning("claim failed, retrying: %s", exc.message)
                await asyncio.sleep(1.0)
                continue
            if rows:
                idle = 0.02
                self.stats.claimed += len(rows)
                self.on_change()
                for row in rows:
                    if row["id"] in self._held:
                        continue
                    self._held.add(row["id"])
                    task = asyncio.create_task(self._send(row))
                    self._inflight.add(task)
                    task.add_done_callback(functools.partial(self._done, row["id"]))
            else:
                # Nothing due: sleep until woken (new message, a result freed a chat) or
                # the poll interval passes (work from another process, a retry coming due).
                await self.wakeup.wait(idle)
                idle = min(idle * 2, 0.25)
                # Then let more freed chats gather, so one claim serves many of them.
                await asyncio.sleep(CLAIM_LINGER_SECONDS)

    def _claim_budget(self) -> int:
        """How many messages the owned channels can send within half a lease. Claiming
        more would leave claims waiting for pacing past their lease, for nothing."""
        horizon = self.settings.lease_seconds / 2
        budget = sum(
            pacing.bucket.available_within(horizon)
            for channel_id, pacing in self._pacing.items()
            if channel_id in self._channels
        )
        return max(0, int(budget))

    def _done(self, message_id: str, task: asyncio.Task[None]) -> None:
        self._held.discard(message_id)
        self._inflight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("send task crashed", exc_info=task.exception())

    # -- sending -----------------------------------------------------------------------

    async def _send(self, row: dict[str, Any]) -> None:
        channel = self._channels.get(row["channel_id"])
        pacing = self._pacing.get(row["channel_id"])
        if channel is None or pacing is None:
            # We lost the channel's lease between claim and send: give the message back.
            self._defer(row, time.time())
            return
        pair = pacing.pairs.bucket(row["chat_id"])
        if pair is not None:
            wait = pair.peek_wait()
            if wait > MAX_INLINE_WAIT:
                self._defer(row, time.time() + wait)
                return
            await asyncio.sleep(pair.reserve())
        jitter = float(channel.get("chat_jitter_seconds") or 0.0)
        if jitter > 0:
            # A fixed rhythm per chat reads as a machine to WhatsApp (web channels).
            await asyncio.sleep(random.uniform(0.0, jitter))
        await pacing.bucket.acquire()
        attempt = int(row["attempts"])
        try:
            reply_to = await self._resolve_reply(row)
            # Marked sending first, so whatever fails below (a removed channel, a token
            # our key cannot open) is recorded against this attempt.
            started = await self._start(row["id"])
            if started is None:
                return
            attempt = started
            if channel["removed_at"] is not None:
                # Queued again after its channel was removed (a retry, a resend): it
                # cannot go, and its erased token could not build an adapter.
                raise PermanentProviderError(
                    f"channel {channel['name']!r} was removed before this message was sent",
                    provider_code=CHANNEL_REMOVED,
                )
            adapter = self.providers.for_channel(channel)
            result = await adapter.send(
                OutboundMessage(
                    tracking_id=row["id"],
                    recipient=chat_recipient(row["chat_id"]),
                    is_group=is_group_chat(row["chat_id"]),
                    content=await self._provider_content(row["content"], channel, adapter),
                    reply_to=reply_to,
                )
            )
        except RetryableProviderError as exc:
            if exc.provider_code == PAIR_LIMIT_CODE:
                # The pair limit is about this recipient only: other chats go on.
                if pair is not None:
                    pair.pause(retry_delay(exc, attempt, base=1.0, cap=60.0))
            elif exc.provider_code in THROUGHPUT_CODES or exc.http_status == 429:
                pacing.bucket.pause(min(exc.retry_after or 1.0, 60.0))
            self._retry_or_fail(row, attempt, exc)
        except PermanentProviderError as exc:
            self._finish(row, attempt, "failed", exc)
        except ProviderOutcomeUnknown as exc:
            self.stats.uncertain += 1
            self._finish(row, attempt, "uncertain", exc)
        except ProviderError as exc:
            self._retry_or_fail(row, attempt, exc)
        except CredentialsUnreadable as exc:
            # The hub's key is wrong, not the message: retried (the operator may fix the
            # key and restart), then failed with the reason, which names the channel.
            self._retry_or_fail(
                row, attempt, RetryableProviderError(exc.message, provider_code=exc.code)
            )
        except WahubError as exc:
            self._finish(row, attempt, "failed", ProviderError(exc.message))
        else:
            self.stats.sent += 1
            if channel["status"] != "connected":
                await self._mark_verified(channel["id"])
            self._results.put_nowait(
                q.SendOutcome(
                    row["id"],
                    attempt,
                    "sent",
                    provider_message_id=result.provider_message_id,
                    wa_id=result.wa_id,
                )
            )

    async def _provider_content(
        self, content: dict[str, Any], channel: dict[str, Any], adapter: object
    ) -> dict[str, Any]:
        """The content as the provider must get it: a file we hold (``{"id": "med_..."}``)
        becomes the provider's id for it, uploaded first when it has none (still valid)
        for this channel. Runs after ``sending`` is recorded: an upload is no send, so a
        crash here leaves a message that provably did not go (no provider echo)."""
        if media_ref(content) is None:
            return content
        if not isinstance(adapter, MediaUploader):
            raise PermanentProviderError(
                f"channel {channel['name']!r} ({channel['kind']}) cannot send uploaded media"
            )
        if self._media is None:
            self._media = MediaLibrary(
                self.db,
                media_store_from_settings(self.settings),
                max_bytes=self.settings.media_max_bytes,
            )
        return await self._media.for_provider(content, channel["id"], adapter)

    async def _start(self, message_id: str) -> int | None:
        """Wait until ``sending`` is committed for this message (batched with every other
        message paced meanwhile); returns its attempt number, or None when it must not be
        sent (no longer our claim, or the database did not take the mark)."""
        started: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._starts.put_nowait((message_id, started))
        return await started

    async def _write_starts(self) -> None:
        while True:
            batch = [await self._starts.get()]
            while not self._starts.empty():
                batch.append(self._starts.get_nowait())
            ids = [message_id for message_id, _ in batch]
            try:
                attempts = await self.db.write(
                    functools.partial(
                        q.start_sends_sync,
                        message_ids=ids,
                        owner=self.worker_id,
                        now=time.time(),
                        lease_seconds=self.settings.lease_seconds,
                    )
                )
            except WahubError as exc:
                # Not sent, and not ``sending`` as far as we know: the claims lapse with
                # their lease and the messages are claimed again. (Had the commit happened
                # unseen, they become uncertain and are settled like any cut-short send.)
                log.warning("marking %d sends as started failed: %s", len(ids), exc.message)
                attempts = {}
            except IntegrityError:
                # A chat of the batch has another message in flight (an operator requeued
                # an older one after this one was claimed): none of the batch starts now;
                # the claims lapse and the chats' heads are claimed again.
                log.warning("%d sends not started: a chat had another in flight", len(ids))
                attempts = {}
            self.stats.started += len(attempts)
            for message_id, started in batch:
                if not started.done():
                    started.set_result(attempts.get(message_id))
            if attempts:
                self.on_change()

    async def _mark_verified(self, channel_id: str) -> None:
        """A send succeeded: the channel's credentials are proved, record ``connected``.
        One write per channel until the next refresh shows the new status."""
        if channel_id in self._verifying:
            return
        self._verifying.add(channel_id)
        try:
            await self.db.write(
                functools.partial(
                    channel_q.mark_channel_verified_sync, channel_id=channel_id, now=time.time()
                )
            )
        except WahubError as exc:
            log.warning("recording channel %s as connected failed: %s", channel_id, exc.message)
        finally:
            self._verifying.discard(channel_id)

    async def _resolve_reply(self, row: dict[str, Any]) -> str | None:
        reply_to: str | None = row["reply_to"]
        if reply_to is None or not is_message_id(reply_to):
            return reply_to
        async with self.db.read() as conn:
            quoted = await q.get_message(conn, reply_to)
        # POST refused unknown ids and held replies behind their quoted message (same
        # ordering key), so a missing id here means the quoted message failed.
        if quoted is None or quoted["provider_message_id"] is None:
            status = quoted["status"] if quoted is not None else "unknown"
            raise QuotedMessageNotSent(
                f"reply_to {reply_to} was never sent ({status}), so there is nothing to quote"
            )
        return str(quoted["provider_message_id"])

    def _defer(self, row: dict[str, Any], when: float) -> None:
        self.stats.deferred += 1
        self._results.put_nowait(
            q.SendOutcome(row["id"], int(row["attempts"]), "defer", next_attempt_at=when)
        )

    def _retry_or_fail(self, row: dict[str, Any], attempt: int, exc: ProviderError) -> None:
        if attempt >= self.settings.max_attempts:
            self._finish(row, attempt, "failed", exc, exhausted=True)
            return
        delay = retry_delay(
            exc,
            attempt,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )
        self.stats.retried += 1
        self._results.put_nowait(
            q.SendOutcome(
                row["id"],
                attempt,
                "retry",
                next_attempt_at=time.time() + delay,
                error_code=_code(exc),
                error_title=exc.message[:300],
            )
        )

    def _finish(
        self,
        row: dict[str, Any],
        attempt: int,
        kind: str,
        exc: ProviderError,
        *,
        exhausted: bool = False,
    ) -> None:
        if kind == "failed":
            self.stats.failed += 1
        title = exc.message
        if exhausted:
            title = f"gave up after {attempt} attempts: {title}"
        self._results.put_nowait(
            q.SendOutcome(
                row["id"],
                attempt,
                kind,
                error_code=_code(exc),
                error_title=title[:300],
                error_detail=str(exc.details) if exc.details else None,
            )
        )

    # -- recording ---------------------------------------------------------------------

    async def _write_results(self) -> None:
        while True:
            batch = [await self._results.get()]
            while not self._results.empty() and len(batch) < 512:
                batch.append(self._results.get_nowait())
            try:
                await self._record(batch)
            finally:
                for _ in batch:
                    self._results.task_done()

    async def _record(self, batch: list[q.SendOutcome]) -> None:
        delay = 0.2
        while True:
            try:
                await self.db.write(
                    lambda conn: q.record_outcomes_sync(
                        conn, batch, owner=self.worker_id, now=time.time()
                    )
                )
                break
            except WahubError as exc:
                # The database is away: keep the results and try again. If we die first,
                # the leases expire and webhooks settle the messages (nothing is resent).
                log.warning("recording %d send results failed, retrying: %s", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.wakeup.notify()
        self.on_change()

    # -- maintenance -------------------------------------------------------------------

    def _reconcile_sync(
        self, conn: SyncConnection
    ) -> tuple[list[q.StatusChange], list[q.StatusChange]]:
        now = time.time()
        expired = q.expire_leases_sync(conn, now)
        settled = q.settle_uncertain_sync(
            conn,
            now=now,
            grace_seconds=self.settings.uncertain_grace_seconds,
            policy=self.settings.uncertain_policy,
            max_attempts=self.settings.max_attempts,
            echoes=echoes_tracking_id,
        )
        return expired, settled

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                expired, settled = await self.db.write(self._reconcile_sync)
                if expired or settled:
                    log.info(
                        "maintenance: %d lease(s) expired -> uncertain, %d uncertain settled",
                        len(expired),
                        len(settled),
                    )
                    self.wakeup.notify()
                    self.on_change()
            except WahubError as exc:
                log.warning("maintenance failed: %s", exc.message)


def _code(exc: ProviderError) -> str:
    return str(exc.provider_code) if exc.provider_code is not None else exc.code
