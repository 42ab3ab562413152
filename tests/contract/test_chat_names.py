"""The chat-name cache on every store backend, against the sandbox's Periskope directory
over real HTTP: hits and misses, one provider call per chat however many ask at once,
failures remembered for a while, refresh counts, and which source's name wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sealing import TEST_CIPHER
from wahub.domain.errors import NotFound, ValidationError
from wahub.features.channels import Channels
from wahub.features.chat_names import ChatNames, RefreshFailed
from wahub.providers.registry import ProviderRegistry
from wahub.providers.sandbox import (
    DEFAULT_CHAT_COUNT,
    DEFAULT_GROUP_COUNT,
    Sandbox,
    SandboxConfig,
    default_chat_id,
)
from wahub.store import chat_names as q
from wahub.store.database import Database

GET_CHAT = "GET /chats/{chat_id}"
LIST_CHATS = "GET /chats"


class FakeClock:
    """A monotonic clock the test moves, so TTL expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    db: Database
    sandbox: Sandbox
    names: ChatNames
    channels: Channels
    clock: FakeClock
    channel_id: str

    def calls(self, route: str = GET_CHAT) -> int:
        return int(self.sandbox.periskope.stats()["calls"][route])

    async def stored(self, chat_id: str) -> dict[str, object] | None:
        async with self.db.read() as conn:
            return await q.get_chat_name(conn, chat_id)

    async def learn(self, chat_id: str, name: str, source: str) -> None:
        async with self.db.transaction() as conn:
            await q.learn_chat_name(conn, chat_id=chat_id, name=name, source=source, now=1.0)


@pytest.fixture
async def setup(db: Database) -> AsyncIterator[Setup]:
    sandbox = Sandbox(SandboxConfig())
    url = await sandbox.start()
    registry = ProviderRegistry(TEST_CIPHER, timeout_s=10)
    clock = FakeClock()
    names = ChatNames(db, registry, negative_ttl_s=60, refresh_backoff_s=0.01, clock=clock)
    names.max_refresh_wait_s = 0.01  # the sandbox's Retry-After is whole seconds
    channels = Channels(db, TEST_CIPHER)
    channel = await channels.create(
        name="periskope",
        kind="periskope",
        access_token=str(SandboxConfig().periskope_api_key),
        phone_number="+" + SandboxConfig().periskope_org_phone,
        base_url=f"{url}/periskope",
    )
    try:
        yield Setup(db, sandbox, names, channels, clock, str(channel["id"]))
    finally:
        await names.close()
        await registry.close()
        await sandbox.stop()


def canonical(index: int) -> str:
    return default_chat_id(index).replace("@c.us", "@s.whatsapp.net")


async def test_a_miss_asks_once_then_hits(setup: Setup) -> None:
    chat = canonical(1)
    expected = setup.sandbox.periskope.chats[1]["chat_name"]

    first = await setup.names.name_of(chat)
    second = await setup.names.name_of(chat)
    by_periskope_id = await setup.names.name_of(default_chat_id(1))

    assert first == second == by_periskope_id == expected
    assert setup.calls() == 1
    stats = setup.names.stats
    assert (stats.misses, stats.hits, stats.provider_calls) == (1, 2, 1)
    row = await setup.stored(chat)
    assert row is not None
    assert row["name_source"] == "provider"
    assert row["name_updated_at"] is not None
    assert row["kind"] == "person"
    assert row["channel_id"] is None, "a directory-only channel must not become the send channel"


async def test_twenty_concurrent_misses_make_one_provider_call(setup: Setup) -> None:
    # Latency keeps the first call open while the others arrive; nothing is timed.
    setup.sandbox.config.periskope_latency_ms = 300
    chat = default_chat_id(0)

    results = await asyncio.gather(*(setup.names.name_of(chat) for _ in range(20)))

    assert set(results) == {setup.sandbox.periskope.chats[0]["chat_name"]}
    assert setup.calls() == 1, "concurrent misses share one in-flight call"
    assert setup.names.stats.provider_calls == 1


