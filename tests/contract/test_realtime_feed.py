"""The realtime feed across processes: what one process commits, another's subscribers see.

Each ``Database`` below is what a separate ``wahub serve`` process would hold: its own
engine and connections. The subscribing side polls only every 60 s here, so an event that
arrives within seconds proves the PostgreSQL ``LISTEN/NOTIFY`` wake-up carried it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from wahub.config import Settings
from wahub.domain.status import Status
from wahub.realtime.hub import Subscription
from wahub.runtime import Hub
from wahub.store import messages as q
from wahub.store.database import Database
from wahub.store.notify import EVENTS, LISTENER_NAME, Listener

TERMINATE_LISTENERS = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    f"WHERE datname = current_database() AND application_name = '{LISTENER_NAME}'"
)
WAIT = 20.0  # generous: a failure here means "never", not "slow"


async def next_event(
    sub: Subscription, message_id: str, event: str | None = None
) -> dict[str, Any]:
    """The next event of ``message_id`` (of kind ``event``, when given) the subscriber gets."""
    async with asyncio.timeout(WAIT):
        while True:
            got = await sub.queue.get()
            if got["message_id"] == message_id and event in (None, got["event"]):
                return got


@pytest.fixture
async def listening_hub(database_url: str, env: Any) -> AsyncIterator[Hub]:
    """A second 'process' (its own engines) running only the realtime side, polling
    rarely, on the same database as ``env``."""
    hub = Hub.build(Settings(database_url=database_url))
    hub.realtime.poll_seconds = 60.0
    await hub.start(workers=False, realtime=True)
    try:
        if hub.listener is not None:
            await asyncio.wait_for(hub.listener.connected.wait(), WAIT)
        yield hub
    finally:
        await hub.stop()


async def test_status_committed_elsewhere_reaches_subscribers_without_polling(
    database_url: str, env: Any, listening_hub: Hub
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("cross-process wake-ups are PostgreSQL's LISTEN/NOTIFY")
    sub = listening_hub.realtime.subscribe(lambda _e: True)
    # The tail may be mid-sleep from its start; give it one wake-up to settle first.
    message = await env.send_text(env.phone(1))
    first = await next_event(sub, message["id"])
    assert first["event"] == "queued"

    claimed = await env.claim()
    assert [m["id"] for m in claimed] == [message["id"]]
    await env.mark_sent(message["id"], "wamid.cross-process")
    seen = [(await next_event(sub, message["id"]))["event"] for _ in range(2)]
    assert seen == ["sending", "sent"]


async def test_event_committed_late_with_a_lower_id_is_not_skipped(
    database_url: str, env: Any, listening_hub: Hub
) -> None:
    """Two writers: the one holding the lower event id commits last. A tail that only
    moved its cursor forward would never deliver that event."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: ids become visible in order")
    early = await env.insert_queued(env.person_chat(1))
    late = await env.insert_queued(env.person_chat(2))
    sub = listening_hub.realtime.subscribe(lambda _e: True)

    other = Database(database_url)
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def slow_writer() -> None:
            async with other.transaction() as conn:
                await q.record_events(
                    conn, [q.EventRecord(early["id"], Status.FAILED, "operator")], time.time()
                )
                holding.set()
                await release.wait()

        writer = asyncio.create_task(slow_writer())
        await asyncio.wait_for(holding.wait(), WAIT)
        # This event gets a higher id but commits first.
        async with env.db.transaction() as conn:
            await q.record_events(
                conn, [q.EventRecord(late["id"], Status.FAILED, "operator")], time.time()
            )
        await next_event(sub, late["id"], "failed")
        release.set()
        await writer
        await next_event(sub, early["id"], "failed")
    finally:
        await other.dispose()


async def test_listener_reconnects_and_wakes_everyone_after_losing_its_connection(
    database_url: str, env: Any
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    woken = asyncio.Event()
    listener = Listener(database_url, {EVENTS: [woken.set]}, keepalive_seconds=0.5)
    await listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), WAIT)
        woken.clear()
        # Kill its backend the way a PostgreSQL restart or a network cut would.
        async with env.db.transaction() as conn:
            await conn.execute(TERMINATE_LISTENERS)
        async with asyncio.timeout(WAIT):
            while listener.reconnects == 0 or not listener.connected.is_set():
                await asyncio.sleep(0.05)
        # After a reconnect every handler runs once (notifications sent meanwhile are lost).
        await asyncio.wait_for(woken.wait(), WAIT)
        woken.clear()
        await env.send_text(env.phone(3))  # queued event -> NOTIFY wahub_events
        await asyncio.wait_for(woken.wait(), WAIT)
    finally:
        await listener.stop()
