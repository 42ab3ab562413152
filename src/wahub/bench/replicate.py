"""``wahub bench replicate``: lag of the agent-database sink under a steady offered load.

Changes are offered at ``rate`` per second for ``seconds`` (open loop: every 10 ms a
transaction inserts messages and moves earlier ones to ``sent``; each row write is one
change), while the hub's own shipper copies them to the agent database. Lag per change
is the time from the change's write (its ``created_at``) to the commit in the agent
database that applied it. At the end the mirror is compared row for row with the
source (``equal``).

Baseline in the same run: with the sink paused, a backlog of ``rate * 2`` changes is
written, then the sink is resumed and the drain timed (``catchup_changes_per_s``): the
sink's capacity, to set the offered rate against.

Either database defaults to a throwaway SQLite file; a PostgreSQL URL names a server on
which a throwaway ``wahub_bench_<random>`` database is created and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import make_url

from wahub.bench.send import bench_secret_key, throwaway_database
from wahub.domain.credentials import CredentialCipher
from wahub.domain.ids import new_id
from wahub.features.channels import Channels
from wahub.replication.config import DatabaseSinkConfig
from wahub.replication.service import Replication
from wahub.replication.sinks.database import SEQ_COLUMN, DatabaseSink
from wahub.store.changelog import REPLICATED, Change
from wahub.store.database import Database
from wahub.store.migrate import upgrade
from wahub.store.schema import messages, metadata

TICK_SECONDS = 0.01
CHATS = 50


@contextlib.asynccontextmanager
async def _database(url: str | None, directory: Path, name: str) -> AsyncIterator[str]:
    if url is None:
        yield f"sqlite:///{directory / name}.db"
        return
    if make_url(url).get_backend_name() in ("postgresql", "postgres"):
        async with throwaway_database(url) as throwaway:
            yield throwaway
        return
    yield url


def _percentile(samples: list[float], share: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class _Load:
    """Writes messages and status updates: ``per_tick`` changes per transaction."""

    def __init__(self, db: Database, channel_id: str) -> None:
        self.db = db
        self.channel_id = channel_id
        self.queued: list[str] = []
        self.n = 0
        self.commit_ms: list[float] = []

    async def tick(self, changes: int) -> None:
        inserts = (changes + 1) // 2
        now = time.time()
        rows: list[dict[str, Any]] = []
        for _ in range(inserts):
            self.n += 1
            chat = f"4915{10_000_000 + self.n % CHATS}@s.whatsapp.net"
            rows.append(
                {
                    "id": new_id("msg"),
                    "channel_id": self.channel_id,
                    "chat_id": chat,
                    "direction": "out",
                    "type": "text",
                    "content": {"type": "text", "text": {"body": f"bench {self.n}"}},
                    "text": f"bench {self.n}",
                    "status": "queued",
                    "ordering_key": f"bench:{chat}:{self.n}",
                    "next_attempt_at": now + 3600,  # never claimed: no worker runs
                    "created_at": now,
                    "updated_at": now,
                }
            )
        sent = self.queued[: changes - inserts]
        self.queued = self.queued[len(sent) :]
        started = time.monotonic()
        async with self.db.transaction() as conn:
            await conn.execute(insert(messages), rows)
            if sent:
                await conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(sent))
                    .values(status="sent", sent_at=now, updated_at=now)
                )
        self.commit_ms.append((time.monotonic() - started) * 1000)
        # Only committed messages are moved on, so every tick writes ``changes`` rows.
        self.queued.extend(r["id"] for r in rows)

    async def offer(self, rate: float, seconds: float) -> float:
        """Offer ``rate`` changes per second for ``seconds``; returns the time it took."""
        per_tick = max(1, round(rate * TICK_SECONDS))
        ticks = max(1, round(seconds / TICK_SECONDS))
        # Open loop: a tick does not wait for the previous one's commit (up to a few in
        # flight), as independent clients would not.
        in_flight = asyncio.Semaphore(8)

        async def one() -> None:
            async with in_flight:
                await self.tick(per_tick)

        start = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for i in range(ticks):
                delay = start + i * TICK_SECONDS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(one())
        return time.monotonic() - start


async def _caught_up(repl: Replication, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = await repl.status()
        sink = status["sinks"][0]
        if sink["pending"] == 0 and sink["last_seq"] >= status["head_seq"]:
            return True
        await asyncio.sleep(0.02)
    return False


async def _equal(db: Database, sink: DatabaseSink) -> bool:
    for spec in REPLICATED:
        if spec.table not in metadata.tables:
            continue
        source = metadata.tables[spec.table]
        columns = [c for c in source.columns if c.name not in spec.internal]
        async with db.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(select(*columns))]
        expected = {tuple(r[k] for k in spec.key): r for r in rows}
        mirrored = {
            tuple(r[k] for k in spec.key): {n: v for n, v in r.items() if n != SEQ_COLUMN}
            for r in await sink.read_all(spec.table)
        }
        if expected != mirrored:
            return False
    return True


async def run_replicate_bench(
    *,
    database: str | None,
    agent_database: str | None,
    rate: float = 1000.0,
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Run the benchmark; returns ``changes, changes_per_s, lag_p50_ms, lag_p99_ms,
    equal`` and the catch-up baseline."""
    with tempfile.TemporaryDirectory(prefix="wahub-bench-repl-") as directory:
        async with (
            _database(database, Path(directory), "source") as source_url,
            _database(agent_database, Path(directory), "agent") as agent_url,
        ):
            return await _run(source_url, agent_url, rate, seconds)