async def test_concurrent_misses_for_different_chats_each_ask_once(setup: Setup) -> None:
    setup.sandbox.config.periskope_latency_ms = 100
    chats = [default_chat_id(i) for i in range(10)]

    results = await asyncio.gather(*(setup.names.name_of(c) for c in chats * 3))

    assert all(results)
    assert setup.calls() == 10


async def test_a_failure_is_remembered_for_the_ttl(setup: Setup) -> None:
    setup.sandbox.config.periskope_fail_status = 500
    chat = default_chat_id(2)

    assert await setup.names.name_of(chat) is None
    assert await setup.names.name_of(chat) is None
    assert await setup.names.name_of(chat) is None
    assert setup.calls() == 1, "a dead provider is asked once per TTL, not per message"
    assert setup.names.stats.provider_failures == 1

    setup.sandbox.config.periskope_fail_status = None
    setup.clock.now += 59
    assert await setup.names.name_of(chat) is None
    assert setup.calls() == 1

    setup.clock.now += 2
    assert await setup.names.name_of(chat) == setup.sandbox.periskope.chats[2]["chat_name"]
    assert setup.calls() == 2


async def test_retry_after_longer_than_the_ttl_wins_and_pauses_the_channel(setup: Setup) -> None:
    setup.sandbox.config.periskope_fail_status = 429
    setup.sandbox.config.periskope_retry_after_s = 300

    assert await setup.names.name_of(default_chat_id(3)) is None
    setup.sandbox.config.periskope_fail_status = None
    assert await setup.names.name_of(default_chat_id(4)) is None, "the channel is paused"
    setup.clock.now += 120
    assert await setup.names.name_of(default_chat_id(3)) is None, "Retry-After > TTL"
    assert setup.calls() == 1

    setup.clock.now += 200
    assert await setup.names.name_of(default_chat_id(3))
    assert setup.calls() == 2


async def test_an_unknown_chat_is_none_and_remembered(setup: Setup) -> None:
    chat = "120363999999999999@g.us"

    assert await setup.names.name_of(chat) is None
    assert await setup.names.name_of(chat) is None

    assert setup.calls() == 1
    assert setup.names.stats.provider_failures == 0, "not found is an answer, not a failure"


async def test_a_name_from_another_source_is_a_hit(setup: Setup) -> None:
    chat = default_chat_id(5)
    await setup.learn(chat.replace("@c.us", "@s.whatsapp.net"), "Known From Profile", "profile")

    assert await setup.names.name_of(chat) == "Known From Profile"
    assert setup.calls() == 0


async def test_not_a_chat_id_is_a_validation_error(setup: Setup) -> None:
    with pytest.raises(ValidationError):
        await setup.names.name_of("not a phone")
    assert setup.calls() == 0


async def test_refresh_counts_new_and_already_cached(setup: Setup) -> None:
    await setup.learn(canonical(1), "Mine", "api")
    await setup.learn(canonical(2), "From a message", "profile")
    await setup.learn(default_chat_id(0), "Old group name", "provider")

    first = await setup.names.refresh()
    second = await setup.names.refresh()

    assert first.as_seed() == {
        "status": "success",
        "total_chats": DEFAULT_CHAT_COUNT,
        "newly_cached": DEFAULT_CHAT_COUNT - 3,
        "already_cached": 3,
    }
    assert (second.total_chats, second.newly_cached, second.already_cached) == (
        DEFAULT_CHAT_COUNT,
        0,
        DEFAULT_CHAT_COUNT,
    )
    assert setup.calls(LIST_CHATS) == 2, "250 chats fit one 500-chat page per refresh"
    chats = setup.sandbox.periskope.chats
    row_api, row_profile, row_group = (
        await setup.stored(canonical(1)),
        await setup.stored(canonical(2)),
        await setup.stored(default_chat_id(0)),
    )
    assert row_api is not None
    assert row_profile is not None
    assert row_group is not None
    assert row_api["name"] == "Mine", "an admin's name beats the directory"
    assert row_profile["name"] == "From a message", "a profile name beats the directory"
    assert row_group["name"] == chats[0]["chat_name"], "the directory renames its own names"
    # Every chat is now a hit.
    for index in range(0, DEFAULT_CHAT_COUNT, 25):
        assert await setup.names.name_of(default_chat_id(index))
    assert setup.calls() == 0


