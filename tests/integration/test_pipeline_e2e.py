"""End to end over real HTTP: the API, the worker, the Cloud API adapter, the sandbox
provider and its signed status webhooks, all on one SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pgcluster import PostgresCluster
from wahub.config import Settings
from wahub.domain.credentials import CredentialCipher, generate_key
from wahub.domain.ids import new_id
from wahub.embedded import Stack, add_sandbox_channel, embedded_stack, free_port
from wahub.providers.sandbox import SandboxConfig
from wahub.store import channels as channel_q
from wahub.store import inbox as inbox_q
from wahub.store import messages as message_q

FINAL = ("delivered", "read", "failed")


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'e2e.db'}",
        "port": free_port(),
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        "uncertain_grace_seconds": 30.0,
    }
    base.update(overrides)
    return Settings(**base)


async def post_messages(
    stack: Stack, key: str, bodies: list[dict[str, Any]], concurrency: int = 8
) -> list[str]:
    """POST every body in order per chat (one client per chat lane) and return the ids."""
    ids: list[str] = [""] * len(bodies)
    lanes: dict[str, list[int]] = defaultdict(list)
    for i, body in enumerate(bodies):
        lanes[body["to"]].append(i)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

        async def lane(indexes: list[int]) -> None:
            for i in indexes:
                async with http.post(f"{stack.url}/v1/messages", json=bodies[i]) as resp:
                    payload = await resp.json()
                    assert resp.status == 202, payload
                    ids[i] = payload["id"]

        await asyncio.gather(*(lane(ix) for ix in lanes.values()))
    return ids


async def wait_final(stack: Stack, count: int, timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        async with stack.hub.db.read() as conn:
            statuses = await message_q.statuses_by_id(conn)
        if sum(1 for s in statuses.values() if s in FINAL) >= count:
            return statuses
        if time.monotonic() > deadline:
            pytest.fail(f"not final after {timeout} s: {Counter(statuses.values())}")
        await asyncio.sleep(0.05)


async def settle(stack: Stack) -> dict[str, str]:
    """Wait until the sandbox delivered every webhook and the inbox applied them all."""
    assert stack.sandbox is not None
    await stack.sandbox.wait_webhooks_idle(10)
    deadline = time.monotonic() + 10
    while True:
        async with stack.hub.db.read() as conn:
            pending = (await inbox_q.count_by_status(conn)).get("pending", 0)
            statuses = await message_q.statuses_by_id(conn)
        if pending == 0 or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.05)


def text(to: str, body: str) -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": body}}


@pytest.fixture(params=["sqlite", "postgresql"])
async def stack_factory(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresCluster | None
) -> AsyncIterator[Any]:
    """Start a whole stack (hub, HTTP, sandbox) on each store backend."""
    opened: list[Any] = []
    database: str | None = None
    if request.param == "postgresql":
        if postgres is None:
            pytest.skip("no PostgreSQL server on this machine")
        database = "e2e_" + new_id("db").split("_", 1)[1]
        postgres_url = postgres.new_database(database)

    async def make(sandbox: SandboxConfig, **overrides: Any) -> tuple[Stack, str]:
        if database is not None:
            overrides.setdefault("database_url", postgres_url)
        cm = embedded_stack(settings_for(tmp_path, **overrides), sandbox_config=sandbox)
        stack = await cm.__aenter__()
        opened.append(cm)
        assert stack.sandbox_url is not None
        await add_sandbox_channel(stack.hub, stack.sandbox_url, rate_per_second=500)
        key = (await stack.hub.access.create_key(user_name="e2e", role="admin")).key
        return stack, key

    yield make
    for cm in reversed(opened):
        await cm.__aexit__(None, None, None)
    if database is not None and postgres is not None:
        postgres.drop_database(database)


async def test_every_message_is_read_and_received_exactly_once_in_chat_order(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(SandboxConfig(latency_ms=2, latency_jitter_ms=2, seed=1))
    chats = [f"+49151234567{i:02d}" for i in range(10)]
    bodies = [text(chats[i % 10], f"m{i}") for i in range(200)]
    ids = await post_messages(stack, key, bodies)
    await wait_final(stack, len(ids))
    statuses = await settle(stack)
    assert stack.sandbox is not None
    assert Counter(statuses.values()) == {"read": 200}, "every status webhook applied"
    received = Counter(s.biz_opaque_callback_data for s in stack.sandbox.sends)
    assert set(received) == set(ids), "the sandbox got every message"
    assert max(received.values()) == 1, "and none twice"
    order: dict[str, list[str]] = defaultdict(list)
    for send in stack.sandbox.sends:
        order[send.to].append(send.body["text"]["body"])
    for chat in chats:
        expected = [b["text"]["body"] for b in bodies if b["to"] == chat]
        assert order[chat.lstrip("+")] == expected, f"chat {chat} received out of order"


async def test_retryable_provider_errors_are_retried_until_sent_without_duplicates(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(
        SandboxConfig(rate_5xx=0.3, rate_throughput_130429=0.1, rate_http_429=0.1, seed=2)
    )
    ids = await post_messages(stack, key, [text(f"+4915123456{i:03d}", "x") for i in range(60)])
    statuses = await wait_final(stack, len(ids))
    assert stack.sandbox is not None
    assert stack.sandbox.stats()["rejected_total"] > 0, "the knobs did inject errors"
    received = Counter(s.biz_opaque_callback_data for s in stack.sandbox.sends)
    assert set(received) == set(ids)
    assert max(received.values()) == 1
    assert all(statuses[i] in ("delivered", "read") for i in ids)


async def test_permanent_error_fails_at_once_with_code_and_readable_reason(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(SandboxConfig(access_token="another-token"))
    [message_id] = await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1)
    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, message_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["attempts"] == 1, "a permanent error is not retried"
    assert row["error_code"] == "190"
    assert "token" in row["error_title"].lower()


async def test_recipient_side_failure_arrives_by_webhook(stack_factory: Any) -> None:
    stack, key = await stack_factory(SandboxConfig(fail_fraction=1.0))
    [message_id] = await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1)
    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, message_id)
        history = [e["status"] for e in await message_q.list_events(conn, message_id)]
    assert row is not None
    assert row["status"] == "failed"
    assert row["error_code"] == "131026"
    assert "sent" in history, "it was sent before it failed"


async def test_timeout_makes_a_send_uncertain_and_its_webhook_settles_it_without_resend(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(
        # The webhook comes after our client gave up, so the send is uncertain first.
        SandboxConfig(rate_timeout=1.0, timeout_hold_s=3.0, webhook_delay_ms=1500),
        provider_timeout_seconds=0.5,
    )
    [message_id] = await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1, timeout=20)
    await settle(stack)
    assert stack.sandbox is not None
    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, message_id)
        history = [e["status"] for e in await message_q.list_events(conn, message_id)]
    assert row is not None
    assert "uncertain" in history, "the timeout was not taken as proof of failure"
    assert row["status"] == "read", "the provider's webhook settled it"
    assert len(stack.sandbox.sends) == 1, "nothing was sent twice"


async def test_duplicated_and_shuffled_webhooks_end_in_the_same_state(stack_factory: Any) -> None:
    stack, key = await stack_factory(
        SandboxConfig(duplicate_fraction=1.0, shuffle=True, webhook_delay_ms=20, seed=3)
    )
    ids = await post_messages(stack, key, [text(f"+4915123456{i:03d}", "x") for i in range(30)])
    await wait_final(stack, len(ids))
    statuses = await settle(stack)
    async with stack.hub.db.read() as conn:
        events = [await message_q.list_events(conn, i) for i in ids]
    assert Counter(statuses.values()) == {"read": 30}, "read wins whatever the order"
    for history in events:
        webhook = Counter(e["status"] for e in history if e["source"] == "webhook")
        assert max(webhook.values()) == 1, f"a duplicated webhook was recorded twice: {webhook}"


async def test_a_reply_to_our_just_queued_message_quotes_its_provider_id(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(SandboxConfig(latency_ms=50, seed=3))
    [quoted_id] = await post_messages(stack, key, [text("+4915123456700", "your order")])
    reply = {**text("+4915123456700", "and the invoice"), "reply_to": quoted_id}
    [reply_id] = await post_messages(stack, key, [reply])

    await wait_final(stack, 2)

    assert stack.sandbox is not None
    sends = {s.biz_opaque_callback_data: s for s in stack.sandbox.sends}
    assert sends[reply_id].body["context"] == {"message_id": sends[quoted_id].wamid}


async def test_a_reply_held_behind_a_message_that_then_fails_fails_saying_why(
    stack_factory: Any,
) -> None:
    # Every send is refused (wrong token, 190), after a latency far longer than posting
    # the reply takes, so the reply is accepted while its quoted message is in flight.
    stack, key = await stack_factory(SandboxConfig(access_token="another-token", latency_ms=5000))
    [quoted_id] = await post_messages(stack, key, [text("+4915123456700", "your order")])
    reply = {**text("+4915123456700", "and the invoice"), "reply_to": quoted_id}
    [reply_id] = await post_messages(stack, key, [reply])

    statuses = await wait_final(stack, 2)

    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, reply_id)
    assert row is not None
    assert statuses[quoted_id] == statuses[reply_id] == "failed"
    assert row["error_code"] == "reply_to_not_sent"
    assert row["error_title"].startswith(f"reply_to {quoted_id} was never sent (failed)")
    assert stack.sandbox is not None
    assert stack.sandbox.stats()["rejected_total"] == 1, "the reply never reached the provider"


async def channel_row(stack: Stack, channel_id: str) -> dict[str, Any]:
    async with stack.hub.db.read() as conn:
        row = await channel_q.get_channel(conn, channel_id, include_removed=True)
    assert row is not None
    return row


async def test_a_successful_send_proves_the_channel_connected(stack_factory: Any) -> None:
    stack, key = await stack_factory(SandboxConfig())
    [channel] = await stack.hub.channels.list_all()
    assert channel["status"] == "unverified"

    await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1)

    proved = await channel_row(stack, channel["id"])
    assert proved["status"] == "connected"
    assert proved["verified_at"] is not None


async def test_a_refused_token_leaves_the_channel_unverified(stack_factory: Any) -> None:
    stack, key = await stack_factory(SandboxConfig(access_token="another-token"))
    [channel] = await stack.hub.channels.list_all()

    await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1)

    assert (await channel_row(stack, channel["id"]))["status"] == "unverified"


async def test_credentials_sealed_with_another_key_fail_the_send_naming_the_channel(
    stack_factory: Any,
) -> None:
    stack, key = await stack_factory(SandboxConfig(), max_attempts=1)
    [channel] = await stack.hub.channels.list_all()
    async with stack.hub.db.transaction() as conn:
        foreign = CredentialCipher([generate_key()]).seal({"access_token": "sandbox-token"})
        await channel_q.update_channel(conn, channel["id"], {"credentials": foreign})

    [message_id] = await post_messages(stack, key, [text("+4915123456700", "hi")])
    await wait_final(stack, 1)

    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, message_id)
    assert row is not None
    assert (row["status"], row["error_code"]) == ("failed", "credentials_unreadable")
    assert f"'sandbox' ({channel['id']})" in row["error_title"]
    assert stack.sandbox is not None
    assert stack.sandbox.sends == [], "nothing was sent without a token"


async def test_a_message_queued_again_on_a_removed_channel_fails_instead_of_waiting(
    stack_factory: Any,
) -> None:
    stack, _key = await stack_factory(SandboxConfig())
    [channel] = await stack.hub.channels.list_all()
    await stack.hub.channels.remove(channel["id"])
    assert stack.hub.outbox is not None
    await stack.hub.outbox.refresh_channels()  # the worker has seen the removal
    # As a retry or a resend of a send in flight at removal would leave it.
    now = time.time()
    async with stack.hub.db.transaction() as conn:
        await message_q.insert_message(
            conn,
            {
                "id": "msg_after_removal",
                "channel_id": channel["id"],
                "chat_id": "4915123456700@s.whatsapp.net",
                "direction": "out",
                "type": "text",
                "content": {"type": "text", "text": {"body": "hi"}},
                "status": "queued",
                "ordering_key": "4915123456700@s.whatsapp.net",
                "priority": 0,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            },
        )
    stack.hub.outbox_wakeup.notify()

    await wait_final(stack, 1)

    async with stack.hub.db.read() as conn:
        row = await message_q.get_message(conn, "msg_after_removal")
    assert row is not None
    assert (row["status"], row["error_code"]) == ("failed", "channel_removed")
    assert stack.sandbox is not None
    assert stack.sandbox.sends == []
