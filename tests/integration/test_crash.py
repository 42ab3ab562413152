"""The crash counter on SQLite: a standalone sandbox (it outlives everything) and one
``wahub serve`` with its embedded workers, the way `wahub serve` runs by default. 3,000
messages over 100 chats go in through the HTTP API while the serve process is SIGKILLed
five times at random moments (seeded) and started again each time. The sandbox's own
record proves that every accepted message was received exactly once and every chat in
the order it was posted, and the hub's that every message ended final.

The channel is paced below the posting rate, so the worker always holds claimed
messages waiting for pacing tokens: the kills catch messages claimed but not yet handed
to the provider, which must go back to the queue rather than fail (DESIGN.md invariant
4), and messages whose request had left, which the provider's webhook settles. The
uncertain policy is the default (``fail``): the sandbox echoes our id, so a message no
status settled within the grace period did not send and is resent whatever the policy.
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
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crash_counter import ChatPoster, claimed_by, judge
from multiprocess import FINAL_STATUSES, Processes, message_statuses, wait_http
from wahub.config import Settings
from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, free_port
from wahub.runtime import Hub
from wahub.store.database import Database

pytestmark = pytest.mark.slow

MESSAGES = 3000
CHATS = 100
KILLS = 5
# Posting spans the kills; the channel sends slower than that (and slower than this
# machine could), so a backlog builds up and claimed messages wait for pacing tokens
# when a kill comes: the worker claims every chat's head at once (one per chat, as
# WORKER_CONCURRENCY allows) and the channel's bucket spaces them out.
POSTS_PER_SECOND = 100
RATE_PER_SECOND = 30
SETTLE_DEADLINE_SECONDS = 90.0


async def backlog_of(db: Database, count: int, within: float = 30.0) -> None:
    """Return once ``count`` messages are queued (or ``within`` seconds passed: a kill
    without a backlog still counts, it proves less)."""
    deadline = time.monotonic() + within
    while (await message_statuses(db))["queued"] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_serve_killed_five_times_loses_nothing_sends_nothing_twice_keeps_order(
    tmp_path: Path, procs: Processes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    serve_port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": db_url,
        # Read by `wahub sandbox` (it signs with it) and `wahub serve` (it checks it).
        "WAHUB_CLOUDAPI_APP_SECRET": secrets.token_urlsafe(24),
        "WAHUB_LEASE_SECONDS": "3",
        "WAHUB_CHANNEL_LEASE_SECONDS": "2",
        "WAHUB_WORKER_CONCURRENCY": str(2 * CHATS),
        # Longer than a status webhook takes to be applied after a restart (the
        # sandbox's retry backoff, at most 5 s, then the inbox's backlog, which took
        # over 30 s on a busy machine): a send that went out before a kill is settled by
        # its webhook, not resent. Only sends cut short in flight wait this long.
        "WAHUB_UNCERTAIN_GRACE_SECONDS": "60",
        "WAHUB_BACKOFF_BASE_SECONDS": "0.1",
        "WAHUB_LOG_LEVEL": "WARNING",
    }
    env.pop("WAHUB_UNCERTAIN_POLICY", None)
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    hub_url = f"http://127.0.0.1:{serve_port}"
    procs.spawn(
        "sandbox",
        [
            "sandbox",
            "--port",
            str(sandbox_port),
            "--latency-ms",
            "2",
            "--webhook-url",
            f"{hub_url}/v1/webhooks/cloudapi",
        ],
        env,
    )
    # The channel and a key are set up in this process, then the database is handed over.
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    await hub.channels.create(
        name="sandbox",
        phone_number_id=SANDBOX_PHONE_NUMBER_ID,
        access_token="t",
        base_url=sandbox_url,
        rate_per_second=RATE_PER_SECOND,
    )
    key = (await hub.access.create_key(user_name="crash", role="admin")).key
    await hub.stop()

    def start_serve() -> subprocess.Popen[bytes]:
        return procs.spawn("serve", ["serve", "--port", str(serve_port)], env)

    serve = start_serve()
    await wait_http(f"{sandbox_url}/_sandbox/stats")
    await wait_http(f"{hub_url}/healthz")

    rng = random.Random(15)
    check = Database(db_url)
    posting: asyncio.Task[None] | None = None
    claimed_at_kill: list[Counter[str]] = []
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"}, timeout=aiohttp.ClientTimeout(total=20)
        ) as http:
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
                key_prefix="crash-sqlite",
            )
            started = time.monotonic()
            posting = asyncio.create_task(poster.run())
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                # Then as soon as every chat has messages waiting (pacing is what holds
                # them: the claimed ones wait for tokens), a little later still.
                await backlog_of(check, CHATS)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                serve.send_signal(signal.SIGKILL)
                serve.wait(10)
                claimed_at_kill.append(await claimed_by(check, serve.pid))
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                serve = start_serve()
                await wait_http(f"{hub_url}/healthz")
            assert not posting.done(), "posting ended before the last kill: post slower"
            await posting
            posted_after = time.monotonic() - started

            deadline = time.monotonic() + SETTLE_DEADLINE_SECONDS
            while True:
                statuses = await message_statuses(check)
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
        f"statuses {dict(statuses)}",
    )
    assert final == MESSAGES, f"not all final after the run: {dict(statuses)}"
    assert serve.poll() is None, "the last serve process died"
    tracebacks = procs.count_in_logs("Traceback")
    assert not any(tracebacks.values()), f"unexpected exceptions logged: {tracebacks}"
