"""``wahub bench sessions``: sends and receipts through WhatsApp Web sessions, against the
same volume through the Cloud API and its status webhooks, in the same run.

The sandbox runs in its own process and plays both providers. Two sides, one after the
other, the same number of messages to the same chats:

- **webhooks** (the baseline, ``bench send``'s machinery): a Cloud API channel in a hub
  on SQLite; messages are enqueued, sent by the pipeline, and their ``sent``,
  ``delivered`` and ``read`` status webhooks are received and applied. Its clock stops
  when every message is read: ``webhook_events_per_s`` is statuses applied per second.
  A message that never reads counts in neither side's rate (its clock never stops:
  the rate is then 0), and one the sandbox never received is lost.
- **sessions**: ``sessions`` sandbox web sessions, each linked by a simulated QR scan,
  held by one engine (``SandboxWebEngine``) in this process; the messages are spread
  over them and sent by as many concurrent senders as there are chats; the clock stops
  when every message's ``read`` receipt arrived. ``events_per_s`` counts receipts (one
  per message and status, however many ids a receipt names).

``ratio = events_per_s / webhook_events_per_s``. ``lost`` counts messages the sandbox
never recorded or whose ``read`` never came, ``duplicates`` sends the sandbox recorded
twice (by tracking id), over both sides. ``keepalives_missed`` counts sessions that
reported a missed keep-alive during the run (the engine pings every second).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

from wahub.bench.send import (
    bench_database_url,
    bench_secret_key,
    configure_sandbox,
    create_channels,
    drive,
    phone,
    sandbox_process,
)
from wahub.config import Settings
from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.embedded import embedded_stack, free_port
from wahub.providers.web.sandbox_engine import SandboxWebEngine, SandboxWebSession
from wahub.providers.web.session import (
    Connected,
    KeepAliveMissed,
    QrCode,
    ReceiptReceived,
    SessionEvent,
    WebOutbound,
)
from wahub.store import messages as message_q

STATUSES_PER_MESSAGE: Final = 3  # sent, delivered, read on both sides
LINK_TIMEOUT_S: Final = 30.0


@dataclass
class _Receipts:
    """What the sessions' receipts said, by tracking id."""

    events: int = 0
    read: set[str] = field(default_factory=set)
    keepalives_missed: set[str] = field(default_factory=set)
    all_read: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def on_event(self, channel: str, event: SessionEvent) -> None:
        if isinstance(event, ReceiptReceived):
            self.events += len(event.statuses)
            for status in event.statuses:
                if status.status is Status.READ and status.tracking_id is not None:
                    self.read.add(status.tracking_id)
            if len(self.read) >= self.expected:
                self.all_read.set()
        elif isinstance(event, KeepAliveMissed):
            self.keepalives_missed.add(channel)


async def _linked_sessions(
    engine: SandboxWebEngine,
    http: aiohttp.ClientSession,
    sandbox_url: str,
    count: int,
    receipts: _Receipts,
) -> list[SandboxWebSession]:
    """``count`` sessions, each started and linked by scanning its first QR."""
    sessions = []
    for index in range(count):
        channel = f"bench-web-{index}"
        linked = asyncio.Event()
        first_qr: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_event(
            event: SessionEvent,
            channel: str = channel,
            linked: asyncio.Event = linked,
            first_qr: asyncio.Future[str] = first_qr,
        ) -> None:
            if isinstance(event, QrCode) and not first_qr.done():
                first_qr.set_result(event.code)
            elif isinstance(event, Connected):
                linked.set()
            receipts.on_event(channel, event)

        session = engine.open(channel, on_event=on_event)
        await session.start()
        async with asyncio.timeout(LINK_TIMEOUT_S):
            code = await first_qr
            async with http.post(
                f"{sandbox_url}/_sandbox/web/{channel}/scan",
                json={"code": code, "phone": phone(10_000 + index)},
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"the sandbox refused to link {channel}: {response.status}")
            await linked.wait()
        sessions.append(session)
    return sessions


@dataclass
class _WebRun:
    sent_seconds: float
    read_seconds: float | None
    receipts: _Receipts