async def _run(source_url: str, agent_url: str, rate: float, seconds: float) -> dict[str, Any]:
    db = Database(source_url, sqlite_synchronous="NORMAL")
    sinks = [{"name": "agent", "kind": "database", "url": agent_url, "batch_size": 2000}]
    repl = Replication(db, sinks=json.dumps(sinks), poll_interval=0.02, lease_seconds=3.0)
    lags_ms: list[float] = []
    measuring = True

    def shipped(changes: list[Change], now: float) -> None:
        if measuring:
            lags_ms.extend((now - c.created_at) * 1000 for c in changes)

    repl.on_shipped = shipped
    try:
        await upgrade(db)
        cipher = CredentialCipher([bench_secret_key().get_secret_value()])
        channel = await Channels(db, cipher).create(
            name="bench", phone_number_id="bench", access_token="x", enforce_service_window=False
        )
        load = _Load(db, str(channel["id"]))
        await repl.start()
        head_before = int((await repl.status())["head_seq"])
        offered_s = await load.offer(rate, seconds)
        caught_up = await _caught_up(repl, within=120)
        head_after = int((await repl.status())["head_seq"])
        changes = head_after - head_before
        measuring = False

        # Baseline: the sink's capacity, draining a backlog it did not see coming.
        await repl.set_paused("agent", True)
        await asyncio.sleep(repl.lease_seconds / 3 + 0.5)  # the shipper lets go
        backlog = max(1, int(rate * 2))
        for _ in range(0, backlog, 100):
            await load.tick(100)
        backlog = int((await repl.status())["head_seq"]) - head_after
        started = time.monotonic()
        await repl.set_paused("agent", False)
        drained = await _caught_up(repl, within=120)
        drain_s = time.monotonic() - started
        await repl.stop()

        sink = DatabaseSink(DatabaseSinkConfig.model_validate(sinks[0]))
        await sink.open()
        try:
            equal = caught_up and drained and await _equal(db, sink)
        finally:
            await sink.close()
        return {
            "source": make_url(source_url).get_backend_name(),
            "agent": make_url(agent_url).get_backend_name(),
            "offered_per_s": rate,
            "changes": changes,
            "changes_per_s": round(changes / offered_s, 1),
            "lag_p50_ms": round(statistics.median(lags_ms), 1) if lags_ms else 0.0,
            "lag_p99_ms": round(_percentile(lags_ms, 0.99), 1),
            "lag_max_ms": round(max(lags_ms), 1) if lags_ms else 0.0,
            # The writers' own transaction time: a change's lag starts when its row is
            # written, so it includes the rest of the writing transaction.
            "source_commit_p99_ms": round(_percentile(load.commit_ms, 0.99), 1),
            "catchup_changes": backlog,
            "catchup_changes_per_s": round(backlog / drain_s, 1) if drain_s > 0 else 0.0,
            "equal": equal,
        }
    finally:
        await repl.stop()
        await db.dispose()
