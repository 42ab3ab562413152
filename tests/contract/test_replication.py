"""Replication on every store backend: the agent database catching up after an outage,
a flaky webhook receiver getting every change in order per chat, dead letters and their
replay, idempotent re-application, and (PostgreSQL) a transaction that commits after a
later one without its change being skipped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import insert, select, text, update
from standardwebhooks import Webhook, WebhookVerificationError

from pgcluster import PostgresCluster, find_bindir
from wahub.replication.service import Replication
from wahub.replication.sinks.base import DELIVERED, Outcomes
from wahub.replication.sinks.database import SEQ_COLUMN, DatabaseSink
from wahub.replication.sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from wahub.store import changelog as q
from wahub.store.changelog import REPLICATED, Change
from wahub.store.schema import chats, messages, metadata
from webhook_catcher import serve_handler

SECRET = "whsec-test"
STANDARD_SECRET = "whsec_" + base64.b64encode(SECRET.encode()).decode()


@pytest.fixture(scope="module")
def agent_cluster() -> Iterator[PostgresCluster]:
    """A second PostgreSQL server, the agent database's, which tests stop and start."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server on this machine")
    cluster = PostgresCluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def agent_url(agent_cluster: PostgresCluster) -> Iterator[str]:
    name = f"agent_{random.randrange(10**9)}"
    url = agent_cluster.new_database(name)
    yield url
    agent_cluster.drop_database(name)


def replication(env: Any, sinks: list[dict[str, Any]], **kwargs: Any) -> Replication:
    return Replication(
        env.db, sinks=json.dumps(sinks), poll_interval=0.02, lease_seconds=2.0, **kwargs
    )


@contextlib.asynccontextmanager
async def running(repl: Replication) -> AsyncIterator[Replication]:
    await repl.start()
    try:
        yield repl
    finally:
        await repl.stop()


async def caught_up(repl: Replication, name: str, *, within: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status = await repl.status()
        sink = next(s for s in status["sinks"] if s["name"] == name)
        if sink["pending"] == 0 and sink["last_seq"] >= status["head_seq"]:
            return sink
        assert time.monotonic() < deadline, f"sink {name} did not catch up: {sink}"
        await asyncio.sleep(0.05)


async def traffic(env: Any, *, rounds: int, chats_n: int = 4, pause: float = 0.0) -> None:
    """Messages queued and moved through statuses, chats renamed: every replicated
    table the outbox touches changes, interleaved across chats."""
    sent: list[str] = []
    for r in range(rounds):
        chat = env.person_chat(r % chats_n)
        message = await env.insert_queued(chat, text=f"hello {r}")
        sent.append(message["id"])
        if r % 3 == 0:
            async with env.db.transaction() as conn:
                await conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(sent[-3:]))
                    .values(status="sent", sent_at=time.time(), updated_at=time.time())
                )
        if r % 10 == 0:
            async with env.db.transaction() as conn:
                await conn.execute(
                    update(chats).where(chats.c.chat_id == chat).values(name=f"Chat {r}")
                )
        if pause:
            await asyncio.sleep(pause)


async def create_chats(env: Any, n: int) -> None:
    async with env.db.transaction() as conn:
        for i in range(n):
            await conn.execute(
                insert(chats).values(
                    chat_id=env.person_chat(i), kind="person", name=None, created_at=time.time()
                )
            )


async def source_rows(env: Any, table: str) -> dict[str, dict[str, Any]]:
    spec = next(s for s in REPLICATED if s.table == table)
    source = metadata.tables[table]
    columns = [c for c in source.columns if c.name not in spec.internal]
    async with env.db.read() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(*columns))]
    return {"|".join(str(r[k]) for k in spec.key): r for r in rows}


