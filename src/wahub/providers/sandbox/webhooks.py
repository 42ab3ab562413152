"""Status webhooks: plan each accepted send's statuses and deliver them the way Meta does.

One POST per status, signed with ``app_secret``, retried with exponential backoff while
the receiver is down or answers non-2xx, so a hub restart loses no status. Statuses of
one message arrive in order (the next is queued only once the previous one is delivered
or given up) unless ``shuffle`` is on. Delivery runs on a fixed pool of sender tasks
sharing one ``aiohttp.ClientSession``; the send endpoint only appends to a queue.

The same senders deliver simulated inbound messages (``post``, used by ``inbound.py``):
a prepared body to a URL of its own, with the same retries, duplication and counters of
their own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.shapes import Account, signature_header, status_webhook_body
from wahub.providers.sandbox.state import SendRecord

logger = logging.getLogger(__name__)

# Connection errors, timeouts and resets all mean "the receiver did not take it": retry.
_DELIVERY_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(slots=True, eq=False)
class _MessageProgress:
    """Shared by the statuses of one message: the latest (in planned order) delivered."""

    latest_delivered: int = -1


@dataclass(slots=True, eq=False)
class _StatusEvent:
    """One status of one message. ``body`` is serialised on the first attempt and reused
    by retries and duplicates, so every copy the receiver gets is byte-identical.
    ``order`` is its place among the message's statuses (sent 0, delivered 1, ...)."""

    record: SendRecord
    status: str
    timestamp: int
    order: int
    progress: _MessageProgress
    body: bytes | None = None


@dataclass(slots=True, eq=False)
class _RawPost:
    """A prepared webhook (an inbound message): its URL, signed body and headers are
    fixed when it is queued, so retries and duplicates are byte-identical."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class InboundCounters:
    """Deliveries of simulated inbound webhooks, counted apart from status webhooks."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    duplicated: int = 0


@dataclass(slots=True, eq=False)
class _Delivery:
    """One POST to make (with its retries). ``follower`` is queued when this one is done,
    which is what keeps a message's statuses in order. ``generation`` ties it to the
    dispatcher state it was planned in: a reset or stop makes it stale, and stale
    deliveries are dropped wherever they are met (queue, timer, in flight)."""

    event: _StatusEvent | _RawPost
    delay_s: float
    generation: int
    follower: _Delivery | None = None
    attempts: int = 0
    duplicate: bool = False  # the second copy of a duplicated webhook


