"""``wahub worker`` as an operator runs it: a process that says what it does (start-up
summary, channel leases) and stops cleanly on SIGTERM; ``serve``'s start-up summary."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import aiohttp
from sqlalchemy import select

from multiprocess import Processes
from wahub.config import Settings
from wahub.embedded import free_port
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


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def wait_for_log(log: Path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (content := read_log(log)):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{content[-3000:]}"
        await asyncio.sleep(0.1)
    return content


async def test_the_worker_logs_its_summary_the_leases_it_takes_and_releases_and_its_stop(
    tmp_path: Path, procs: Processes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    channel = await hub.channels.create(
        name="leased-one", phone_number_id="1", access_token="t", base_url="http://127.0.0.1:9"
    )
    await hub.stop()
    env = {**os.environ, "WAHUB_DATABASE_URL": db_url, "WAHUB_LOG_LEVEL": "INFO"}
    worker = procs.spawn("worker", ["worker"], env)
    log = tmp_path / "worker.log"
    await wait_for_log(log, "channel lease taken")
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.wait, 30)
    text = read_log(log)
    assert code == 0, text
    [summary] = [line for line in text.splitlines() if "wahub starting" in line]
    for field in ("command=worker", "backend=sqlite", "leased-one (cloudapi", "workers=on"):
        assert field in summary, f"{field!r} missing from {summary!r}"
    [taken] = [line for line in text.splitlines() if "channel lease taken" in line]
    assert channel["id"] in taken, taken
    assert "SIGTERM received" in text, text
    released = text.index("channel leases released")
    assert text.index("SIGTERM received") < released < text.index(" stopped"), text
    assert channel["id"] in text[released:].splitlines()[0]


async def test_serve_logs_its_summary_and_stores_the_bootstrap_admin_key(
    tmp_path: Path, procs: Processes, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    key = secrets.token_hex(32)
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "WAHUB_LOG_LEVEL": "INFO",
        "WAHUB_PERISKOPE_WEBHOOK_SECRET": "",
        "WAHUB_BOOTSTRAP_ADMIN_KEY": key,
    }
    serve = procs.spawn("serve", ["serve", "--no-workers", "--port", str(port)], env)
    text = await wait_for_log(tmp_path / "serve.log", "wahub starting")
    async with http.get(
        f"http://127.0.0.1:{port}/v1/keys", headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status == 200, await response.text()
        keys = (await response.json())["data"]
    serve.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(serve.wait, 30) == 0
    assert [(k["role"], k["user"]) for k in keys] == [("admin", "admin")]
    [summary] = [line for line in text.splitlines() if "wahub starting" in line]
    fields = ("command=serve", "workers=off", "'periskope': 'unset'", "admin_key=stored")
    for field in fields:
        assert field in summary, f"{field!r} missing from {summary!r}"
    assert key not in text, "the key itself is never logged"
