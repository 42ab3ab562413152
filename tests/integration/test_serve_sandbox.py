"""``wahub serve --sandbox`` as a user runs it: a real process on the default-style SQLite
file, run again on the same file, and run where another channel already exists
(issue 14, points 4 and 5).

Each run must add or refresh the sandbox channel (the previous run's sandbox port is
gone), print where a send without ``channel_id`` goes, and deliver such a send to
``read`` on exactly that channel.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from multiprocess import Processes, wait_http
from wahub.config import Settings
from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, free_port
from wahub.runtime import Hub

DEFAULT_LINE = re.compile(
    r"sends without channel_id go to channel (\S+) \((ch_\w+), (\w+) at (\S+)\)"
)


async def prepare(db_url: str, *, other_channel: bool = False) -> str:
    """An admin key on ``db_url`` (and a Cloud API channel talking to Meta, when asked)."""
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        if other_channel:
            await hub.channels.create(
                name="main", phone_number_id="1234567890", access_token="EAAG-not-used"
            )
        return (await hub.access.create_key(user_name="newcomer", role="admin")).key
    finally:
        await hub.stop()


def clean_env(db_url: str) -> dict[str, str]:
    """No WAHUB_* from the caller: the run must need none (the sandbox makes its secrets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env["WAHUB_DATABASE_URL"] = db_url
    return env


async def startup_default(procs: Processes, name: str) -> re.Match[str]:
    """The start banner's line naming the default channel, once this run printed it."""
    log = procs.log_dir / f"{name}.log"
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text(errors="replace")
        # The log holds every run of this name: this run's output follows its header.
        found = DEFAULT_LINE.search(text, text.rfind("--- wahub "))
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no default-channel line in {name}'s output:\n{text}")
        await asyncio.sleep(0.1)


async def send_and_follow(hub_url: str, key: str) -> dict[str, Any]:
    """POST a text without channel_id, then poll the message until its status is final."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"to": "+49 151 2345 6789", "text": {"body": "hello from the quickstart"}}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{hub_url}/v1/messages", json=body) as resp:
            created = await resp.json()
            assert resp.status == 202, created
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{hub_url}/v1/messages/{created['id']}") as resp:
                message: dict[str, Any] = await resp.json()
            if message["status"] in ("read", "failed") or time.monotonic() > deadline:
                return message
            await asyncio.sleep(0.1)


async def run_serve_sandbox(
    procs: Processes, db_url: str, key: str
) -> tuple[re.Match[str], dict[str, Any]]:
    """One ``wahub serve --sandbox`` run: its default-channel line and a send's final
    state; stopped with SIGTERM, as Ctrl-C would."""
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    serve = procs.spawn("serve", ["serve", "--sandbox", "--port", str(port)], clean_env(db_url))
    try:
        await wait_http(f"{hub_url}/healthz", timeout=60)
        default = await startup_default(procs, "serve")
        message = await send_and_follow(hub_url, key)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    assert serve.returncode == 0, procs.log_tails()
    return default, message


async def sandbox_channels(db_url: str) -> list[dict[str, Any]]:
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        channels = await hub.channels.list_all()
    finally:
        await hub.stop()
    return [c for c in channels if c["phone_number_id"] == SANDBOX_PHONE_NUMBER_ID]


async def test_two_runs_on_one_database_both_deliver(tmp_path: Path, procs: Processes) -> None:
    db_url = f"sqlite:///{tmp_path / 'wahub.db'}"
    key = await prepare(db_url)

    first_default, first = await run_serve_sandbox(procs, db_url, key)
    second_default, second = await run_serve_sandbox(procs, db_url, key)

    assert first["status"] == "read", first
    assert second["status"] == "read", second
    # One sandbox channel, followed to the second run's sandbox (a new port).
    [channel] = await sandbox_channels(db_url)
    assert first["channel_id"] == second["channel_id"] == channel["id"]
    assert first_default.group(4) != second_default.group(4)
    assert channel["base_url"] == second_default.group(4)


async def test_a_run_beside_another_channel_adds_the_sandbox_and_sends_there(
    tmp_path: Path, procs: Processes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'wahub.db'}"
    key = await prepare(db_url, other_channel=True)

    default, message = await run_serve_sandbox(procs, db_url, key)

    [channel] = await sandbox_channels(db_url)
    assert default.group(2) == channel["id"], default.group(0)
    assert message["channel_id"] == channel["id"]
    assert message["status"] == "read", message