async def assert_mirror_equals_source(env: Any, sink: DatabaseSink) -> None:
    for spec in REPLICATED:
        if spec.table not in metadata.tables:
            continue
        expected = await source_rows(env, spec.table)
        mirrored = {
            "|".join(str(r[k]) for k in spec.key): {n: v for n, v in r.items() if n != SEQ_COLUMN}
            for r in await sink.read_all(spec.table)
        }
        assert mirrored.keys() == expected.keys(), f"{spec.table}: rows differ"
        for key, row in expected.items():
            assert mirrored[key] == row, f"{spec.table} {key}: {mirrored[key]} != {row}"


async def test_agent_database_stopped_mid_run_catches_up_row_for_row(
    env: Any, agent_url: str, agent_cluster: PostgresCluster
) -> None:
    await create_chats(env, 4)
    repl = replication(env, [{"name": "agent", "kind": "database", "url": agent_url}])
    async with running(repl):
        writing = asyncio.create_task(traffic(env, rounds=120, pause=0.01))
        await asyncio.sleep(0.4)
        await asyncio.to_thread(agent_cluster.stop)
        await asyncio.sleep(1.0)
        status = next(s for s in (await repl.status())["sinks"] if s["name"] == "agent")
        await asyncio.to_thread(agent_cluster.start)
        await writing

        assert status["pending"] > 0, "the outage must leave a backlog"
        assert status["last_error"], "the outage is reported in status"
        done = await caught_up(repl, "agent")
        assert done["last_error"] is None, "recovery clears the error"
        assert done["dead_letters"] == 0

    sink = DatabaseSink(repl.config("agent"))  # type: ignore[arg-type]
    await sink.open()
    try:
        await assert_mirror_equals_source(env, sink)
    finally:
        await sink.close()


async def test_applying_changes_again_or_late_never_moves_a_row_back(
    env: Any, tmp_path: Any
) -> None:
    await create_chats(env, 2)
    await traffic(env, rounds=20, chats_n=2)
    config = {"name": "agent", "kind": "database", "url": f"sqlite:///{tmp_path}/agent.db"}
    repl = replication(env, [config])
    async with running(repl):
        await caught_up(repl, "agent")
    sink = DatabaseSink(repl.config("agent"))  # type: ignore[arg-type]
    await sink.open()
    try:
        async with env.db.read() as conn:
            log = await conn.run_sync(
                lambda c: q.read_changes_sync(c, after=0, upto=None, limit=10_000)
            )
        await sink.deliver(log)  # the whole log again
        for change in reversed(log):  # and every change late, newest first
            await sink.deliver([change])
        await assert_mirror_equals_source(env, sink)
    finally:
        await sink.close()


class Receiver:
    """A webhook receiver that verifies signatures and fails a share of requests."""

    def __init__(self, fail_share: float, *, refuse: Callable[[dict[str, Any]], bool]) -> None:
        self.rng = random.Random(8)
        self.fail_share = fail_share
        self.refuse = refuse
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(SECRET.encode(), request.headers.get(TIMESTAMP_HEADER, ""), body, signature):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        # The same request carries Standard Webhooks headers, signed by the code event
        # subscriptions use, with the sink's secret as the key.
        try:
            Webhook(STANDARD_SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401, text="bad standard signature")
        changes = json.loads(body)["changes"]
        if any(self.refuse(c) for c in changes):
            return web.Response(status=422, text="rejected: unknown table")
        if self.rng.random() < self.fail_share:
            return web.Response(status=503, text="try later")
        self.accepted.extend(changes)
        return web.Response(status=204)


def serve(receiver: Receiver) -> contextlib.AbstractAsyncContextManager[str]:
    return serve_handler(receiver.handle, "/hook")


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hooks",
        "kind": "webhook",
        "url": url,
        "secret": SECRET,
        "max_attempts": 50,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_changes_per_request": 5,
        **extra,
    }


