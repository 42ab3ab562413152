"""The subscriptions' delivery worker: claims stored deliveries, POSTs them signed
(Standard Webhooks), and records every attempt.

- Order: a claim takes, per subscription and chat, the oldest pending deliveries (up to
  ``per_key``); they are posted one after the other, and the first that fails ends its
  chat's turn (the rest are released unattempted and wait behind it).
- Retries: a failed delivery waits ``backoff(attempts)`` (capped), and is retried until
  it has been failing for ``retry_seconds`` (24 h by default); then it is a dead letter
  and its chat moves on. A receiver that refuses an event (4xx but 408/425/429) dead
  letters it at once.
- Pausing: 410 Gone pauses the subscription at once; a subscription with no success for
  ``pause_after_seconds`` (a day) is paused too, and a ``subscription.paused`` event goes
  to the other subscriptions that asked for it. A paused subscription keeps its
  deliveries; resuming sends them.
- A receiver that does not answer costs ``timeout_seconds`` and a retry, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from sqlalchemy import Connection as SyncConnection

from wahub.domain.backoff import backoff
from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import WahubError
from wahub.domain.subscription_events import SUBSCRIPTION_PAUSED, Event, delivery_rows
from wahub.pipeline.wakeup import Wakeup
from wahub.signed_webhooks import Attempt, Outcome, post_signed, secret_key, standard_headers
from wahub.store import subscriptions as q
from wahub.store.database import Database

log = logging.getLogger("wahub.subscriptions")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_seconds: float = 10.0
    retry_seconds: float = 86_400.0
    pause_after_seconds: float = 86_400.0
    # The first retry comes within a quarter second: most failures are a receiver's
    # blip, and a chat's later events wait behind a failed one.
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 600.0
    batch_size: int = 500
    per_key: int = 10
    concurrency: int = 64
    poll_interval: float = 0.2

    @property
    def lease_seconds(self) -> float:
        """Long enough for a claimed chat's every post to time out in turn, so a lease
        never lapses while its worker still posts (which would let a second worker send
        the same chat's events, out of order)."""
        return self.per_key * self.timeout_seconds + 30.0


def open_secret(cipher: CredentialCipher, sealed: object, subscription_id: str) -> str:
    """The subscription's ``whsec_`` secret (raises ``CredentialsUnreadable``)."""
    return cipher.open(sealed, channel=f"subscription {subscription_id}")["secret"]


class DeliveryWorker:
    """Delivers until ``stop()``. ``clock`` is injectable so tests can live a day."""

    def __init__(
        self,
        db: Database,
        cipher: CredentialCipher,
        wakeup: Wakeup,
        policy: DeliveryPolicy | None = None,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.wakeup = wakeup
        self.policy = policy or DeliveryPolicy()
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-events"
        self.clock = clock
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._keys: dict[str, bytes] = {}

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.notify()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Keep up to ``concurrency`` chats in flight: claim more as chats finish (a
        chat in flight is leased, so a claim never takes it twice)."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                free = self.policy.concurrency - len(in_flight)
                chats: list[list[dict[str, Any]]] = []
                if free > 0:
                    try:
                        chats = await self._claim(free * self.policy.per_key)
                    except WahubError as exc:  # the database is down: try again later
                        log.warning("event deliveries paused by the database: %s", exc)
                for rows in chats:
                    task = asyncio.create_task(self._chat(rows), name="event-delivery")
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if chats and len(in_flight) < self.policy.concurrency:
                    continue
                wake = asyncio.create_task(self.wakeup.wait(self.policy.poll_interval))
                await asyncio.wait({wake, *in_flight}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await self.close()

    async def step(self) -> bool:
        """One claim (up to ``batch_size`` rows) delivered and settled; True when it
        claimed anything. For tests and tools: ``run`` does this continuously."""
        chats = await self._claim(self.policy.batch_size)
        limit = asyncio.Semaphore(self.policy.concurrency)

        async def one(rows: list[dict[str, Any]]) -> None:
            async with limit:
                await self._chat(rows)

        await asyncio.gather(*(one(rows) for rows in chats))
        return bool(chats)

    async def _claim(self, limit: int) -> list[list[dict[str, Any]]]:
        """Claimed rows grouped by (subscription, chat), each group in order."""
        now = self.clock()
        claimed = await self.db.write(
            lambda c: q.claim_due_deliveries_sync(
                c,
                owner=self.owner,
                now=now,
                lease_seconds=self.policy.lease_seconds,
                limit=limit,
                per_key=self.policy.per_key,
            )
        )
        chats: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in claimed:
            chats.setdefault((row["subscription_id"], row["ordering_key"]), []).append(row)
        return list(chats.values())

    async def _chat(self, rows: list[dict[str, Any]]) -> None:
        """Post a chat's claimed rows in order, then record what happened. A failure
        here (the database down) leaves the leases to lapse: the rows are tried again."""
        try:
            await self._settle(await self._deliver_chat(rows))
        except WahubError as exc:
            log.warning("event deliveries not recorded (retried later): %s", exc)

    async def _deliver_chat(
        self, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Attempt | None]]:
        out: list[tuple[dict[str, Any], Attempt | None]] = []
        stopped = False
        for row in rows:
            if stopped:
                out.append((row, None))
                continue
            attempt = await self._post(row)
            out.append((row, attempt))
            # A failure holds the chat; a refusal dead-letters this one and goes on.
            stopped = attempt.outcome in (Outcome.RETRY, Outcome.GONE)
        return out

    async def _post(self, row: dict[str, Any]) -> Attempt:
        if self._session is None:
            self._session = new_session(self.policy)
        try:
            key = self._key(row)
        except WahubError as exc:
            return Attempt(Outcome.RETRY, None, 0.0, str(exc))
        body = orjson.dumps(row["payload"])
        # Wall-clock time, not the injectable clock: receivers check it against theirs.
        headers = standard_headers(key, row["webhook_id"], int(time.time()), body)
        return await post_signed(self._session, row["url"], body, headers)

    def _key(self, row: dict[str, Any]) -> bytes:
        sealed = row["secret"]
        cache_key = str(sealed)
        key = self._keys.get(cache_key)
        if key is None:
            key = secret_key(open_secret(self.cipher, sealed, row["subscription_id"]))
            self._keys[cache_key] = key
        return key

    async def _settle(self, results: list[tuple[dict[str, Any], Attempt | None]]) -> None:
        now = self.clock()
        policy = self.policy

        def settle(conn: SyncConnection) -> list[tuple[str, str]]:
            settled: list[q.Settled] = []
            by_subscription: dict[str, list[Attempt]] = {}
            for row, attempt in results:
                sub = row["subscription_id"]
                if attempt is None:
                    settled.append(
                        q.Settled(row["id"], sub, q.PENDING, row["next_attempt_at"], False)
                    )
                    continue
                by_subscription.setdefault(sub, []).append(attempt)
                settled.append(self._outcome(conn, row, attempt, now))
            q.settle_sync(conn, settled, owner=self.owner, now=now)
            paused: list[tuple[str, str]] = []
            for sub, attempts in by_subscription.items():
                reason = self._pause_reason(conn, sub, attempts, now, policy)
                if reason is not None and q.pause_subscription_sync(
                    conn, sub, reason=reason, now=now
                ):
                    announce_pause(conn, sub, reason, now)
                    paused.append((sub, reason))
            return paused

        for sub, reason in await self.db.write(settle):
            log.warning("subscription %s paused: %s", sub, reason)

    def _outcome(
        self, conn: SyncConnection, row: dict[str, Any], attempt: Attempt, now: float
    ) -> q.Settled:
        def settled(state: str, next_at: float) -> q.Settled:
            return q.Settled(
                row["id"],
                row["subscription_id"],
                state,
                next_at,
                True,
                attempt.status_code,
                attempt.latency_ms,
                attempt.reason,
            )

        if attempt.outcome is Outcome.DELIVERED:
            return settled(q.DELIVERED, now)
        if attempt.outcome is Outcome.REFUSED:
            return settled(q.DEAD, now)
        first_failure = row["first_failure_at"] or now
        if attempt.outcome is Outcome.RETRY and now - first_failure >= self.policy.retry_seconds:
            return settled(q.DEAD, now)
        wait = backoff(
            int(row["attempts"]) + 1,
            base=self.policy.backoff_base_seconds,
            cap=self.policy.backoff_max_seconds,
            rng=self._rng,
        )
        return settled(q.PENDING, now + wait)

    @staticmethod
    def _pause_reason(
        conn: SyncConnection,
        subscription_id: str,
        attempts: list[Attempt],
        now: float,
        policy: DeliveryPolicy,
    ) -> str | None:
        gone = next((a for a in attempts if a.outcome is Outcome.GONE), None)
        succeeded = any(a.outcome is Outcome.DELIVERED for a in attempts)
        sub = q.mark_subscription_result_sync(conn, subscription_id, succeeded=succeeded, now=now)
        if gone is not None:
            return f"the receiver answered 410 Gone: {gone.reason}"
        if sub is None or succeeded or sub["failing_since"] is None:
            return None
        failing_for = now - float(sub["failing_since"])
        if failing_for < policy.pause_after_seconds:
            return None
        last = next((a.reason for a in reversed(attempts) if a.reason), "failed")
        return f"no delivery succeeded for {failing_for / 3600:.1f} h; last error: {last}"


def announce_pause(conn: SyncConnection, subscription_id: str, reason: str, now: float) -> None:
    """Store a ``subscription.paused`` event for every other subscription asking for it,
    in the transaction that paused the subscription."""
    others = [
        s for s in q.list_subscriptions_sync(conn) if s["id"] != subscription_id and not s["paused"]
    ]
    event = Event(
        webhook_id=f"evt_paused_{subscription_id}_{int(now * 1000)}",
        type=SUBSCRIPTION_PAUSED,
        ordering_key=f"subscription:{subscription_id}",
        channel_id=None,
        data={"subscription_id": subscription_id, "reason": reason},
        occurred_at=now,
    )
    q.insert_deliveries_sync(conn, delivery_rows(others, [event], now))


def new_session(policy: DeliveryPolicy) -> aiohttp.ClientSession:
    """A session whose every request ends within the policy's timeout."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=policy.timeout_seconds),
        connector=aiohttp.TCPConnector(limit=policy.concurrency),
    )