async def _web_side(
    sandbox_url: str, *, sessions: int, messages: int, chats: int, progress: bool
) -> _WebRun:
    receipts = _Receipts(expected=messages)
    with tempfile.TemporaryDirectory(prefix="wahub-bench-sessions-") as state_dir:
        engine = SandboxWebEngine(sandbox_url, Path(state_dir), keepalive_interval_s=1.0)
        async with aiohttp.ClientSession() as http, _closing(engine):
            # Receipts as prompt as the webhook side's statuses (webhook_delay_ms 0).
            async with http.post(
                f"{sandbox_url}/_sandbox/config", json={"web_receipt_delay_ms": 1}
            ) as response:
                response.raise_for_status()
            held = await _linked_sessions(engine, http, sandbox_url, sessions, receipts)
            pending = iter(range(messages))

            async def sender() -> None:
                for i in pending:
                    chat = i % chats
                    await held[chat % sessions].send(
                        WebOutbound(
                            tracking_id=f"web_{i}",
                            to=f"{phone(chat)[1:]}@s.whatsapp.net",
                            kind="text",
                            text=f"bench message {i}",
                        )
                    )

            started = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(chats)))
            sent_seconds = time.perf_counter() - started
            read_seconds = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(60.0, messages / 20)):
                    await receipts.all_read.wait()
                    read_seconds = time.perf_counter() - started
            if progress:
                print(f"sessions: {len(receipts.read)}/{messages} read", file=sys.stderr)
    return _WebRun(sent_seconds, read_seconds, receipts)


@contextlib.asynccontextmanager
async def _closing(engine: SandboxWebEngine) -> AsyncIterator[SandboxWebEngine]:
    try:
        yield engine
    finally:
        await engine.close()


async def _webhook_side(
    sandbox_url: str, http: aiohttp.ClientSession, *, messages: int, chats: int, progress: bool
) -> tuple[float | None, dict[str, str]]:
    """(seconds until every message was read, final status by message id)."""
    async with bench_database_url(None, "sessions") as database_url:
        settings = Settings(
            database_url=database_url,
            port=free_port(),
            worker_concurrency=max(chats, 64),
            cloudapi_app_secret=SecretStr(secrets.token_urlsafe(24)),
            secret_key=bench_secret_key(),
        )
        await configure_sandbox(http, sandbox_url, settings)
        async with embedded_stack(settings, with_sandbox=False, workers=True) as stack:
            hub = stack.hub
            channel_ids = await create_channels(hub, sandbox_url, 1)
            started = time.perf_counter()
            await drive(hub, channel_ids, messages=messages, chats=chats, progress=progress)
            # drive stops at delivered; the sessions side waits for read, so this does too.
            read_seconds = None
            deadline = started + max(60.0, messages / 20)
            while time.perf_counter() < deadline:
                async with hub.db.read() as conn:
                    statuses = await message_q.statuses_by_id(conn)
                if all(status == Status.READ for status in statuses.values()):
                    read_seconds = time.perf_counter() - started
                    break
                await asyncio.sleep(0.02)
    return read_seconds, statuses


async def run_sessions_bench(
    *, sessions: int = 20, messages: int = 2000, chats: int = 50, progress: bool = False
) -> dict[str, Any]:
    """Run both sides against one sandbox process; see the module docstring."""
    if sessions < 1 or messages < 1 or chats < 1:
        raise ValidationError("--sessions, --messages and --chats must be positive")
    async with (
        sandbox_process(free_port()) as sandbox_url,
        aiohttp.ClientSession() as http,
    ):
        webhook_seconds, statuses = await _webhook_side(
            sandbox_url, http, messages=messages, chats=chats, progress=progress
        )
        web = await _web_side(
            sandbox_url, sessions=sessions, messages=messages, chats=chats, progress=progress
        )
        async with http.get(f"{sandbox_url}/_sandbox/sends") as response:
            sends = (await response.json())["sends"]
    received = Counter(s["biz_opaque_callback_data"] for s in sends)
    web_ids = [f"web_{i}" for i in range(messages)]
    lost_webhooks = sum(1 for message_id in statuses if not received[message_id])
    lost_web = sum(1 for i in web_ids if not received[i] or i not in web.receipts.read)
    events_per_s = web.receipts.events / web.read_seconds if web.read_seconds else 0.0
    webhook_events_per_s = (
        messages * STATUSES_PER_MESSAGE / webhook_seconds if webhook_seconds else 0.0
    )
    return {
        "sessions": sessions,
        "messages": messages,
        "chats": chats,
        "msgs_per_s": round(messages / web.sent_seconds, 1),
        "events_per_s": round(events_per_s, 1),
        "webhook_events_per_s": round(webhook_events_per_s, 1),
        "ratio": round(events_per_s / webhook_events_per_s, 3) if webhook_events_per_s else 0.0,
        "lost": lost_webhooks + lost_web,
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "keepalives_missed": len(web.receipts.keepalives_missed),
        "seconds": round(web.read_seconds, 3) if web.read_seconds else None,
        "webhook_seconds": round(webhook_seconds, 3) if webhook_seconds else None,
    }
