"""``wahub bench events``: inbound messages through the sandbox into a subscription.

Inbound messages are offered at ``rate`` per second for ``seconds`` (open loop: every
10 ms a ``POST /_sandbox/inbound`` for the tick's share, from ``chats`` senders), so
they travel the whole way: the sandbox's signed Cloud API webhooks, the hub's receiver
and inbox, the change log, the fan-out into the subscription's outbox, the delivery
worker. The subscription (``message.received``) points at a local receiver that
answers 503 to ``fail_share`` of the requests at random and 204 to the rest.

- ``events``: inbound messages the hub stored (each must reach the receiver once;
  ``offered`` says how many were offered);
- ``delivered_per_s``: distinct events accepted by the receiver per second, from the
  first offer to the last acceptance;
- ``p99_delivery_ms``: from the event's change (the hub storing the message) to the
  receiver accepting it, over the accepted events;
- ``lost``: events never accepted; ``duplicates``: acceptances beyond the first of a
  ``webhook-id``; ``out_of_order``: acceptances of a chat's event after a later one of
  the same chat (by the change sequence in the event id).

Baseline in the same run: the same receiver, driven directly by one client at the
delivery worker's concurrency with as many signed events (each failed request retried
at once), ``baseline_delivered_per_s`` and ``baseline_p99_delivery_ms``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import func, select

from wahub.config import Settings
from wahub.embedded import add_sandbox_channel, embedded_stack, free_port
from wahub.providers.sandbox import SandboxConfig
from wahub.signed_webhooks import new_secret, secret_key, standard_headers
from wahub.store import subscriptions as q
from wahub.store.schema import event_deliveries, messages

TICK_SECONDS = 0.01
# Generous: on a loaded machine the inbound path alone may take minutes for 10,000.
DRAIN_TIMEOUT_SECONDS = 1800.0
STALLED_SECONDS = 60.0


@dataclass
class Receiver:
    """Fails ``fail_share`` of requests (503), accepts the rest, and records each
    acceptance: webhook id, arrival time, the event's time and chat."""

    fail_share: float
    rng: random.Random = field(default_factory=lambda: random.Random(18))
    accepted: list[tuple[str, float, float, str]] = field(default_factory=list)
    failed: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.rng.random() < self.fail_share:
            self.failed += 1
            return web.Response(status=503)
        event = orjson.loads(body)
        data = event.get("data") or {}
        occurred = float(data.get("_occurred", 0.0)) or _parse_iso(event.get("timestamp"))
        self.accepted.append(
            (request.headers["webhook-id"], time.time(), occurred, str(data.get("chat_id")))
        )
        return web.Response(status=204)


