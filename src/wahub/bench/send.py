"""``wahub bench send``: outbound throughput through the whole pipeline.

Baseline: the sandbox driven directly by aiohttp's client (the fastest client measured on
these machines) at the same concurrency, with no wahub in between. Then the same number
of messages go through wahub: stored, claimed, paced, sent through the Cloud API adapter
to the same sandbox, and their status webhooks received, verified, stored and applied.

The sandbox runs in its own process, as a real provider would. Channel pacing is lifted
(rate 100k/s, no pair limit): this measures wahub's own cost, not Meta's limits.

Two set-ups:

- SQLite (no ``database``): everything in this process, like ``wahub serve``: the HTTP
  side and the pipeline share one SQLite file in a temporary directory. ``workers`` must
  be 1: SQLite has one writer, so worker processes would only queue on its lock.
- PostgreSQL (``database="postgresql://..."``): a throwaway database
  ``wahub_bench_<random>`` is created on that server (the one named in the URL is never
  touched) and dropped at the end. This process runs the HTTP side (webhook intake, and
  the enqueueing, like ``wahub serve --no-workers``); ``workers`` ``wahub worker``
  processes run the pipeline. A channel is paced by the one worker that leases it, so
  the bench creates one channel per worker (same sandbox, distinct phone_number_ids),
  each worker leases one (``--max-channels 1``), and the chats are spread round-robin
  over the channels.

Loss and duplicates are counted by the sandbox: every message must have reached it
exactly once (by the ``biz_opaque_callback_data`` our adapter sets to the message id).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
from pydantic import SecretStr
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from wahub.bench.cpu import total_cpu_seconds
from wahub.bench.serving import http_process
from wahub.config import Settings
from wahub.domain.actors import Actor, Role
from wahub.domain.content import SendRequest
from wahub.domain.credentials import generate_key
from wahub.domain.errors import StoreUnavailable, ValidationError
from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, SANDBOX_TOKEN, embedded_stack, free_port
from wahub.runtime import Hub
from wahub.store import channels as channel_q
from wahub.store import messages as message_q
from wahub.store.database import async_url, in_one_hop
from wahub.store.schema import messages
from wahub.webhook_secrets import secret_value

ENQUEUERS = 16
WORKER_START_SECONDS = 60.0


@contextlib.asynccontextmanager
async def sandbox_process(port: int) -> AsyncIterator[str]:
    """Run ``wahub sandbox`` in a child process; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        "sandbox",
        "--port",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/_sandbox/stats") as resp:
                        if resp.status == 200:
                            break
                if proc.returncode is not None:
                    raise RuntimeError("the sandbox process exited at start")
                await asyncio.sleep(0.05)
        yield url
    finally:
        await _stop_process(proc)


async def _stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def phone(chat: int) -> str:
    return f"+4915123{chat:06d}"


def phone_number_id(channel: int) -> str:
    """The sandbox accepts any phone_number_id in the send URL and echoes it in webhooks."""
    return str(int(SANDBOX_PHONE_NUMBER_ID) + channel)


async def _send_direct(sandbox_url: str, messages: int, concurrency: int, tag: str) -> None:
    """``messages`` sends to the sandbox from a bare aiohttp client, ``concurrency`` at a
    time, each client on a chat of its own (as wahub keeps one send in flight per chat)."""
    url = f"{sandbox_url}/v21.0/{SANDBOX_PHONE_NUMBER_ID}/messages"
    counter = iter(range(messages))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
    ) as http:

        async def client(chat: int) -> None:
            for i in counter:
                body = {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": phone(chat)[1:],
                    "type": "text",
                    "text": {"body": f"bench message {i}", "preview_url": False},
                    "biz_opaque_callback_data": f"{tag}_{i}",
                }
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{tag} baseline send refused: {resp.status}")

        await asyncio.gather(*(client(chat) for chat in range(concurrency)))


