"""The crash counter at scale-out on PostgreSQL: a standalone sandbox (it outlives
everything), one ``wahub serve --no-workers`` taking API calls and webhooks, and three
``wahub worker`` processes sharing six channels. 3,000 messages over 100 chats go in
through the HTTP API (tests/crash_counter.py: each chat in order, idempotency keys)
while a worker holding claimed messages is SIGKILLed five times (a replacement starts
each time) and PostgreSQL itself is stopped and started once. The sandbox's own record
proves that every accepted message was received exactly once and every chat in order,
and the hub's that every message ended final. ``WAHUB_CRASH_PG_MESSAGES=10000`` runs it
at the size of the issue's report.

The uncertain policy is the default (``fail``): the sandbox echoes our id like the Cloud
API, so a message claimed but not yet sent must go back to the queue, and one whose
request left is settled by its webhook or, with no status within the grace period,
resent (DESIGN.md invariant 4). A message ``failed`` that the provider never received
counts as lost.

Why ``serve --no-workers``: every send then happens in a process the test may kill, and
the API process is the one that has to ride out the database restart while clients keep
calling it. Why six channels: a channel is paced by one worker at a time (its lease), so
the channels are what lets three workers send at once; ``WAHUB_WORKER_MAX_CHANNELS=2``
spreads them two per worker instead of the first worker taking them all, and a killed
worker's two go to its replacement once their lease expires. Why kill a worker with
claimed messages (chosen at random among those): a kill of an idle one proves nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from sqlalchemy import func, select

from crash_counter import ChatPoster, claimed_by, judge
from multiprocess import FINAL_STATUSES, Processes, message_statuses, wait_http
from pgcluster import PostgresCluster
from wahub.config import Settings
from wahub.domain.errors import StoreUnavailable
from wahub.embedded import free_port
from wahub.runtime import Hub
from wahub.store.database import Database
from wahub.store.schema import channels, messages

pytestmark = pytest.mark.slow

T = TypeVar("T")

MESSAGES = int(os.environ.get("WAHUB_CRASH_PG_MESSAGES", "3000"))
CHATS = 100
CHANNELS = 6
WORKERS = 3
KILLS = 5
# Posting is spread over at least 40 s, however fast the machine: it must still be going
# on when PostgreSQL goes away (the API has to answer 503, and the client's retries with
# the same Idempotency-Key must not become duplicates) and while the later kills wait
# for a worker with sends in flight.
POSTS_PER_SECOND = MESSAGES / 40
OUTAGE_SECONDS = 3.0
SETTLE_DEADLINE_SECONDS = 120.0


def worker_pid(lease_owner: str) -> int:
    """The pid in a worker identity (``host:pid:nonce``)."""
    return int(lease_owner.rsplit(":", 2)[1])


async def retry_while_unavailable(call: Callable[[], Awaitable[T]], *, within: float = 30.0) -> T:
    """The test's own reads ride out the outage the way the hub's loops do."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def claimed_work(db: Database) -> Counter[int]:
    """Messages claimed under a live lease (``queued`` waiting for pacing, or
    ``sending``), by the pid of the worker holding the lease."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(messages.c.lease_owner, func.count())
            .where(
                messages.c.status.in_(("queued", "sending")),
                messages.c.lease_until > time.time(),
            )
            .group_by(messages.c.lease_owner)
        )
    return Counter({worker_pid(owner): int(n) for owner, n in rows})


async def channel_owners(db: Database) -> Counter[int]:
    """Channels under a live lease, by the pid of the worker holding it."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(channels.c.lease_owner).where(
                channels.c.lease_owner.is_not(None), channels.c.lease_until > time.time()
            )
        )
    return Counter(worker_pid(owner) for (owner,) in rows)


