"""The crash counter: what the SIGKILL tests (tests/integration/test_crash*.py) post,
and how they count what the standalone sandbox received.

A careful client posts every chat's messages one after the other (the next one only
once the previous one was accepted), each with its own Idempotency-Key, retrying a 503
or a dropped connection with the same key. So the order a chat's messages must reach
the provider in is the order they were posted in, and the count is exact: every
accepted message must be in the sandbox's record once, whatever its final status
says. A message ``failed`` that the provider never received is a loss like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import func, select

from wahub.store.database import Database
from wahub.store.schema import messages

# A kill leaves the API away until its process is back: a post keeps trying that long
# (generous: on a busy machine starting a Python process has taken a minute).
POST_DEADLINE_SECONDS = 240.0


def chat_phone(chat: int) -> str:
    return f"+4915123{chat:06d}"


class ChatPoster:
    """Posts ``total`` messages over ``chats`` chats: message ``i`` goes to chat
    ``i % chats`` as that chat's message number ``i // chats``. Each chat posts in order;
    all of them together at most ``per_second`` messages a second, so posting spans the
    kills. ``channel_for(chat)`` picks the channel (None: the hub's default)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        hub_url: str,
        *,
        total: int,
        chats: int,
        per_second: float,
        key_prefix: str,
        channel_ids: list[str] | None = None,
    ) -> None:
        self.http = http
        self.url = f"{hub_url}/v1/messages"
        self.total = total
        self.chats = chats
        self.per_second = per_second
        self.key_prefix = key_prefix
        self.channel_ids = channel_ids
        self.ids: dict[int, str] = {}
        self.retried: Counter[str] = Counter()

    async def run(self) -> None:
        started = time.monotonic()

        async def post_chat(chat: int) -> None:
            for i in range(chat, self.total, self.chats):
                await asyncio.sleep(max(0.0, started + i / self.per_second - time.monotonic()))
                await self.post(i)

        await asyncio.gather(*(post_chat(chat) for chat in range(self.chats)))

    async def post(self, i: int) -> None:
        chat = i % self.chats
        body: dict[str, Any] = {"to": chat_phone(chat), "text": {"body": f"crash test {i}"}}
        if self.channel_ids:
            body["channel_id"] = self.channel_ids[chat % len(self.channel_ids)]
        headers = {"Idempotency-Key": f"{self.key_prefix}-{i}"}
        delay = 0.05
        deadline = time.monotonic() + POST_DEADLINE_SECONDS
        while True:
            try:
                async with self.http.post(self.url, json=body, headers=headers) as resp:
                    if resp.status in (200, 202):
                        message_id = (await resp.json())["id"]
                        previous = self.ids.setdefault(i, message_id)
                        assert previous == message_id, "a retried POST made a second message"
                        return
                    text = await resp.text()
                    assert resp.status == 503, f"POST answered {resp.status}: {text}"
                    self.retried["503"] += 1
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                # The process died mid-answer (or before): the same key again.
                self.retried[type(exc).__name__] += 1
            assert time.monotonic() < deadline, f"message {i} was never accepted"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


@dataclass
class Tally:
    """What the sandbox received against what the hub accepted."""

    accepted: int
    lost: list[int] = field(default_factory=list)  # message numbers never received
    duplicated: dict[int, int] = field(default_factory=dict)  # number -> times received
    unknown: int = 0  # sends of ids the hub never accepted
    out_of_order: dict[int, list[int]] = field(default_factory=dict)  # chat -> received order

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost {len(self.lost)} of {self.accepted} (e.g. {self.lost[:5]})")
        if self.duplicated:
            found.append(f"sent twice: {len(self.duplicated)}")
        if self.unknown:
            found.append(f"sends of messages never accepted: {self.unknown}")
        if self.out_of_order:
            chat, order = next(iter(self.out_of_order.items()))
            found.append(f"{len(self.out_of_order)} chats out of order (chat {chat}: {order[:12]})")
        return found


def tally(poster: ChatPoster, sends: list[dict[str, Any]]) -> Tally:
    """Count the sandbox's record (``GET /_sandbox/sends``, in the order it accepted
    them) against every message ``poster`` got accepted."""
    number = {message_id: i for i, message_id in poster.ids.items()}
    result = Tally(accepted=len(number))
    received: Counter[int] = Counter()
    per_chat: dict[int, list[int]] = {}
    for send in sends:
        i = number.get(send["biz_opaque_callback_data"])
        if i is None:
            result.unknown += 1
            continue
        received[i] += 1
        if received[i] == 1:
            per_chat.setdefault(i % poster.chats, []).append(i)
    result.lost = sorted(set(number.values()) - set(received))
    result.duplicated = {i: n for i, n in received.items() if n > 1}
    result.out_of_order = {
        chat: order for chat, order in per_chat.items() if order != sorted(order)
    }
    return result


async def claimed_by(db: Database, pid: int) -> Counter[str]:
    """Messages still claimed by the (dead) process ``pid``, by status: after a SIGKILL,
    what its claims were at the moment it died (nothing of its own changes them until
    their lease expires). Worker identities are ``host:pid:nonce``."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(messages.c.status, func.count())
            .where(
                messages.c.lease_owner.like(f"%:{pid}:%"),
                messages.c.status.in_(("queued", "sending")),
            )
            .group_by(messages.c.status)
        )
    return Counter({str(status): int(n) for status, n in rows})


def judge(
    poster: ChatPoster,
    sends: list[dict[str, Any]],
    claimed_at_kill: list[Counter[str]],
    *,
    kills: int,
    messages_posted: int,
    story: str,
) -> None:
    """The crash tests' verdict, after printing what happened (``story``: the run's
    timings and counts, for the log): every kill happened and some interrupted claimed
    work (a test that kills nothing mid-send proves nothing), every post made a message,
    and the sandbox's record shows nothing lost, twice or out of order."""
    count = tally(poster, sends)
    interrupted = sum(claimed_at_kill, Counter[str]())
    print(
        f"{story}; posts retried {dict(poster.retried)}; "
        f"claimed at each kill {[dict(c) for c in claimed_at_kill]}; "
        f"lost {len(count.lost)}, duplicated {len(count.duplicated)}, "
        f"chats out of order {len(count.out_of_order)}"
    )
    assert len(claimed_at_kill) == kills
    assert interrupted.total() > 0, "no kill interrupted claimed work: the test proved nothing"
    assert len(poster.ids) == messages_posted, (
        f"{messages_posted} posts made {len(poster.ids)} messages"
    )
    assert not count.problems(), "; ".join(count.problems())