async def raw_baseline(sandbox_url: str, messages: int, concurrency: int) -> float:
    """Sends per second the sandbox takes from a bare aiohttp client."""
    started = time.perf_counter()
    await _send_direct(sandbox_url, messages, concurrency, "raw")
    return messages / (time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class NullRun:
    msgs_per_s: float
    cpu_ms_per_message: float


async def null_baseline(
    http: aiohttp.ClientSession, sandbox_url: str, messages: int, concurrency: int
) -> NullRun:
    """The null hub: exactly the HTTP a message through wahub costs, none of its work.

    One send out per message (a bare aiohttp client, at wahub's concurrency) and the
    sandbox's three signed status webhooks in, taken by a do-nothing receiver on
    wahub's server stack in a process of its own that checks the HMAC and counts. Timed
    until every message's ``read`` has arrived, as ``msgs_per_s_final`` is for wahub.
    CPU is this process's (the sender) plus the receiver's.
    """
    secret = secrets.token_urlsafe(24)
    port = free_port()
    async with http_process(
        ["-m", "wahub.bench.noop_server", "--port", str(port), "--app-secret", secret],
        f"http://127.0.0.1:{port}",
        what="the null hub's receiver",
    ) as receiver:
        await _sandbox(http, sandbox_url, "/_sandbox/reset", {})
        await _sandbox(
            http,
            sandbox_url,
            "/_sandbox/config",
            {
                "webhook_url": f"{receiver.url}/v1/webhooks/cloudapi",
                "app_secret": secret,
                "webhook_delay_ms": 0,
            },
        )
        pids = (os.getpid(), receiver.pid)
        cpu_before = total_cpu_seconds(pids)
        started = time.perf_counter()
        await _send_direct(sandbox_url, messages, concurrency, "null")
        deadline = started + max(120.0, messages / 20)
        while True:
            progress = await _sandbox(http, receiver.url, "/_null/progress")
            if progress["read"] >= messages:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the null hub saw {progress['read']} of {messages} reads in time"
                )
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
        cpu = total_cpu_seconds(pids) - cpu_before
    return NullRun(messages / seconds, cpu * 1000 / messages)


async def _sandbox(http: aiohttp.ClientSession, url: str, path: str, body: Any = None) -> Any:
    method = http.post if body is not None else http.get
    async with method(f"{url}{path}", json=body) as resp:
        return await resp.json()


# -- a throwaway PostgreSQL database ------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def postgres_target(url: str) -> str:
    """Check ``url`` names a PostgreSQL server; returns ``host:port`` for messages."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValidationError(f"--database: invalid URL: {exc}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValidationError(
            "--database: the bench takes a postgresql://user@host/db URL (it creates and "
            "drops a database of its own there); without --database it runs on SQLite"
        )
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


@contextlib.asynccontextmanager
async def throwaway_database(url: str) -> AsyncIterator[str]:
    """Create ``wahub_bench_<random>`` on the server ``url`` points at, yield its URL, drop it.

    The database named in ``url`` is only connected to (to run CREATE/DROP DATABASE),
    never written. Raises StoreUnavailable, in one line, when the server cannot be
    reached or refuses (no CREATEDB right).
    """
    target = postgres_target(url)
    name = f"wahub_bench_{secrets.token_hex(4)}"
    engine = create_async_engine(
        async_url(url),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": 10},
    )
    try:
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(
                f"cannot create a throwaway database on PostgreSQL {target}: {_first_line(exc)}"
            ) from None
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with engine.connect() as conn:
                try:
                    await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except DBAPIError:  # PostgreSQL < 13 has no FORCE
                    await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await engine.dispose()


# Benchmarks run on throwaway databases: without WAHUB_SECRET_KEY they seal with a key of
# their own (PostgreSQL refuses to start without one), shared with the workers they start.
_THROWAWAY_KEY = generate_key()


def bench_secret_key() -> SecretStr:
    """The key a benchmark's hub and worker processes seal channel credentials with."""
    return SecretStr(os.environ.get("WAHUB_SECRET_KEY") or _THROWAWAY_KEY)


@contextlib.asynccontextmanager
async def bench_database_url(database: str | None, name: str) -> AsyncIterator[str]:
    """Where a benchmark keeps its data: a throwaway database on the PostgreSQL server
    ``database`` points at (``throwaway_database``), or, without one, a SQLite file
    ``<name>.db`` in a temporary directory. Either is gone afterwards."""
    if database is None:
        with tempfile.TemporaryDirectory(prefix=f"wahub-bench-{name}-") as tmp:
            yield f"sqlite:///{Path(tmp) / f'{name}.db'}"
    else:
        async with throwaway_database(database) as url:
            yield url


# -- worker processes ---------------------------------------------------------------------


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    log: IO[bytes]

    def tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"


@contextlib.asynccontextmanager
async def worker_processes(
    database_url: str, count: int, concurrency: int
) -> AsyncIterator[list[_Worker]]:
    """``count`` ``wahub worker --max-channels 1`` processes on ``database_url``."""
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": database_url,
        "WAHUB_WORKER_CONCURRENCY": str(concurrency),
        "WAHUB_LOG_LEVEL": "WARNING",
        "WAHUB_SECRET_KEY": bench_secret_key().get_secret_value(),
    }
    workers: list[_Worker] = []
    with contextlib.ExitStack() as logs:
        try:
            for _ in range(count):
                log = logs.enter_context(tempfile.TemporaryFile())
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "wahub",
                    "worker",
                    "--max-channels",
                    "1",
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
                workers.append(_Worker(proc, log))
            yield workers
        finally:
            await asyncio.gather(*(_stop_process(w.proc) for w in workers))


