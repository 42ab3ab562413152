"""Event subscriptions on every store backend: events derived from the change log are
stored per subscription, delivered signed (verified with the ``standardwebhooks``
package), retried until they get through, in order per chat; 410 pauses at once, a day
of failures pauses and dead-letters, a refusal dead-letters at once, replay sends again,
and a receiver that never answers costs a timeout, not a hang."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from wahub.features.subscriptions import Subscriptions
from wahub.pipeline.event_deliveries import DeliveryPolicy, DeliveryWorker
from wahub.pipeline.event_fanout import fanout_shipper
from wahub.pipeline.wakeup import Wakeup
from wahub.replication.service import Replication, ReplicationError
from wahub.replication.shipper import Shipper
from wahub.store.schema import changes, sink_cursors
from webhook_catcher import serve_handler

DAY = 86_400.0


@dataclass
class Receiver:
    """A subscriber's endpoint: verifies each request with ``standardwebhooks`` and
    answers ``answer(payload)`` (an HTTP status, or None to never answer)."""

    answer: Callable[[dict[str, Any]], int | None] = lambda payload: 204
    secret: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        payload["webhook_id"] = request.headers["webhook-id"]
        self.requests.append(payload)
        status = self.answer(payload)
        if status is None:
            await asyncio.sleep(3600)
            return web.Response(status=204)
        if 200 <= status < 300:
            self.accepted.append(payload)
        return web.Response(status=status, text="receiver says no" if status >= 300 else "")


def serve(receiver: Receiver) -> contextlib.AbstractAsyncContextManager[str]:
    return serve_handler(receiver.handle, "/events")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    env: Any
    subs: Subscriptions
    fanout: Shipper
    worker: DeliveryWorker
    clock: Clock

    async def derive(self) -> None:
        """Run the fan-out until it has read the whole log."""
        for _ in range(100):
            await self.fanout.step()
            async with self.env.db.read() as conn:
                head = (await conn.execute(select(func.max(changes.c.seq)))).scalar()
                cursor = (
                    await conn.execute(
                        select(sink_cursors.c.last_seq).where(
                            sink_cursors.c.sink == "@subscriptions"
                        )
                    )
                ).scalar()
            if cursor is not None and (head is None or cursor >= head):
                # Deliveries are due from when they were stored (the real time).
                self.clock.now = max(self.clock.now, time.time())
                return
        raise AssertionError("the fan-out did not catch up")

    async def deliver_all(self, *, rounds: int = 200, step_seconds: float = 60.0) -> None:
        """Claim and deliver until nothing is pending, moving the clock past every
        backoff between rounds."""
        for _ in range(rounds):
            await self.worker.step()
            pending = [
                d
                for s in await self.subs.all()
                for d in [s["deliveries"]["pending"]]
                if d and not s["paused"]
            ]
            if not pending:
                return
            self.clock.now += step_seconds
        raise AssertionError("deliveries still pending")


@contextlib.asynccontextmanager
async def rig(env: Any, **policy: Any) -> AsyncIterator[Rig]:
    clock = Clock()
    settings: dict[str, Any] = {"timeout_seconds": 2.0, "backoff_base_seconds": 1.0}
    settings.update(policy)
    delivery_policy = DeliveryPolicy(**settings)
    subs = Subscriptions(env.db, env.channels.cipher, delivery_policy)
    fanout = await fanout_shipper(env.db, owner="test", lease_seconds=30, poll_interval=0.01)
    worker = DeliveryWorker(
        env.db, env.channels.cipher, Wakeup(), delivery_policy, owner="test", clock=clock
    )
    try:
        yield Rig(env, subs, fanout, worker, clock)
    finally:
        await worker.close()


async def inbound(env: Any, chat_n: int, text: str, *, channel_id: str | None = None) -> None:
    await env.insert_queued(
        env.person_chat(chat_n),
        channel_id=channel_id,
        direction="in",
        status="received",
        content={"type": "text", "text": {"body": text}},
    )


async def subscribe(r: Rig, url: str, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    created = await r.subs.create(url=url, event_types=["message.received"], **extra)
    receiver.secret = created["secret"]
    return created


def bodies(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["data"]["content"]["text"]["body"] for p in payloads]


async def test_deliveries_verify_with_the_standardwebhooks_package(env: Any) -> None:
    receiver = Receiver()
    async with serve(receiver) as url, rig(env) as r:
        created = await subscribe(r, url, receiver)
        assert created["secret"].startswith("whsec_")
        await inbound(env, 1, "hello")
        await r.derive()
        await r.deliver_all()

    assert receiver.bad_signatures == 0
    assert bodies(receiver.accepted) == ["hello"]
    event = receiver.accepted[0]
    assert event["type"] == "message.received"
    assert event["data"]["chat_id"] == env.person_chat(1)
    assert event["webhook_id"].startswith("evt_")


async def test_a_receiver_failing_often_gets_every_event_once_in_order_per_chat(
    env: Any,
) -> None:
    rng = random.Random(18)
    receiver = Receiver(answer=lambda p: 503 if rng.random() < 0.4 else 204)
    async with serve(receiver) as url, rig(env) as r:
        created = await subscribe(r, url, receiver)
        for i in range(40):
            await inbound(env, i % 4, f"{i % 4}:{i:03d}")
        await r.derive()
        await r.deliver_all()
        log = await r.subs.attempts(created["id"], limit=1000)

    got = bodies(receiver.accepted)
    assert sorted(got) == sorted(f"{i % 4}:{i:03d}" for i in range(40)), "each event once"
    per_chat: dict[str, list[str]] = defaultdict(list)
    for body in got:
        per_chat[body.split(":")[0]].append(body)
    for chat, seen in per_chat.items():
        assert seen == sorted(seen), f"chat {chat} out of order: {seen}"
    assert {a["status_code"] for a in log} == {204, 503}, "the log keeps every answer"
    assert all(a["latency_ms"] >= 0 for a in log)
    assert len(log) == len(receiver.requests)


async def test_only_the_subscribed_channel_and_types_are_stored(env: Any) -> None:
    other = await env.add_channel("other")
    receiver = Receiver()
    async with serve(receiver) as url, rig(env) as r:
        await subscribe(r, url, receiver, channel_ids=[other])
        await inbound(env, 1, "not mine")
        await inbound(env, 2, "mine", channel_id=other)
        await env.insert_queued(env.person_chat(3))  # outbound: not a received message
        await r.derive()
        await r.deliver_all()

    assert bodies(receiver.accepted) == ["mine"]


async def test_a_410_pauses_the_subscription_at_once(env: Any) -> None:
    receiver = Receiver(answer=lambda p: 410)
    async with serve(receiver) as url, rig(env) as r:
        created = await subscribe(r, url, receiver)
        await inbound(env, 1, "a")
        await inbound(env, 2, "b")
        await r.derive()
        await r.worker.step()
        sub = await r.subs.get(created["id"])
        r.clock.now += 3600
        asked = len(receiver.requests)
        await r.worker.step()

        assert sub["paused"] is True
        assert "410" in sub["paused_reason"]
        assert len(receiver.requests) == asked, "a paused subscription gets nothing"
        pending = await r.subs.deliveries(created["id"], state="pending")
        assert len(pending) == 2, "its events wait for a resume"


async def test_a_day_of_failures_dead_letters_and_pauses_with_an_event(env: Any) -> None:
    failing = Receiver(answer=lambda p: 500)
    watcher = Receiver()
    async with serve(failing) as bad_url, serve(watcher) as good_url, rig(env) as r:
        bad = await subscribe(r, bad_url, failing)
        watching = await r.subs.create(url=good_url, event_types=["subscription.paused"])
        watcher.secret = watching["secret"]
        await inbound(env, 1, "first")
        await r.derive()
        await r.worker.step()
        r.clock.now += DAY / 2
        await r.worker.step()
        assert (await r.subs.get(bad["id"]))["paused"] is False, "half a day is not a day"
        r.clock.now += DAY / 2 + 1
        await r.worker.step()
        await r.worker.step()

        sub = await r.subs.get(bad["id"])
        dead = await r.subs.deliveries(bad["id"], state="dead")

    assert sub["paused"] is True
    assert "no delivery succeeded" in sub["paused_reason"]
    assert [d["webhook_id"] for d in dead] == [failing.requests[0]["webhook_id"]]
    assert dead[0]["last_status_code"] == 500
    assert [(p["type"], p["data"]["subscription_id"]) for p in watcher.accepted] == [
        ("subscription.paused", bad["id"])
    ]


async def test_a_refused_event_is_a_dead_letter_and_its_chat_goes_on(env: Any) -> None:
    receiver = Receiver(answer=lambda p: 422 if "bad" in json.dumps(p) else 204)
    async with serve(receiver) as url, rig(env) as r:
        created = await subscribe(r, url, receiver)
        await inbound(env, 1, "bad one")
        await inbound(env, 1, "good one")
        await r.derive()
        await r.deliver_all()
        dead = await r.subs.deliveries(created["id"], state="dead")

    assert bodies(receiver.accepted) == ["good one"]
    assert len(dead) == 1
    assert "receiver says no" in dead[0]["last_error"]


async def test_replay_sends_one_delivery_or_a_time_range_again(env: Any) -> None:
    receiver = Receiver()
    async with serve(receiver) as url, rig(env) as r:
        created = await subscribe(r, url, receiver)
        await inbound(env, 1, "one")
        await inbound(env, 2, "two")
        await r.derive()
        await r.deliver_all()
        first = (await r.subs.deliveries(created["id"]))[-1]

        assert await r.subs.replay(created["id"], delivery_id=first["id"]) == 1
        await r.deliver_all()
        assert bodies(receiver.accepted) == ["one", "two", "one"]

        replayed = await r.subs.replay(created["id"], since=first["created_at"] - 1)
        await r.deliver_all()

    assert replayed == 2
    assert sorted(bodies(receiver.accepted)[3:]) == ["one", "two"]
    ids = [p["webhook_id"] for p in receiver.accepted]
    assert ids[0] == ids[2], "a replay keeps the webhook-id, so receivers deduplicate"


async def test_a_receiver_that_never_answers_times_out_and_is_retried(env: Any) -> None:
    answers: list[int | None] = [None]
    receiver = Receiver(answer=lambda p: answers.pop(0) if answers else 204)
    async with serve(receiver) as url, rig(env, timeout_seconds=0.3) as r:
        created = await subscribe(r, url, receiver)
        await inbound(env, 1, "slow")
        await r.derive()
        await r.deliver_all()
        log = await r.subs.attempts(created["id"])

    assert [a["status_code"] for a in reversed(log)] == [None, 204]
    assert "Timeout" in (log[-1]["error"] or "")
    assert bodies(receiver.accepted) == ["slow"]


async def test_a_channel_paused_and_resumed_is_a_channel_status_event(env: Any) -> None:
    receiver = Receiver()
    async with serve(receiver) as url, rig(env) as r:
        created = await r.subs.create(url=url, event_types=["channel.status"])
        receiver.secret = created["secret"]
        await env.channels.update(env.channel_id, paused=True)
        await env.channels.update(env.channel_id, name="renamed")  # not a state change
        await env.channels.update(env.channel_id, paused=False)
        r.clock.now = time.time()
        await r.deliver_all()

    assert [(p["type"], p["data"]["paused"]) for p in receiver.accepted] == [
        ("channel.status", True),
        ("channel.status", False),
    ]
    assert receiver.accepted[0]["data"]["channel_id"] == env.channel_id


async def test_the_fanout_cursor_is_not_a_sink_to_list_or_forget(env: Any) -> None:
    async with rig(env):
        replication = Replication(env.db, sinks="")
        status = await replication.status()

        with pytest.raises(ReplicationError, match="not a sink"):
            await replication.forget("@subscriptions")

    assert status["sinks"] == []
