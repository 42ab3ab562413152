"""The crash counter for WhatsApp Web sessions: 2,000 messages through two sandbox web
sessions while the session process (``wahub sessions``) is SIGKILLed three times and
started again each time. The standalone sandbox's record proves every accepted message
was sent exactly once and every chat in the order it was posted; the hub's, that every
message ended final.

Everything is posted first, while both sessions are working and their channels paused
(the API refuses a send through a session that is not working, so posts during a kill
would be refused, not lost); then the channels resume, paced so that the backlog takes
about 40 s to drain, and the kills fall into it: the session process always holds
claimed messages when it dies. Claimed ones must go back to the queue, sends that left
must be settled by their receipts (the restarted process reads the events its
predecessor journaled or never acked), none sent twice, and sends that never left must
be sent after the grace period. The uncertain policy is the default (``fail``): web
sends go under WhatsApp ids derived from our message ids, so their receipts name our
messages and silence settles them, as for the Cloud API.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from crash_counter import ChatPoster, claimed_by, judge
from multiprocess import FINAL_STATUSES, Processes, message_statuses, wait_http
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.runtime import Hub
from wahub.store import messages as message_q
from wahub.store.database import Database
from wahub.store.schema import channels

pytestmark = pytest.mark.slow

MESSAGES = 2000
CHATS = 40
KILLS = 3
POSTS_PER_SECOND = 400
# Per channel: the two drain the backlog in about 40 s, which the kills fall into.
RATE_PER_SECOND = 25
SETTLE_DEADLINE_SECONDS = 60.0


async def session_states(db: Database, channel_ids: list[str]) -> dict[str, str | None]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(channels.c.id, channels.c.session_state).where(channels.c.id.in_(channel_ids))
        )
    return {str(r.id): r.session_state for r in rows}


async def sending(db: Database, pid: int, within: float = 60.0) -> None:
    """Return once session process ``pid`` holds claimed messages (or ``within``
    seconds passed: a kill that interrupts nothing still counts, it proves less)."""
    deadline = time.monotonic() + within
    while not (await claimed_by(db, pid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def link(
    http: aiohttp.ClientSession, sandbox_url: str, db: Database, channel_ids: list[str]
) -> None:
    """Scan each session's QR at the sandbox and wait until both are working."""
    deadline = time.monotonic() + 120
    scanned: set[str] = set()
    while True:
        for channel_id in channel_ids:
            if channel_id in scanned:
                continue
            async with http.get(f"{sandbox_url}/_sandbox/web/{channel_id}") as resp:
                qr = (await resp.json())["qr"]
            if qr is not None:
                async with http.post(
                    f"{sandbox_url}/_sandbox/web/{channel_id}/scan", json={"code": qr}
                ) as resp:
                    if resp.status == 200:
                        scanned.add(channel_id)
        states = await session_states(db, channel_ids)
        if set(states.values()) == {"working"}:
            return
        assert time.monotonic() < deadline, f"sessions not linked: {states}"
        await asyncio.sleep(0.1)


