"""``wahub worker`` as an operator runs it: a process that stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pgcluster import PostgresCluster
from wahub.config import Settings
from wahub.domain.ids import new_id
from wahub.runtime import Hub
from wahub.store.schema import channels


async def channel_owners(db_url: str) -> list[str | None]:
    hub = Hub.build(Settings(database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        async with hub.db.read() as conn:
            return [r.lease_owner for r in await conn.execute(select(channels.c.lease_owner))]
    finally:
        await hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresCluster | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'w.db'}"
        return
    if postgres is None:
        pytest.skip("no PostgreSQL server on this machine")
    name = "w_" + new_id("db").split("_", 1)[1]
    url = postgres.new_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


async def test_sigterm_stops_the_worker_cleanly_and_releases_its_channels(db_url: str) -> None:
    hub = Hub.build(Settings(database_url=db_url))
    await hub.start(workers=False, realtime=False)
    await hub.channels.create(
        name="c", phone_number_id="1", access_token="t", base_url="http://127.0.0.1:9"
    )
    await hub.stop()
    env = {**os.environ, "WAHUB_DATABASE_URL": db_url, "WAHUB_LOG_LEVEL": "WARNING"}
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "wahub", "worker", env=env)
    try:
        deadline = time.monotonic() + 20
        while (await channel_owners(db_url)) == [None]:
            assert time.monotonic() < deadline, "the worker never took its channel's lease"
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.wait(), 20)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert code == 0, f"SIGTERM is a normal stop, exit code {code}"
    assert await channel_owners(db_url) == [None], "the lease was released, not left to expire"