class WebhookDispatcher:
    """Queues and delivers status webhooks for one sandbox.

    ``emit`` never blocks; ``start`` must run inside the event loop before deliveries
    can happen (until then they wait in the queue). Counters: ``delivered`` (2xx
    answers), ``failed_attempts`` (attempts that got an error or non-2xx),
    ``given_up`` (deliveries dropped after ``webhook_max_attempts``, or because
    ``webhook_url`` was unset meanwhile), ``pending`` (deliveries not yet done),
    ``duplicated`` (second copies delivered) and ``out_of_order`` (statuses delivered
    after a later status of the same message: what a receiver had to put back in order).
    """

    def __init__(self, config: SandboxConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._generation = 0
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.inbound = InboundCounters()

    @property
    def pending(self) -> int:
        return self._pending

    async def start(self) -> None:
        """Open the shared session and start ``webhook_concurrency`` sender tasks."""
        concurrency = self.config.webhook_concurrency
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        self._workers = [
            asyncio.create_task(self._work(), name=f"sandbox-webhook-sender-{index}")
            for index in range(concurrency)
        ]

    async def stop(self) -> None:
        """Drop every pending delivery, stop the senders and close the session."""
        self._forget_pending()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """Drop every pending delivery and zero the counters. A POST already on the wire
        may still reach the receiver; its outcome is ignored."""
        self._forget_pending()
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.inbound = InboundCounters()

    # The caller-facing timeout parameter is the contract of Sandbox.wait_webhooks_idle.
    async def wait_idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return once no delivery is pending; raise ``TimeoutError`` after ``timeout`` s."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def emit(self, record: SendRecord) -> None:
        """Plan the status webhooks of an accepted send and queue them.

        Statuses are ``config.statuses`` (sent, delivered, read by default) or, for a
        ``fail_fraction`` draw, ``sent`` (if enabled) then ``failed``. Timestamps follow
        that order; ``duplicate_fraction`` doubles a status; ``shuffle`` gives every copy
        an independent random delay instead of chaining them.
        """
        config = self.config
        rng = self._rng
        names = config.statuses
        if config.fail_fraction and rng.random() < config.fail_fraction:
            names = ("sent", "failed") if "sent" in names else ("failed",)
        if not names:
            return
        step = config.webhook_delay_ms / 1000
        # Wide enough that independent delays often invert a message's statuses.
        spread = max(step, 0.005) * len(names) * 2
        deliveries: list[_Delivery] = []
        progress = _MessageProgress()
        for index, name in enumerate(names):
            timestamp = int(record.received_at + step * (index + 1))
            event = _StatusEvent(record, name, timestamp, index, progress)
            duplicated = config.duplicate_fraction and rng.random() < config.duplicate_fraction
            for copy in range(2 if duplicated else 1):
                delay = rng.uniform(0, spread) if config.shuffle else step
                deliveries.append(_Delivery(event, delay, self._generation, duplicate=copy > 0))
        self._pending += len(deliveries)
        self._idle.clear()
        if config.shuffle:
            for delivery in deliveries:
                self._schedule(delivery, delivery.delay_s)
            return
        for earlier, later in itertools.pairwise(deliveries):
            earlier.follower = later
        self._schedule(deliveries[0], deliveries[0].delay_s)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Queue one prepared webhook POST (a simulated inbound message) for delivery
        with the status webhooks' retries; ``duplicate_fraction`` may deliver it twice,
        as providers deliver at least once."""
        raw = _RawPost(url, body, dict(headers))
        copies = 1
        duplicate = self.config.duplicate_fraction
        if duplicate and self._rng.random() < duplicate:
            copies = 2
        self._pending += copies
        self._idle.clear()
        for copy in range(copies):
            self._schedule(_Delivery(raw, 0.0, self._generation, duplicate=copy > 0), 0.0)

    def _forget_pending(self) -> None:
        self._generation += 1
        while not self._queue.empty():
            self._queue.get_nowait()
        self._pending = 0
        self._idle.set()

    def _schedule(self, delivery: _Delivery, delay_s: float) -> None:
        if delay_s <= 0:
            self._queue.put_nowait(delivery)
        else:
            asyncio.get_running_loop().call_later(delay_s, self._enqueue, delivery)

    def _enqueue(self, delivery: _Delivery) -> None:
        if delivery.generation == self._generation:
            self._queue.put_nowait(delivery)

    def _finish(self, delivery: _Delivery) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
        follower = delivery.follower
        if follower is not None:
            self._schedule(follower, follower.delay_s)

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            if delivery.generation != self._generation:
                continue
            raw = delivery.event if isinstance(delivery.event, _RawPost) else None
            url = raw.url if raw is not None else self.config.webhook_url
            if url is None:
                self.given_up += 1
                self._finish(delivery)
                continue
            delivered = await self._attempt(delivery, url)
            if delivery.generation != self._generation:
                continue
            if delivered:
                self._count_delivered(delivery)
                self._finish(delivery)
                continue
            if raw is not None:
                self.inbound.failed_attempts += 1
            else:
                self.failed_attempts += 1
            if delivery.attempts >= self.config.webhook_max_attempts:
                if raw is not None:
                    self.inbound.given_up += 1
                else:
                    self.given_up += 1
                self._finish(delivery)
            else:
                self._schedule(delivery, self._backoff(delivery.attempts))

    def _count_delivered(self, delivery: _Delivery) -> None:
        event = delivery.event
        if isinstance(event, _RawPost):
            self.inbound.delivered += 1
            self.inbound.duplicated += delivery.duplicate
            return
        self.delivered += 1
        self.duplicated += delivery.duplicate
        if event.order < event.progress.latest_delivered:
            self.out_of_order += 1
        else:
            event.progress.latest_delivered = event.order

    async def _attempt(self, delivery: _Delivery, url: str) -> bool:
        """POST once; True on a 2xx answer. Never raises except on cancellation."""
        assert self._session is not None, "deliveries only run after start()"
        delivery.attempts += 1
        config = self.config
        event = delivery.event
        if isinstance(event, _RawPost):
            body, headers = event.body, event.headers
        else:
            if event.body is None:
                record = event.record
                account = Account(
                    config.waba_id, config.display_phone_number, record.phone_number_id
                )
                event.body = status_webhook_body(
                    account,
                    wamid=record.wamid,
                    status=event.status,
                    timestamp=event.timestamp,
                    recipient_id=record.wa_id,
                    callback_data=record.biz_opaque_callback_data,
                )
            body = event.body
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "facebookexternalua",
                "X-Hub-Signature-256": signature_header(config.app_secret, body),
            }
        timeout = aiohttp.ClientTimeout(total=config.webhook_timeout_s)
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                return 200 <= response.status < 300
        except _DELIVERY_ERRORS:
            return False
        except Exception:
            # A bug must not silently shrink the sender pool: log it, treat as a failure.
            logger.exception("sandbox webhook delivery crashed")
            return False

    def _backoff(self, attempts: int) -> float:
        """Delay before the next attempt: doubling from the initial delay up to the cap,
        with 5 % jitter so retries after an outage do not arrive in lockstep."""
        config = self.config
        base = config.webhook_backoff_initial_s * 2.0 ** min(attempts - 1, 30)
        return min(config.webhook_backoff_max_s, base) * self._rng.uniform(0.95, 1.05)