async def _wait_for_leases(hub: Hub, channel_ids: list[str], workers: list[_Worker]) -> None:
    """Until every channel is leased, each by a different worker."""
    deadline = time.monotonic() + WORKER_START_SECONDS
    while True:
        for w in workers:
            if w.proc.returncode is not None:
                raise RuntimeError(
                    f"a wahub worker exited with code {w.proc.returncode} at start: {w.tail()}"
                )
        async with hub.db.read() as conn:
            rows = await channel_q.list_channels(conn)
        owners = {r["id"]: r["lease_owner"] for r in rows if r["id"] in channel_ids}
        if all(owners.values()) and len(set(owners.values())) == len(channel_ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the wahub workers did not lease the {len(channel_ids)} channels within "
                f"{WORKER_START_SECONDS:g} s"
            )
        await asyncio.sleep(0.05)


# -- the run ------------------------------------------------------------------------------


@dataclass
class Timings:
    sent_seconds: float | None
    final_seconds: float | None
    read_seconds: float | None
    enqueue_seconds: float
    statuses: dict[str, str]


async def configure_sandbox(
    http: aiohttp.ClientSession, sandbox_url: str, settings: Settings
) -> None:
    """Reset the sandbox and point its status webhooks at the hub ``settings`` describe."""
    await _sandbox(http, sandbox_url, "/_sandbox/reset", {})
    await _sandbox(
        http,
        sandbox_url,
        "/_sandbox/config",
        {
            "webhook_url": f"http://{settings.host}:{settings.port}/v1/webhooks/cloudapi",
            "app_secret": secret_value(settings.cloudapi_app_secret),
            "webhook_delay_ms": 0,
        },
    )


async def create_channels(hub: Hub, sandbox_url: str, count: int) -> list[str]:
    """``count`` Cloud API channels on the sandbox, pacing lifted; returns their ids."""
    ids = []
    for index in range(count):
        channel = await hub.channels.create(
            name=f"bench-{index}",
            phone_number_id=phone_number_id(index),
            access_token=SANDBOX_TOKEN,
            base_url=sandbox_url,
            rate_per_second=100_000,
            pair_interval_seconds=0,
        )
        ids.append(str(channel["id"]))
    return ids


async def drive(
    hub: Hub,
    channel_ids: list[str],
    *,
    messages: int,
    chats: int,
    progress: bool,
    deadline_s: float | None = None,
) -> Timings:
    """Enqueue ``messages`` (16 concurrent callers) and wait until every status the sandbox
    sends (sent, delivered, read) is applied, or ``deadline_s`` passed (default: the
    larger of 120 s and 50 ms per message); timings not reached by then are None."""
    created = await hub.access.create_key(user_name="bench", role="admin")
    actor = Actor(created.user_id, "bench", Role.ADMIN, created.key_id)
    requests = []
    for i in range(messages):
        chat = i % chats
        body: dict[str, Any] = {"to": phone(chat), "text": {"body": f"bench message {i}"}}
        # Named even when there is one: the hub may hold channels of another bench.
        body["channel_id"] = channel_ids[chat % len(channel_ids)]
        requests.append(SendRequest.model_validate(body))
    started = time.perf_counter()
    enqueue_seconds = 0.0
    pending = iter(requests)
    accepted = 0

    async def client() -> None:
        nonlocal accepted
        for request in pending:
            await hub.messaging.send(actor, request)
            accepted += 1

    async def enqueue() -> None:
        # Like API traffic: several clients at once.
        nonlocal enqueue_seconds
        await asyncio.gather(*(client() for _ in range(ENQUEUERS)))
        enqueue_seconds = time.perf_counter() - started

    enqueuer = asyncio.create_task(enqueue())
    sent_seconds = final_seconds = read_seconds = None
    deadline = started + (deadline_s if deadline_s is not None else max(120.0, messages / 20))
    try:
        while time.perf_counter() < deadline:
            if enqueuer.done() and enqueuer.exception() is not None:
                break
            stored = accepted  # read before the query: all of these are in the database
            async with hub.db.read() as conn:
                waiting = await _unfinished(conn)
            not_sent = sum(waiting.get(s, 0) for s in ("queued", "sending", "uncertain"))
            done = stored - not_sent
            final = done - waiting.get("sent", 0)
            applied = final - waiting.get("delivered", 0)
            now = time.perf_counter()
            if sent_seconds is None and done >= messages:
                sent_seconds = now - started
            if final_seconds is None and final >= messages:
                final_seconds = now - started
            if applied >= messages:
                read_seconds = now - started
                break
            if progress:
                print(f"\r{done}/{messages} sent, {final} final", end="", file=sys.stderr)
            await asyncio.sleep(0.02)
        if progress:
            print(file=sys.stderr)
        await enqueuer
    finally:
        if not enqueuer.done():
            enqueuer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await enqueuer
    async with hub.db.read() as conn:
        statuses = await message_q.statuses_by_id(conn)
    return Timings(sent_seconds, final_seconds, read_seconds, enqueue_seconds, statuses)


