"""``wahub bench ingest``: signed Cloud API status webhooks over HTTP, as Meta sends them.

One status per request (``delivered`` and ``read`` for each of ``events / 2`` messages
that wait in ``sent``), a share of them posted twice, all in shuffled order, to a
``wahub serve`` process of its own. The clock stops when every event is processed (the
inbox drained and each status applied), not merely stored. Two baselines are measured
in the same run, because this machine's speed drifts:

- ``raw_http_per_s``: the same requests (same bodies, same client, same concurrency)
  against a do-nothing route served by the same server stack (uvicorn + FastAPI, started
  the way ``wahub serve`` starts it), in a process of its own: the ceiling of HTTP here;
- ``raw_insert_per_s``: the same deliveries inserted into the same database's inbox one
  per transaction with the product's own insert, then removed before the real run.

``ratio = events_per_s / raw_http_per_s``, with ``hub_cpu_ms_per_event``, the ``wahub
serve`` process's CPU over that run per event. Then ack latency: fresh events offered
open-loop at half of ``raw_http_per_s`` for five seconds (``offered_per_s``), each timed
from when it was due to its ``200`` (``p50_ms``, ``p99_ms``); Meta asks receivers for a
median under 250 ms and under 1 % over one second. ``lost`` counts events never applied,
``duplicates_applied`` events applied more than once, ``duplicates_stored`` repeated
deliveries that got past the door (each must be refused there by its dedupe key; one
that slipped through would still be caught by the status history's unique key).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from typing import Any, Final

import aiohttp
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, func, insert, select

from wahub.bench.cpu import cpu_seconds
from wahub.bench.send import bench_database_url
from wahub.bench.serving import http_process, serve_process
from wahub.embedded import free_port
from wahub.providers.sandbox.shapes import Account, signature_header, status_webhook_body
from wahub.store import inbox as inbox_q
from wahub.store.database import Database
from wahub.store.migrate import upgrade
from wahub.store.schema import channels, inbox, message_events, messages

# Random per run: a secret written in our source is refused by every receiver.
SECRET: Final = secrets.token_urlsafe(24)
ACCOUNT: Final = Account(
    waba_id="102290129340398", display_phone_number="15550009999", phone_number_id="109999"
)
STATUSES: Final = ("delivered", "read")
CHANNEL: Final = "ch_bench_ingest"
PREFIX: Final = "bi_"
SLICE: Final = 5_000
# How long the latency phase offers its load.
LATENCY_SECONDS: Final = 5.0
RAW_INSERT_SAMPLE: Final = 3_000


def _wamid(i: int) -> str:
    return f"wamid.bench.ingest.{i:09d}"


def _phone(i: int) -> str:
    return f"{49_152_000_000_000 + i}"


def _seed_channel(conn: SyncConnection, now: float) -> None:
    conn.execute(
        insert(channels).values(
            id=CHANNEL,
            kind="cloudapi",
            name="bench ingest",
            phone_number_id=ACCOUNT.phone_number_id,
            base_url="http://127.0.0.1:9",
            credentials={},
            created_at=now,
        )
    )


def _seed(conn: SyncConnection, first: int, count: int, now: float) -> None:
    """Messages ``first`` .. ``first + count - 1``, sent and waiting for statuses."""
    end = first + count
    for start in range(first, end, SLICE):
        conn.execute(
            insert(messages),
            [
                {
                    "id": f"{PREFIX}{i}",
                    "channel_id": CHANNEL,
                    "chat_id": f"{_phone(i)}@s.whatsapp.net",
                    "direction": "out",
                    "type": "text",
                    "content": {"type": "text", "text": {"body": "bench"}},
                    "text": "bench",
                    "status": "sent",
                    "provider_message_id": _wamid(i),
                    "ordering_key": f"{CHANNEL}:{i}",
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "sent_at": now,
                }
                for i in range(start, min(end, start + SLICE))
            ],
        )


def _requests(
    first: int, count: int, duplicates: float, now: float, seed: int
) -> list[tuple[bytes, str]]:
    """(body, signature) for every event of messages ``first`` .. ``first + count - 1``,
    a share of them twice, shuffled."""
    events = [
        status_webhook_body(
            ACCOUNT,
            wamid=_wamid(i),
            status=status,
            timestamp=int(now) + 1 + n,
            recipient_id=_phone(i),
            callback_data=None,
        )
        for i in range(first, first + count)
        for n, status in enumerate(STATUSES)
    ]
    rng = random.Random(seed)
    posted = events + rng.sample(events, round(len(events) * duplicates))
    rng.shuffle(posted)
    return [(body, signature_header(SECRET, body)) for body in posted]


async def _drive(url: str, requests: list[tuple[bytes, str]], concurrency: int) -> float:
    """POST every request with ``concurrency`` in flight; requests per second. Any answer
    but 200 stops the bench: an ingest rate that counts refusals means nothing."""
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            for body, signature in queue:
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"POST {url} answered {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - started)


async def _offer(url: str, requests: list[tuple[bytes, str]], rate: float) -> list[float]:
    """POST the requests open-loop at ``rate`` per second, each at its own due time
    whatever the ones before it are doing (as Meta does); the latency of each, in ms,
    from its due time to its answer, so that a server falling behind shows as latency
    instead of quietly slowing the sender."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        start = time.perf_counter()

        async def one(i: int, body: bytes, signature: str) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"POST {url} answered {response.status}")
            latencies.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i, b, s) for i, (b, s) in enumerate(requests)))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _raw_inserts(db: Database, requests: list[tuple[bytes, str]]) -> float:
    """Inbox inserts per second, one delivery per transaction, then removed again."""
    sample = requests[:RAW_INSERT_SAMPLE]
    started = time.perf_counter()
    for n, (body, signature) in enumerate(sample):
        async with db.transaction() as conn:
            await conn.run_sync(
                lambda sync, body=body, signature=signature, n=n: inbox_q.store_delivery_sync(
                    sync,
                    provider="cloudapi",
                    dedupe_key=f"raw:{n}",
                    headers={"x-hub-signature-256": signature},
                    body=body,
                    now=time.time(),
                )
            )
    rate = len(sample) / (time.perf_counter() - started)
    async with db.transaction() as conn:
        await conn.execute(delete(inbox).where(inbox.c.dedupe_key.like("raw:%")))
    return rate