def _parse_iso(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@asynccontextmanager
async def _serve(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        yield f"http://127.0.0.1:{port}/events"
    finally:
        await runner.cleanup()


def _percentile(samples: list[float], share: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _seq(webhook_id: str) -> int:
    # evt_<change seq>_<type>
    return int(webhook_id.split("_")[1])


def judge(receiver: Receiver, expected: int, started: float) -> dict[str, Any]:
    """Counts over the receiver's acceptances (see the module docstring)."""
    seen: set[str] = set()
    duplicates = out_of_order = 0
    last_seq: dict[str, int] = {}
    latencies: list[float] = []
    last_at = started
    for webhook_id, at, occurred, chat in receiver.accepted:
        if webhook_id in seen:
            duplicates += 1
            continue
        seen.add(webhook_id)
        seq = _seq(webhook_id)
        if seq < last_seq.get(chat, -1):
            out_of_order += 1
        last_seq[chat] = max(seq, last_seq.get(chat, -1))
        latencies.append((at - occurred) * 1000.0)
        last_at = max(last_at, at)
    elapsed = max(last_at - started, 1e-9)
    return {
        "events": expected,
        "delivered_per_s": round(len(seen) / elapsed, 1),
        "p99_delivery_ms": round(_percentile(latencies, 0.99), 1),
        "p50_delivery_ms": round(_percentile(latencies, 0.50), 1),
        "lost": max(expected - len(seen), 0),
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "receiver_failures": receiver.failed,
    }


async def _baseline(events: int, fail_share: float, concurrency: int) -> dict[str, Any]:
    """The same receiver driven directly: signed events, a failed one retried at once."""
    receiver = Receiver(fail_share)
    secret = secret_key(new_secret())
    async with _serve(receiver) as url, aiohttp.ClientSession() as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(events):
            queue.put_nowait(i)
        started = time.time()

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                now = time.time()
                body = orjson.dumps(
                    {
                        "type": "message.received",
                        "data": {"chat_id": f"chat{i % 100}", "_occurred": now, "n": i},
                    }
                )
                while True:
                    headers = standard_headers(secret, f"evt_{i}_bench", int(now), body)
                    async with http.post(url, data=body, headers=headers) as answer:
                        if answer.status < 300:
                            break

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result = judge(receiver, events, started)
    return {
        "baseline_delivered_per_s": result["delivered_per_s"],
        "baseline_p99_delivery_ms": result["p99_delivery_ms"],
    }


async def run_events_bench(
    *, rate: float = 1000.0, seconds: float = 10.0, fail_share: float = 0.1, chats: int = 100
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wahub-bench-events-") as tmp:
        result = await _through_the_hub(Path(tmp), rate, seconds, fail_share, chats)
    concurrency = 64
    result.update(await _baseline(int(result["events"]) or 1, fail_share, concurrency))
    result["offered_per_s"] = rate
    result["seconds"] = seconds
    result["fail_share"] = fail_share
    return result


async def _through_the_hub(
    tmp: Path, rate: float, seconds: float, fail_share: float, chats: int
) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp / 'events.db'}",
        port=free_port(),
        sqlite_synchronous="NORMAL",
        log_level="WARNING",
    )
    receiver = Receiver(fail_share)
    config = SandboxConfig(webhook_delay_ms=0.0, webhook_concurrency=64, seed=18)
    async with (
        _serve(receiver) as url,
        embedded_stack(settings, sandbox_config=config) as stack,
    ):
        assert stack.sandbox_url is not None
        await add_sandbox_channel(stack.hub, stack.sandbox_url)
        created = await stack.hub.subscriptions.create(url=url, event_types=["message.received"])
        senders = [f"+1415555{n:04d}" for n in range(chats)]
        started = time.time()
        offered = await _offer(stack.sandbox_url, senders, rate, seconds)
        expected = await _drain(stack.hub, created["id"], offered)
        result = judge(receiver, expected, started)
    result["offered"] = offered
    return result


async def _offer(sandbox_url: str, senders: list[str], rate: float, seconds: float) -> int:
    """Open loop: every tick emits its share, whether or not earlier ticks finished."""
    per_tick = rate * TICK_SECONDS
    ticks = int(seconds / TICK_SECONDS)
    owed = 0.0
    offset = 0
    pending: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as http:
        begin = time.monotonic()

        async def emit(count: int, first: int) -> None:
            body = {
                "provider": "cloudapi",
                "count": count,
                "kinds": ["text"],
                "from": [senders[(first + i) % len(senders)] for i in range(count)],
            }
            async with http.post(f"{sandbox_url}/_sandbox/inbound", json=body) as answer:
                await answer.read()

        for tick in range(ticks):
            owed += per_tick
            count = int(owed)
            owed -= count
            if count:
                pending.append(asyncio.create_task(emit(count, offset)))
                offset += count
            delay = begin + (tick + 1) * TICK_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*pending)
    return offset


async def _drain(hub: Any, subscription_id: str, offered: int) -> int:
    """Wait until the hub stored every offered message (or stored nothing new for a
    minute: the sandbox gave some up) and the subscription has nothing pending; returns
    how many inbound messages the hub stored."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        async with hub.db.read() as conn:
            stored = (
                await conn.execute(
                    select(func.count()).select_from(messages).where(messages.c.direction == "in")
                )
            ).scalar_one()
            derived = (
                await conn.execute(
                    select(func.count())
                    .select_from(event_deliveries)
                    .where(event_deliveries.c.subscription_id == subscription_id)
                )
            ).scalar_one()
            pending = (
                await conn.execute(
                    select(func.count())
                    .select_from(event_deliveries)
                    .where(
                        event_deliveries.c.subscription_id == subscription_id,
                        event_deliveries.c.state == q.PENDING,
                    )
                )
            ).scalar_one()
        if stored != last_count:
            last_count, last_change = stored, time.monotonic()
        complete = stored >= offered or time.monotonic() - last_change > STALLED_SECONDS
        if complete and derived >= stored and pending == 0:
            return int(stored)
        await asyncio.sleep(0.1)
    return int(stored)