@in_one_hop
def _unfinished(conn: SyncConnection) -> dict[str, int]:
    """Messages not yet read, by status. Polled every 20 ms while the pipeline runs, so
    it must stay cheap: an index range over the unfinished rows (the status index), not
    a scan of every message as a count of all statuses would be."""
    stmt = (
        select(messages.c.status, func.count().label("n"))
        .where(messages.c.status.in_(("queued", "sending", "uncertain", "sent", "delivered")))
        .group_by(messages.c.status)
    )
    return {str(row.status): int(row.n) for row in conn.execute(stmt)}


async def run_send_bench(
    *,
    messages: int = 5000,
    chats: int = 50,
    database: str | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    if workers < 1:
        raise ValidationError("--workers must be at least 1")
    if database is None and workers != 1:
        raise ValidationError(
            "--workers needs --database postgresql://...: on SQLite the pipeline runs in "
            "the bench process, and worker processes would only queue on SQLite's one writer"
        )
    concurrency = max(chats, 64)
    sandbox_port = free_port()
    async with (
        sandbox_process(sandbox_port) as sandbox_url,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        database_url = await stack.enter_async_context(bench_database_url(database, "send"))
        raw_rate = await raw_baseline(sandbox_url, messages, chats)
        null = await null_baseline(http, sandbox_url, messages, chats)
        settings = Settings(
            database_url=database_url,
            port=free_port(),
            worker_concurrency=concurrency,
            # The sandbox is told to sign with it (configure_sandbox).
            cloudapi_app_secret=SecretStr(secrets.token_urlsafe(24)),
            secret_key=bench_secret_key(),
        )
        await configure_sandbox(http, sandbox_url, settings)
        hub = (
            await stack.enter_async_context(
                embedded_stack(settings, with_sandbox=False, workers=database is None)
            )
        ).hub
        channel_ids = await create_channels(hub, sandbox_url, workers)
        hub_pids = [os.getpid()]
        if database is not None:
            procs = await stack.enter_async_context(
                worker_processes(database_url, workers, concurrency)
            )
            await _wait_for_leases(hub, channel_ids, procs)
            hub_pids += [w.proc.pid for w in procs]
        cpu_before = total_cpu_seconds(hub_pids)
        timings = await drive(hub, channel_ids, messages=messages, chats=chats, progress=progress)
        hub_cpu_ms = (total_cpu_seconds(hub_pids) - cpu_before) * 1000 / messages
        sends = (await _sandbox(http, sandbox_url, "/_sandbox/sends"))["sends"]
    received = Counter(s["biz_opaque_callback_data"] for s in sends)
    seconds = timings.sent_seconds if timings.sent_seconds is not None else float("nan")
    rate = messages / seconds if timings.sent_seconds else 0.0
    final_rate = messages / timings.read_seconds if timings.read_seconds else 0.0
    return {
        "messages": messages,
        "chats": chats,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(rate, 1),
        "raw_msgs_per_s": round(raw_rate, 1),
        "ratio": round(rate / raw_rate, 3) if raw_rate else 0.0,
        "msgs_per_s_final": round(final_rate, 1),
        "null_msgs_per_s": round(null.msgs_per_s, 1),
        "ratio_null": round(final_rate / null.msgs_per_s, 3),
        "hub_cpu_ms_per_message": round(hub_cpu_ms, 3),
        "null_cpu_ms_per_message": round(null.cpu_ms_per_message, 3),
        "cpu_ratio": round(hub_cpu_ms / null.cpu_ms_per_message, 2)
        if null.cpu_ms_per_message
        else None,
        "final_seconds": round(timings.final_seconds, 3) if timings.final_seconds else None,
        "read_seconds": round(timings.read_seconds, 3) if timings.read_seconds else None,
        "enqueue_seconds": round(timings.enqueue_seconds, 3),
        "lost": sum(1 for i in timings.statuses if not received[i]),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "backend": "sqlite" if database is None else "postgresql",
        "workers": workers,
        "http_client": "aiohttp",
    }