async def test_session_process_killed_three_times_loses_nothing_sends_nothing_twice(
    tmp_path: Path, procs: Processes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    serve_port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": db_url,
        "WAHUB_SESSION_STATE_DIR": str(tmp_path / "sessions"),
        # serve must not start a session process of its own: the test runs and kills it.
        "WAHUB_RUN_SESSIONS": "false",
        "WAHUB_LEASE_SECONDS": "3",
        # A restarted session process takes the phones over once the dead one's lease
        # has run out.
        "WAHUB_SESSION_LEASE_SECONDS": "2",
        "WAHUB_WORKER_CONCURRENCY": str(2 * CHATS),
        # A send cut short by a kill is uncertain. It went under a WhatsApp id derived
        # from our message id, so a receipt for it names our message (within seconds of
        # the takeover), and silence after the grace period means it never left: it is
        # resent, under the default policy too (providers/registry.py).
        "WAHUB_UNCERTAIN_GRACE_SECONDS": "30",
        "WAHUB_BACKOFF_BASE_SECONDS": "0.1",
        "WAHUB_LOG_LEVEL": "WARNING",
    }
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    hub_url = f"http://127.0.0.1:{serve_port}"
    procs.spawn("sandbox", ["sandbox", "--port", str(sandbox_port)], env)
    await wait_http(f"{sandbox_url}/_sandbox/stats")

    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    channel_ids = []
    for index in range(2):
        channel = await hub.channels.create(
            name=f"web-{index}",
            kind="web",
            base_url=sandbox_url,
            rate_per_second=RATE_PER_SECOND,
            pair_burst=1000,
            pair_interval_seconds=0,
            chat_jitter_seconds=0,
            daily_cap=1_000_000,
        )
        channel_ids.append(str(channel["id"]))
        # Paused while everything is posted, so the kills meet the whole backlog.
        await hub.channels.update(channel_ids[-1], paused=True)
    key = (await hub.access.create_key(user_name="crash", role="admin")).key
    await hub.stop()

    def start_sessions() -> subprocess.Popen[bytes]:
        return procs.spawn("sessions", ["sessions"], env)

    procs.spawn("serve", ["serve", "--port", str(serve_port)], env)
    sessions = start_sessions()
    await wait_http(f"{hub_url}/healthz")

    rng = random.Random(16)
    check = Database(db_url)
    claimed_at_kill: list[Counter[str]] = []
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"}, timeout=aiohttp.ClientTimeout(total=20)
        ) as http:
            async with http.post(
                f"{sandbox_url}/_sandbox/config",
                json={"web_receipts": ["delivered"], "web_receipt_delay_ms": 5},
            ) as resp:
                assert resp.status == 200, await resp.text()
            await link(http, sandbox_url, check, channel_ids)
            poster = ChatPoster(
                http,
                hub_url,
                total=MESSAGES,
                chats=CHATS,
                per_second=POSTS_PER_SECOND,
                key_prefix="crash-sessions",
                channel_ids=channel_ids,
            )
            started = time.monotonic()
            await poster.run()
            posted_after = time.monotonic() - started
            for channel_id in channel_ids:
                async with http.patch(
                    f"{hub_url}/v1/channels/{channel_id}", json={"paused": False}
                ) as resp:
                    assert resp.status == 200, await resp.text()
            for _ in range(KILLS):
                # Once this process has taken the phones over and claims messages, a
                # little later: a kill before that would interrupt nothing.
                await sending(check, sessions.pid)
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                sessions.send_signal(signal.SIGKILL)
                sessions.wait(10)
                claimed_at_kill.append(await claimed_by(check, sessions.pid))
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                sessions = start_sessions()
            deadline = time.monotonic() + SETTLE_DEADLINE_SECONDS + MESSAGES / RATE_PER_SECOND
            while True:
                statuses = await message_statuses(check)
                final = sum(n for s, n in statuses.items() if s in FINAL_STATUSES)
                if final == MESSAGES or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            final_after = time.monotonic() - started
            async with check.read() as conn:
                failures = await message_q.count_failures_by_code(conn)
            async with http.get(f"{sandbox_url}/_sandbox/sends") as resp:
                sends: list[dict[str, Any]] = [
                    s for s in (await resp.json())["sends"] if s["provider"] == "web"
                ]
    finally:
        await check.dispose()

    judge(
        poster,
        sends,
        claimed_at_kill,
        kills=KILLS,
        messages_posted=MESSAGES,
        story=f"all posted after {posted_after:.0f} s, final after {final_after:.0f} s; "
        f"statuses {dict(statuses)}; failures by code {failures}",
    )
    assert final == MESSAGES, f"not all final after the run: {dict(statuses)}"
    assert sessions.poll() is None, "the last session process died"
    tracebacks = procs.count_in_logs("Traceback")
    assert not any(tracebacks.values()), f"unexpected exceptions logged: {tracebacks}"
