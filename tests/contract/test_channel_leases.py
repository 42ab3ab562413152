"""Channel ownership leases (DESIGN.md invariant 7): one worker paces a channel at a time,
and ``worker_max_channels`` spreads the channels over several workers; a worker logs the
leases it takes, loses and releases."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import select, update

from sealing import TEST_CIPHER
from wahub.config import Settings
from wahub.pipeline.outbox import OutboxWorker
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.registry import ProviderRegistry
from wahub.store import channels as channel_q
from wahub.store.database import Database
from wahub.store.schema import channels

NOW = 1_000_000.0
LEASE = 15.0


async def add_channels(db: Database, count: int) -> list[str]:
    ids = [f"ch_{i}" for i in range(count)]
    async with db.transaction() as conn:
        for channel_id in ids:
            await channel_q.insert_channel(
                conn,
                {
                    "id": channel_id,
                    "kind": "cloudapi",
                    "name": channel_id,
                    "phone_number_id": channel_id,
                    "base_url": "http://127.0.0.1:9",
                    "api_version": "21.0",
                    "credentials": {"access_token": "t"},
                    "rate_per_second": 80.0,
                    "pair_burst": 45,
                    "pair_interval_seconds": 6.0,
                    "status": "connected",
                    "created_at": NOW,
                },
            )
    return ids


async def acquire(db: Database, owner: str, *, now: float = NOW, limit: int | None) -> list[str]:
    async with db.transaction() as conn:
        return await channel_q.acquire_channel_leases(
            conn, owner=owner, now=now, lease_seconds=LEASE, limit=limit
        )


async def test_without_a_limit_the_first_worker_takes_every_free_channel(db: Database) -> None:
    ids = await add_channels(db, 3)
    assert await acquire(db, "a", limit=None) == ids
    assert await acquire(db, "b", limit=None) == [], "leased channels are not shared"
    assert await acquire(db, "a", now=NOW + 1, limit=None) == ids, "renewal keeps them all"


async def test_a_limit_spreads_the_channels_over_the_workers(db: Database) -> None:
    ids = await add_channels(db, 3)
    a = await acquire(db, "a", limit=1)
    b = await acquire(db, "b", limit=1)
    c = await acquire(db, "c", limit=1)
    assert len(a) == len(b) == len(c) == 1
    assert sorted(a + b + c) == ids, "each channel has exactly one owner"
    assert await acquire(db, "d", limit=1) == [], "no free channel is left"
    assert await acquire(db, "a", now=NOW + 1, limit=1) == a, "renewal keeps the same channel"


async def test_a_dead_workers_channel_goes_to_a_worker_with_room(db: Database) -> None:
    await add_channels(db, 2)
    a = await acquire(db, "a", limit=1)
    b = await acquire(db, "b", limit=1)
    later = NOW + LEASE + 1  # "a" stopped renewing; "b" renews, "c" starts
    assert await acquire(db, "b", now=later, limit=1) == b, "b is full and takes nothing more"
    assert await acquire(db, "c", now=later, limit=1) == a, "the expired lease is taken over"


async def test_a_worker_takes_free_channels_up_to_its_limit(db: Database) -> None:
    ids = await add_channels(db, 5)
    assert await acquire(db, "a", limit=2) == ids[:2]
    assert await acquire(db, "b", limit=2) == ids[2:4]
    assert await acquire(db, "c", limit=2) == ids[4:]


def lease_events(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wahub.outbox" and r.getMessage() == message]


async def test_a_worker_logs_the_leases_it_takes_loses_and_releases(
    db: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wahub.outbox")
    kept, stolen = await add_channels(db, 2)
    settings = Settings(_env_file=None, database_url=database_url, channel_lease_seconds=3)
    providers = ProviderRegistry(TEST_CIPHER, timeout_s=1)
    worker = OutboxWorker(db, settings, providers, Wakeup(), worker_id="w-1")
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 30
        while len(lease_events(caplog, "channel lease taken")) < 2:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.05)
        # Another worker takes one channel over (as after a lease ran out unrenewed).
        async with db.transaction() as conn:
            await conn.execute(
                update(channels)
                .where(channels.c.id == stolen)
                .values(lease_owner="w-2", lease_until=time.time() + 60)
            )
        while not lease_events(caplog, "channel lease lost"):
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task
        await providers.close()
    taken = lease_events(caplog, "channel lease taken")
    assert sorted(r.__dict__["channel_id"] for r in taken) == [kept, stolen]
    [lost] = lease_events(caplog, "channel lease lost")
    assert (lost.levelno, lost.__dict__["channel_id"]) == (logging.WARNING, stolen)
    [released] = lease_events(caplog, "channel leases released")
    assert released.__dict__["channels"] == [kept], "only what it still held"
    async with db.read() as conn:
        rows = {r.id: r for r in await conn.execute(select(channels))}
    assert rows[kept].lease_owner is None
    assert rows[kept].lease_until is not None, "the release time is kept for health"
    assert rows[stolen].lease_owner == "w-2"


async def test_workers_never_lease_web_channels_which_only_a_session_process_can_send(
    db: Database,
) -> None:
    [api_channel] = await add_channels(db, 1)
    async with db.transaction() as conn:
        await conn.execute(
            channels.insert().values(
                id="ch_web",
                kind="web",
                name="phone",
                base_url="http://127.0.0.1:9",
                api_version="21.0",
                credentials={},
                status="unverified",
                created_at=NOW,
            )
        )
    assert await acquire(db, "worker", limit=None) == [api_channel]
    assert await acquire(db, "worker-2", limit=5) == []