async def test_a_receiver_failing_half_the_time_gets_every_change_in_order_per_chat(
    env: Any,
) -> None:
    await create_chats(env, 4)
    receiver = Receiver(0.5, refuse=lambda c: False)
    async with serve(receiver) as url:
        repl = replication(env, [webhook(url)])
        async with running(repl):
            await traffic(env, rounds=60, pause=0.005)
            await caught_up(repl, "hooks")

    async with env.db.read() as conn:
        log = await conn.run_sync(lambda c: q.read_changes_sync(c, after=0, upto=None, limit=10**5))
    delivered = {c["seq"] for c in receiver.accepted}
    assert delivered == {c.seq for c in log}, "every change at least once"
    per_chat: dict[str, list[int]] = defaultdict(list)
    for change in receiver.accepted:
        per_chat[change["chat_id"] or f"{change['table']}:{change['key']}"].append(change["seq"])
    for chat, seqs in per_chat.items():
        assert seqs == sorted(seqs), f"chat {chat} received out of order: {seqs}"
    assert receiver.bad_signatures == 0


async def test_a_refused_change_is_dead_lettered_and_replayed_once_accepted(env: Any) -> None:
    await create_chats(env, 2)
    refusing = True
    receiver = Receiver(
        0.0, refuse=lambda c: refusing and c["table"] == "chats" and c["op"] == "update"
    )
    async with serve(receiver) as url:
        repl = replication(env, [webhook(url)])
        async with running(repl):
            await traffic(env, rounds=12, chats_n=2)
            sink = await caught_up(repl, "hooks")
            letters = await repl.dead_letters("hooks")

            assert sink["dead_letters"] == len(letters) > 0
            assert {(d["table_name"], d["op"]) for d in letters} == {("chats", "update")}
            assert "rejected" in letters[0]["error"], "the receiver's answer is kept"
            later = [c["seq"] for c in receiver.accepted if c["seq"] > letters[0]["seq"]]
            assert later, "the chat goes on after a refused change"

            refusing = False
            result = await repl.replay("hooks")

        assert result == {"replayed": len(letters), "failed": 0}
        assert await repl.dead_letters("hooks") == []
        accepted = {c["seq"] for c in receiver.accepted}
        assert {d["seq"] for d in letters} <= accepted


class Recorder:
    """A sink keeping what it got (a real implementation of the port, like httpx's
    MockTransport)."""

    name = "recorder"

    def __init__(self) -> None:
        self.got: list[Change] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, changes: list[Change]) -> Outcomes:
        self.got.extend(changes)
        return {c.ident: DELIVERED for c in changes}


async def test_a_change_committed_after_a_later_one_is_not_skipped(env: Any) -> None:
    if env.db.is_sqlite:
        pytest.skip("SQLite has one writer: seq order is commit order")
    recorder = Recorder()
    repl = replication(
        env,
        [{"name": "recorder", "kind": "webhook", "url": "http://x", "secret": "s"}],
        sink_factory=lambda config: recorder,
    )
    now = time.time()
    async with running(repl):
        async with contextlib.AsyncExitStack() as stack:
            fast = await stack.enter_async_context(env.db.transaction())
            # The fast transaction's id is the older one, so the slow one's id is above
            # everything committed so far: no snapshot lists it as running.
            await fast.execute(text("SELECT pg_current_xact_id()"))
            slow_stack = contextlib.AsyncExitStack()
            slow = await slow_stack.enter_async_context(env.db.transaction())
            await slow.execute(
                insert(chats).values(chat_id=env.person_chat(1), kind="person", created_at=now)
            )  # draws the lower seq, commits last
            await fast.execute(
                insert(chats).values(chat_id=env.person_chat(2), kind="person", created_at=now)
            )
        try:
            await asyncio.sleep(0.5)  # the shipper polls meanwhile
            assert recorder.got == [], "nothing ships past a change still being written"
        finally:
            await slow_stack.aclose()
        await caught_up(repl, "recorder")

    keys = [c.key for c in recorder.got]
    assert keys == [env.person_chat(1), env.person_chat(2)], "both, in seq order"
