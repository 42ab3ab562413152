"""PeriskopeChatDirectory over real HTTP against the sandbox's Periskope directory: paging,
single chats, id translation, and every error class the port promises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from paging import every_item
from wahub.domain.errors import NotFound, PermanentProviderError, RetryableProviderError
from wahub.providers.base import ChatInfo
from wahub.providers.periskope.adapter import PeriskopeChatDirectory
from wahub.providers.sandbox import (
    DEFAULT_CHAT_COUNT,
    Sandbox,
    SandboxConfig,
    default_chat_id,
)

API_KEY = SandboxConfig().periskope_api_key
ORG_PHONE = SandboxConfig().periskope_org_phone

StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]
Start = Callable[..., Awaitable[tuple[Sandbox, PeriskopeChatDirectory]]]


@pytest.fixture
def start(http: aiohttp.ClientSession, start_sandbox: StartSandbox) -> Start:
    """Start a sandbox with the given knobs and a directory for its Periskope phone."""

    async def go(
        *, api_key: str | None = API_KEY, org_phone: str = ORG_PHONE, **knobs: Any
    ) -> tuple[Sandbox, PeriskopeChatDirectory]:
        sandbox, url = await start_sandbox(**knobs)
        directory = PeriskopeChatDirectory(
            api_key=api_key or "unused",
            org_phone=org_phone,
            session=http,
            base_url=f"{url}/periskope",
            timeout_s=10.0,
        )
        return sandbox, directory

    return go


async def every_chat(directory: PeriskopeChatDirectory, limit: int) -> list[ChatInfo]:
    return await every_item(
        lambda offset: directory.list_chats(offset=offset, limit=limit), lambda page: page.chats
    )


@pytest.mark.parametrize("limit", [1000, 100, 7])
async def test_paging_returns_the_whole_directory_once(start: Start, limit: int) -> None:
    sandbox, directory = await start()

    chats = await every_chat(directory, limit)

    ids = [c.chat_id for c in chats]
    assert len(ids) == DEFAULT_CHAT_COUNT
    assert len(set(ids)) == DEFAULT_CHAT_COUNT, "no chat twice across pages"
    pages = -(-DEFAULT_CHAT_COUNT // limit)
    assert sandbox.periskope.stats()["calls"]["GET /chats"] == pages


async def test_ids_are_canonical_and_kinds_follow_them(start: Start) -> None:
    _, directory = await start()

    chats = await every_chat(directory, 2000)

    groups = [c for c in chats if c.kind == "group"]
    people = [c for c in chats if c.kind == "person"]
    assert groups
    assert people
    assert all(c.chat_id.endswith("@g.us") for c in groups)
    assert all(c.chat_id.endswith("@s.whatsapp.net") for c in people), "never @c.us"
    assert all(c.name for c in chats)


async def test_get_chat_by_canonical_or_periskope_id(start: Start) -> None:
    sandbox, directory = await start()
    person = default_chat_id(1)  # 9198...@c.us
    group = default_chat_id(0)

    by_canonical = await directory.get_chat(person.replace("@c.us", "@s.whatsapp.net"))
    by_periskope = await directory.get_chat(person)
    the_group = await directory.get_chat(group)

    expected = sandbox.periskope.chats[1]["chat_name"]
    assert by_canonical == by_periskope
    assert by_canonical.name == expected
    assert by_canonical.kind == "person"
    assert the_group.kind == "group"
    assert the_group.chat_id == group
    assert the_group.name == sandbox.periskope.chats[0]["chat_name"]


async def test_unknown_chat_is_not_found(start: Start) -> None:
    _, directory = await start()

    with pytest.raises(NotFound):
        await directory.get_chat("120363999999999999@g.us")


async def test_a_replaced_directory_is_served(start: Start, http: aiohttp.ClientSession) -> None:
    sandbox, directory = await start()
    assert sandbox.url is not None
    async with http.post(
        f"{sandbox.url}/_sandbox/periskope/chats",
        json=[{"chat_id": "4915112345678@c.us", "chat_name": "  "}],
    ) as response:
        assert response.status == 200

    chats = await every_chat(directory, 10)

    assert chats == [ChatInfo("4915112345678@s.whatsapp.net", None, "person")], (
        "a blank name is no name"
    )


@pytest.mark.parametrize(
    ("api_key", "org_phone"), [("wrong-key", ORG_PHONE), (API_KEY, "919999999999")]
)
async def test_wrong_key_or_phone_is_permanent_401(
    start: Start, api_key: str, org_phone: str
) -> None:
    _, directory = await start(api_key=api_key, org_phone=org_phone)

    with pytest.raises(PermanentProviderError) as caught:
        await directory.list_chats()

    assert caught.value.http_status == 401
    assert "wrong-key" not in repr(directory), "the key never shows in a repr"


async def test_429_is_retryable_with_retry_after(start: Start) -> None:
    _, directory = await start(periskope_fail_status=429, periskope_retry_after_s=7)

    with pytest.raises(RetryableProviderError) as listing:
        await directory.list_chats()
    with pytest.raises(RetryableProviderError) as single:
        await directory.get_chat(default_chat_id(0))

    assert listing.value.http_status == 429
    assert listing.value.retry_after == 7
    assert single.value.retry_after == 7


async def test_5xx_is_retryable(start: Start) -> None:
    _, directory = await start(periskope_fail_status=503)

    with pytest.raises(RetryableProviderError) as caught:
        await directory.get_chat(default_chat_id(3))

    assert caught.value.http_status == 503


async def test_unreachable_server_is_retryable(http: aiohttp.ClientSession) -> None:
    sandbox = Sandbox()
    url = await sandbox.start()
    await sandbox.stop()  # the port is now closed
    directory = PeriskopeChatDirectory(
        api_key="k", org_phone=ORG_PHONE, session=http, base_url=f"{url}/periskope"
    )

    with pytest.raises(RetryableProviderError):
        await directory.list_chats()


async def test_calls_are_counted_per_route(start: Start) -> None:
    sandbox, directory = await start()

    await directory.get_chat(default_chat_id(0))
    await directory.get_chat(default_chat_id(2))
    await directory.list_chats(limit=5)

    stats = sandbox.periskope.stats()
    assert stats["calls"] == {"GET /chats": 1, "GET /chats/{chat_id}": 2}
    assert stats["calls_total"] == 3