async def test_refresh_pages_through_a_large_directory(setup: Setup) -> None:
    big = [
        {"chat_id": f"120363{500_000_000_000 + i:012d}@g.us", "chat_name": f"Group {i}"}
        for i in range(1234)
    ]
    setup.sandbox.periskope.set_chats(big)

    result = await setup.names.refresh()

    assert (result.total_chats, result.newly_cached) == (1234, 1234)
    assert setup.calls(LIST_CHATS) == 3


async def test_refresh_retries_a_throttled_page_then_gives_up(setup: Setup) -> None:
    setup.sandbox.config.periskope_fail_status = 429

    with pytest.raises(RefreshFailed):
        await setup.names.refresh()

    assert setup.calls(LIST_CHATS) == setup.names.refresh_attempts


async def test_refresh_recovers_from_a_flaky_provider(setup: Setup) -> None:
    setup.sandbox.config.periskope_fail_status = 503
    setup.sandbox.config.periskope_fail_rate = 0.5
    setup.sandbox.config.seed = 7
    setup.sandbox.periskope.reset()
    setup.names.refresh_attempts = 20

    result = await setup.names.refresh()

    assert result.total_chats == DEFAULT_CHAT_COUNT


async def test_refresh_of_an_unknown_channel_is_not_found(setup: Setup) -> None:
    with pytest.raises(NotFound):
        await setup.names.refresh("ch_nope")


async def test_cloud_api_channels_have_no_directory(setup: Setup) -> None:
    cloud = await setup.channels.create(
        name="meta", phone_number_id="pnid-x", access_token="t", base_url="http://127.0.0.1:1"
    )

    with pytest.raises(ValidationError, match="no chat directory"):
        await setup.names.refresh(str(cloud["id"]))
    # A channel that cannot name the chat hands the lookup to one that can.
    assert (
        await setup.names.name_of(canonical(7), str(cloud["id"]))
        == (setup.sandbox.periskope.chats[7]["chat_name"])
    )
    assert setup.calls() == 1


async def test_whapi_groups_are_named_through_the_group_lookup(setup: Setup) -> None:
    assert setup.sandbox.url is not None
    whapi = await setup.channels.create(
        name="whapi",
        kind="whapi",
        access_token=str(SandboxConfig().whapi_token),
        phone_number="+" + SandboxConfig().whapi_own_phone,
        base_url=f"{setup.sandbox.url}/whapi",
    )
    group = setup.sandbox.whapi.groups[0]

    name = await setup.names.name_of(group["id"], str(whapi["id"]))
    refreshed = await setup.names.refresh(str(whapi["id"]))

    assert name == group["name"]
    assert setup.sandbox.whapi.stats()["calls"]["GET /groups/{GroupID}"] == 1
    assert refreshed.total_chats == DEFAULT_GROUP_COUNT
    assert setup.calls() == 0, "the Periskope channel was not asked"


async def test_no_directory_at_all_means_no_call(db: Database) -> None:
    registry = ProviderRegistry(TEST_CIPHER)
    names = ChatNames(db, registry)
    try:
        assert await names.name_of("+4915112345678") is None
        with pytest.raises(ValidationError, match="no channel has a chat directory"):
            await names.refresh()
        assert names.stats.provider_calls == 0
    finally:
        await registry.close()


async def test_a_lookup_cancelled_by_its_caller_still_serves_the_others(setup: Setup) -> None:
    setup.sandbox.config.periskope_latency_ms = 300
    chat = default_chat_id(6)
    impatient = asyncio.create_task(setup.names.name_of(chat))
    patient = asyncio.create_task(setup.names.name_of(chat))
    await asyncio.sleep(0.05)

    impatient.cancel()

    assert await patient == setup.sandbox.periskope.chats[6]["chat_name"]
    assert setup.calls() == 1
