"""``wahub bench sessions``: sends and receipts through WhatsApp Web sessions, against the
same volume through the Cloud API and its status webhooks, in the same run.

The sandbox runs in its own process and plays both providers; one hub on SQLite (its
HTTP side, outbox worker and inbox processor in this process, as ``wahub serve`` runs
them) serves both sides, one after the other, the same number of messages to the same
chats:

- **webhooks** (the baseline, ``bench send``'s machinery): one Cloud API channel; the
  messages are enqueued, sent by the outbox worker, and their ``sent``, ``delivered``
  and ``read`` status webhooks received and applied.
- **sessions**: ``sessions`` web channels on the sandbox's web session engine, all held
  by one session process (``wahub sessions``, a child process as ``serve`` starts it),
  each linked by a simulated QR scan; the messages, spread over them, are enqueued,
  sent by the session process, and their receipts journaled, stored in the inbox and
  applied by the same inbox processor.

Each side's clock stops when every one of its messages is ``read``; its rate counts
three status events per message (``events_per_s``, ``webhook_events_per_s``), and
``msgs_per_s`` is the sessions' rate to the last message sent. ``ratio =
events_per_s / webhook_events_per_s``. Pacing is lifted on every channel (this measures
wahub's cost, not WhatsApp's limits). ``lost`` counts messages the sandbox never
recorded, ``duplicates`` sends it recorded twice, over both sides;
``keepalives_missed`` counts sessions that were ever ``degraded`` during the run;
``unread`` messages not read when the run ended (a side whose clock never stopped
reports a rate of 0).
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
from pathlib import Path
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

from wahub.bench.send import (
    bench_secret_key,
    configure_sandbox,
    create_channels,
    drive,
    sandbox_process,
)
from wahub.config import Settings
from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.embedded import embedded_stack, free_port
from wahub.runtime import Hub
from wahub.store import messages as message_q

STATUSES_PER_MESSAGE: Final = 3  # sent, delivered, read on both sides
LINK_TIMEOUT_S: Final = 120.0
POLL_S: Final = 0.05


@contextlib.asynccontextmanager
async def session_process(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    """``wahub sessions`` on the hub's database, as ``serve`` would start it."""
    env = {
        **os.environ,
        "WAHUB_DATABASE_URL": settings.database_url,
        "WAHUB_SECRET_KEY": bench_secret_key().get_secret_value(),
        "WAHUB_SESSION_STATE_DIR": str(settings.session_state_dir),
        "WAHUB_WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "WAHUB_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        "sessions",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def create_web_channels(hub: Hub, sandbox_url: str, count: int) -> list[str]:
    """``count`` web channels on the sandbox's web engine, pacing and daily cap lifted;
    they start pairing as soon as a session process holds them."""
    ids = []
    for index in range(count):
        channel = await hub.channels.create(
            name=f"bench-web-{index}",
            kind="web",
            base_url=sandbox_url,
            rate_per_second=100_000,
            pair_burst=1000,
            pair_interval_seconds=0,
            chat_jitter_seconds=0,
            daily_cap=1_000_000_000,
        )
        ids.append(str(channel["id"]))
    return ids


async def link_by_qr(
    hub: Hub, http: aiohttp.ClientSession, sandbox_url: str, channel_ids: list[str]
) -> None:
    """Scan each channel's current QR at the sandbox (playing the phone) and wait until
    every session is ``working``. Raises RuntimeError naming the first that is not."""
    waiting = set(channel_ids)
    scanned: set[str] = set()
    deadline = time.monotonic() + LINK_TIMEOUT_S
    while waiting:
        for channel_id in sorted(waiting - scanned):
            async with http.get(f"{sandbox_url}/_sandbox/web/{channel_id}") as response:
                qr = (await response.json())["qr"]
            if qr is not None:
                async with http.post(
                    f"{sandbox_url}/_sandbox/web/{channel_id}/scan", json={"code": qr}
                ) as response:
                    if response.status == 200:
                        scanned.add(channel_id)
        for channel_id in sorted(scanned & waiting):
            if (await hub.web_sessions.status(channel_id))["state"] == "working":
                waiting.discard(channel_id)
        if time.monotonic() > deadline:
            first = sorted(waiting)[0]
            state = (await hub.web_sessions.status(first))["state"]
            raise RuntimeError(
                f"{len(waiting)} web sessions were not working after {LINK_TIMEOUT_S:g} s "
                f"(channel {first} is {state}): is the session process running?"
            )
        await asyncio.sleep(POLL_S)


def _rate(count: int, seconds: float | None) -> float:
    return count / seconds if seconds else 0.0


async def run_sessions_bench(
    *, sessions: int = 20, messages: int = 2000, chats: int = 50, progress: bool = False
) -> dict[str, Any]:
    """Run both sides against one sandbox process; see the module docstring."""
    if sessions < 1 or messages < 1 or chats < 1:
        raise ValidationError("--sessions, --messages and --chats must be positive")
    with tempfile.TemporaryDirectory(prefix="wahub-bench-sessions-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'sessions.db'}",
            port=free_port(),
            worker_concurrency=max(chats, 64),
            cloudapi_app_secret=SecretStr(secrets.token_urlsafe(24)),
            secret_key=bench_secret_key(),
            session_state_dir=str(Path(tmp) / "sessions"),
        )
        async with (
            sandbox_process(free_port()) as sandbox_url,
            aiohttp.ClientSession() as http,
        ):
            await configure_sandbox(http, sandbox_url, settings)
            async with http.post(
                f"{sandbox_url}/_sandbox/config", json={"web_receipt_delay_ms": 1}
            ) as response:
                response.raise_for_status()  # receipts as prompt as webhooks (delay 0)
            async with embedded_stack(settings, with_sandbox=False, workers=True) as stack:
                hub = stack.hub
                cloud_ids = await create_channels(hub, sandbox_url, 1)
                web_ids = await create_web_channels(hub, sandbox_url, sessions)
                async with session_process(settings):
                    await link_by_qr(hub, http, sandbox_url, web_ids)
                    webhooks = await drive(
                        hub, cloud_ids, messages=messages, chats=chats, progress=progress
                    )
                    web = await drive(
                        hub,
                        web_ids,
                        messages=messages,
                        chats=chats,
                        progress=progress,
                        # Receipts lag behind sends here: give them time to be counted.
                        deadline_s=max(300.0, messages / 5),
                    )
                    degraded = 0
                    for channel_id in web_ids:
                        history = (await hub.web_sessions.status(channel_id))["history"]
                        degraded += any(h["state"] == "degraded" for h in history)
                async with hub.db.read() as conn:
                    statuses = await message_q.statuses_by_id(conn)
            async with http.get(f"{sandbox_url}/_sandbox/sends") as response:
                sends = (await response.json())["sends"]
    received = Counter(s["biz_opaque_callback_data"] for s in sends)
    web_seconds, webhook_seconds = web.read_seconds, webhooks.read_seconds
    events_per_s = _rate(messages * STATUSES_PER_MESSAGE, web_seconds)
    webhook_events_per_s = _rate(messages * STATUSES_PER_MESSAGE, webhook_seconds)
    return {
        "sessions": sessions,
        "messages": messages,
        "chats": chats,
        "msgs_per_s": round(_rate(messages, web.sent_seconds), 1),
        "events_per_s": round(events_per_s, 1),
        "webhook_events_per_s": round(webhook_events_per_s, 1),
        "ratio": round(events_per_s / webhook_events_per_s, 3) if webhook_events_per_s else 0.0,
        "lost": sum(1 for message_id in statuses if not received[message_id]),
        "unread": sum(1 for status in statuses.values() if status != Status.READ),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "keepalives_missed": degraded,
        "seconds": round(web_seconds, 3) if web_seconds else None,
        "webhook_seconds": round(webhook_seconds, 3) if webhook_seconds else None,
    }