def _progress(conn: SyncConnection) -> tuple[int, int]:
    """(deliveries stored, deliveries not yet processed)."""
    stored = conn.execute(select(func.count()).select_from(inbox)).scalar_one()
    waiting = conn.execute(
        select(func.count()).select_from(inbox).where(inbox.c.status != "processed")
    ).scalar_one()
    return int(stored), int(waiting)


def _applied(conn: SyncConnection) -> tuple[int, int, int]:
    """(status events applied, distinct (message, status) among them, messages read)."""
    webhook = message_events.c.source == "webhook"
    rows = conn.execute(select(func.count()).select_from(message_events).where(webhook))
    distinct_events = conn.execute(
        select(func.count()).select_from(
            select(message_events.c.message_id, message_events.c.status)
            .where(webhook)
            .distinct()
            .subquery()
        )
    )
    read = conn.execute(
        select(func.count()).select_from(messages).where(messages.c.status == "read")
    )
    return int(rows.scalar_one()), int(distinct_events.scalar_one()), int(read.scalar_one())


async def _until_processed(db: Database, events: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with db.read() as conn:
            stored, waiting = await conn.run_sync(_progress)
        if stored >= events and waiting == 0:
            return
        await asyncio.sleep(0.02)


async def run_webhook_ingest_bench(
    *,
    events: int = 20_000,
    duplicates: float = 0.2,
    concurrency: int = 32,
    database: str | None = None,
    within: float = 600.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the bench; the JSON ``wahub bench ingest --json`` prints."""
    count = max(1, events // len(STATUSES))
    now = time.time()
    requests = _requests(0, count, duplicates, now, seed)
    async with bench_database_url(database, "ingest") as url:
        db = Database(url)
        try:
            await upgrade(db)
            await db.write(lambda conn: _seed_channel(conn, now))
            await db.write(lambda conn: _seed(conn, 0, count, now))
            raw_insert_per_s = await _raw_inserts(db, requests)

            port = free_port()
            async with http_process(
                ["-m", "wahub.bench.noop_server", "--port", str(port)],
                f"http://127.0.0.1:{port}",
                what="the do-nothing server",
            ) as noop:
                raw_http_per_s = await _drive(f"{noop.url}/noop", requests, concurrency)
            # Latency is measured at half of what the do-nothing endpoint takes, on
            # messages of their own (a repeat of the events above would be refused as
            # a duplicate at the door, which is cheaper than the real thing).
            offered_per_s = raw_http_per_s / 2
            latency_count = max(50, round(offered_per_s * LATENCY_SECONDS / len(STATUSES)))
            await db.write(lambda conn: _seed(conn, count, latency_count, now))
            latency_requests = _requests(count, latency_count, 0.0, now, seed)

            env = {"WAHUB_CLOUDAPI_APP_SECRET": SECRET, "WAHUB_GROUP_SYNC_CRON": ""}
            async with serve_process(url, free_port(), env=env, what="ingest", workers=True) as hub:
                receiver = f"{hub.url}/v1/webhooks/cloudapi"
                cpu_before = cpu_seconds(hub.pid)
                started = time.perf_counter()
                intake_per_s = await _drive(receiver, requests, concurrency)
                await _until_processed(db, count * len(STATUSES), within)
                seconds = time.perf_counter() - started
                cpu = cpu_seconds(hub.pid) - cpu_before
                latencies = await _offer(receiver, latency_requests, offered_per_s)
                await _until_processed(db, (count + latency_count) * len(STATUSES), within)
            async with db.read() as conn:
                applied, distinct_applied, read = await conn.run_sync(_applied)
                stored, _waiting = await conn.run_sync(_progress)
            backend = "sqlite" if db.is_sqlite else "postgresql"
        finally:
            await db.dispose()
    measured = count * len(STATUSES)
    events_per_s = measured / seconds
    expected = measured + len(latency_requests)
    return {
        "events": measured,
        "requests": len(requests),
        "duplicates_posted": len(requests) - measured,
        "concurrency": concurrency,
        "backend": backend,
        "seconds": round(seconds, 2),
        "events_per_s": round(events_per_s, 1),
        "intake_per_s": round(intake_per_s, 1),
        "raw_http_per_s": round(raw_http_per_s, 1),
        "raw_insert_per_s": round(raw_insert_per_s, 1),
        "ratio": round(events_per_s / raw_http_per_s, 3),
        "hub_cpu_ms_per_event": round(cpu * 1000 / measured, 3),
        "offered_per_s": round(offered_per_s, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "latency_events": len(latency_requests),
        "lost": expected - distinct_applied,
        "duplicates_applied": applied - distinct_applied,
        "duplicates_stored": stored - expected,
        "messages_read": read,
    }