async def test_workers_killed_and_postgres_restarted_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, procs: Processes, restartable_postgres: PostgresCluster
) -> None:
    pg = restartable_postgres
    db_url = pg.new_database("crash")
    serve_port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": db_url,
        # Read by `wahub sandbox` (it signs with it) and `wahub serve` (it checks it).
        "WAHUB_CLOUDAPI_APP_SECRET": secrets.token_urlsafe(24),
        "WAHUB_LEASE_SECONDS": "3",
        "WAHUB_CHANNEL_LEASE_SECONDS": "2",
        "WAHUB_WORKER_MAX_CHANNELS": str(CHANNELS // WORKERS),
        # Longer than a status webhook takes to be applied after the outage or a kill
        # (the sandbox's retry backoff, at most 5 s, then the inbox's backlog): a send
        # that went out just before is settled by its webhook, not resent (which would
        # be a duplicate, and counted). Only sends cut short in flight wait this long.
        "WAHUB_UNCERTAIN_GRACE_SECONDS": "30",
        "WAHUB_BACKOFF_BASE_SECONDS": "0.1",
        "WAHUB_LOG_LEVEL": "WARNING",
    }
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    hub_url = f"http://127.0.0.1:{serve_port}"
    procs.spawn(
        "sandbox",
        [
            "sandbox",
            "--port",
            str(sandbox_port),
            "--latency-ms",
            "3",
            "--webhook-url",
            f"{hub_url}/v1/webhooks/cloudapi",
        ],
        env,
    )
    # Channels and a key are set up in this process, then the database is handed over.
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    channel_ids = [
        (
            await hub.channels.create(
                name=f"sandbox-{n}",
                phone_number_id=f"10000000000010{n}",
                access_token="t",
                base_url=sandbox_url,
                # Together slower than posting, so a backlog builds up and claimed
                # messages wait for pacing tokens: a kill then catches some before they
                # reach the provider (they must stay queued) and some after (the webhook
                # settles them).
                rate_per_second=10,
            )
        )["id"]
        for n in range(CHANNELS)
    ]
    key = (await hub.access.create_key(user_name="crash", role="admin")).key
    await hub.stop()

    serve = procs.spawn("serve", ["serve", "--no-workers", "--port", str(serve_port)], env)
    await wait_http(f"{sandbox_url}/_sandbox/stats")
    await wait_http(f"{hub_url}/healthz")
    spawned = 0

    def spawn_worker() -> subprocess.Popen[bytes]:
        nonlocal spawned
        spawned += 1
        return procs.spawn(f"worker-{spawned}", ["worker"], env)

    workers = {p.pid: p for p in (spawn_worker() for _ in range(WORKERS))}  # the live ones
    every_worker = dict(workers)

    rng = random.Random(20)
    check = Database(db_url)
    posting: asyncio.Task[None] | None = None
    kills: list[int] = []
    claimed_at_kill: list[Counter[str]] = []
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"}, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            # One status webhook per message, "delivered": it makes a message final and
            # settles an uncertain one. "sent" and "read" would triple the webhook
            # traffic (the serve process's main load) and prove nothing more here.
            async with http.post(
                f"{sandbox_url}/_sandbox/config", json={"statuses": ["delivered"]}
            ) as resp:
                assert resp.status == 200, await resp.text()
            poster = ChatPoster(
                http,
                hub_url,
                total=MESSAGES,
                chats=CHATS,
                per_second=POSTS_PER_SECOND,
                key_prefix="crash-pg",
                channel_ids=channel_ids,
            )
            started = time.monotonic()
            posting = asyncio.create_task(poster.run())

            async def every_worker_holds_channels(when: str) -> None:
                deadline = time.monotonic() + 60
                while True:
                    owners = await retry_while_unavailable(lambda: channel_owners(check))
                    if sorted(owners) == sorted(workers) and sum(owners.values()) == CHANNELS:
                        return
                    assert time.monotonic() < deadline, f"channel leases {when}: {owners}"
                    await asyncio.sleep(0.1)

            async def kill_a_busy_worker() -> None:
                # A random worker among those holding claimed messages, at a random moment.
                # (Generous: a busy machine can take long to start a worker.)
                deadline = time.monotonic() + 90
                while True:
                    busy = await retry_while_unavailable(lambda: claimed_work(check))
                    candidates = sorted(pid for pid in busy if pid in workers)
                    if candidates:
                        break
                    assert time.monotonic() < deadline, (
                        f"no live worker held claimed messages: {busy}, workers {sorted(workers)}"
                    )
                    await asyncio.sleep(0.05)
                victim = workers.pop(rng.choice(candidates))
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
                kills.append(victim.pid)
                # Its claims stay as they were until their lease expires (3 s).
                claimed_at_kill.append(
                    await retry_while_unavailable(lambda: claimed_by(check, victim.pid))
                )
                replacement = spawn_worker()
                workers[replacement.pid] = every_worker[replacement.pid] = replacement
                await asyncio.sleep(rng.uniform(1.0, 3.0))

            for _ in range(2):
                await kill_a_busy_worker()

            # PostgreSQL goes away under everything: posts, sends, webhooks, leases. The
            # replacement worker must be up first (a worker that cannot reach the
            # database at start-up exits, as it should: that is not under test).
            await every_worker_holds_channels("before the outage")
            assert not posting.done(), "posting ended before the outage: raise MESSAGES"
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(pg.start)
            # Nobody is restarted: every process reconnects by itself, and the workers
            # that lived through the outage hold their channels again.
            await every_worker_holds_channels("after the outage")

            for _ in range(KILLS - 2):
                await kill_a_busy_worker()
            await posting
            posted_after = time.monotonic() - started

            deadline = time.monotonic() + SETTLE_DEADLINE_SECONDS
            while True:
                statuses = await retry_while_unavailable(lambda: message_statuses(check))
                final = sum(n for s, n in statuses.items() if s in FINAL_STATUSES)
                if final == MESSAGES or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            final_after = time.monotonic() - started
            async with http.get(f"{sandbox_url}/_sandbox/sends") as resp:
                sends: list[dict[str, Any]] = (await resp.json())["sends"]
    finally:
        if posting is not None:
            # A failure mid-run leaves the posts going: stop them with the test.
            posting.cancel()
            await asyncio.gather(posting, return_exceptions=True)
        await check.dispose()

    judge(
        poster,
        sends,
        claimed_at_kill,
        kills=KILLS,
        messages_posted=MESSAGES,
        story=f"all posted after {posted_after:.0f} s, final after {final_after:.0f} s; "
        f"statuses {dict(statuses)}; "
        f"sends per channel {Counter(s['phone_number_id'] for s in sends)}",
    )
    assert len(kills) == KILLS
    assert poster.retried["503"] > 0, "no POST met the outage: the test proved nothing"
    assert serve.poll() is None, "the API process died"
    exited = {pid: p.returncode for pid, p in every_worker.items() if p.poll() is not None}
    assert set(exited) == set(kills), f"workers exited that were not killed: {exited}"
    assert sum(statuses.values()) == MESSAGES, f"stored {sum(statuses.values())} messages"
    assert final == MESSAGES, f"not all final after the run: {dict(statuses)}"
    tracebacks = procs.count_in_logs("Traceback")
    assert not any(tracebacks.values()), f"unexpected exceptions logged: {tracebacks}"
