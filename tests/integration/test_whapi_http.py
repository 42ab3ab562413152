"""WhapiProvider over real HTTP against the sandbox's WHAPI channel: paging, groups,
linked ids, membership, text sends, and every error class the port promises."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from paging import every_item
from wahub.domain.errors import (
    NotFound,
    PermanentProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
    ValidationError,
)
from wahub.providers.base import GroupInfo, OutboundMessage
from wahub.providers.sandbox import (
    DEFAULT_GROUP_COUNT,
    LEFT_GROUP_INDICES,
    Sandbox,
    SandboxConfig,
    lid_for,
)
from wahub.providers.whapi.adapter import WhapiProvider

TOKEN = SandboxConfig().whapi_token
OWN_PHONE = "+" + SandboxConfig().whapi_own_phone

StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]
Start = Callable[..., Awaitable[tuple[Sandbox, WhapiProvider]]]


@pytest.fixture
def start(http: aiohttp.ClientSession, start_sandbox: StartSandbox) -> Start:
    """Start a sandbox with the given knobs and a provider for its WHAPI channel."""

    async def go(
        *,
        token: str | None = TOKEN,
        own_phone: str | None = OWN_PHONE,
        timeout_s: float = 10.0,
        **knobs: Any,
    ) -> tuple[Sandbox, WhapiProvider]:
        sandbox, url = await start_sandbox(**knobs)
        provider = WhapiProvider(
            token=token or "unused",
            session=http,
            base_url=f"{url}/whapi",
            own_phone=own_phone,
            timeout_s=timeout_s,
        )
        return sandbox, provider

    return go


async def all_groups(provider: WhapiProvider, count: int) -> list[GroupInfo]:
    return await every_item(
        lambda offset: provider.list_groups(offset=offset, count=count), lambda page: page.groups
    )


def text(body: str, recipient: str, **fields: Any) -> OutboundMessage:
    return OutboundMessage(
        tracking_id="msg_01",
        recipient=recipient,
        is_group=recipient.endswith("@g.us"),
        content={"type": "text", "text": {"body": body}},
        **fields,
    )


async def test_paging_reaches_every_group_once_in_order(start: Start) -> None:
    sandbox, provider = await start()
    groups = await all_groups(provider, count=7)
    assert [g.chat_id for g in groups] == [g["id"] for g in sandbox.whapi.groups]
    assert len(groups) == DEFAULT_GROUP_COUNT
    first = await provider.list_groups(count=7)
    assert first.total == DEFAULT_GROUP_COUNT
    assert sandbox.whapi.stats()["calls"]["GET /groups"] == 10  # 9 pages + the one above


async def test_one_page_of_500_holds_them_all(start: Start) -> None:
    _, provider = await start()
    page = await provider.list_groups(count=500)
    assert len(page.groups) == page.total == DEFAULT_GROUP_COUNT
    empty = await provider.list_groups(offset=DEFAULT_GROUP_COUNT)
    assert empty.groups == ()
    assert empty.total == DEFAULT_GROUP_COUNT


async def test_get_group_matches_the_directory(start: Start) -> None:
    sandbox, provider = await start()
    raw = sandbox.whapi.groups[0]
    group = await provider.get_group(raw["id"])
    assert group.chat_id == raw["id"]
    assert group.name == raw["name"]
    assert len(group.participants) == len(raw["participants"])
    assert [p.rank for p in group.participants] == [p["rank"] for p in raw["participants"]]
    assert group.we_are_member is True
    # The same group listed and fetched reads the same.
    listed = (await provider.list_groups(count=1)).groups[0]
    assert listed == group


async def test_bare_group_id_gets_the_suffix(start: Start) -> None:
    sandbox, provider = await start()
    raw_id = sandbox.whapi.groups[3]["id"]
    group = await provider.get_group(raw_id.removesuffix("@g.us"))
    assert group.chat_id == raw_id


async def test_linked_ids_are_parsed_as_lids(start: Start) -> None:
    sandbox, provider = await start()
    groups = await all_groups(provider, count=100)
    lid_members = [p for g in groups for p in g.participants if p.lid is not None]
    raw_lids = [
        p["id"] for g in sandbox.whapi.groups for p in g["participants"] if "@lid" in p["id"]
    ]
    assert lid_members
    assert sorted(p.lid for p in lid_members if p.lid) == sorted(raw_lids)
    assert all(p.phone is None for p in lid_members)
    phones = [p.phone for g in groups for p in g.participants if p.phone is not None]
    assert all(phone.startswith("+") and phone[1:].isdigit() for phone in phones)


async def test_groups_we_left_are_not_ours(start: Start) -> None:
    sandbox, provider = await start()
    groups = await all_groups(provider, count=100)
    left = {g.chat_id for g in groups if not g.we_are_member}
    assert left == {sandbox.whapi.groups[i]["id"] for i in LEFT_GROUP_INDICES}
    fetched = await provider.get_group(sandbox.whapi.groups[LEFT_GROUP_INDICES[0]]["id"])
    assert fetched.we_are_member is False
    assert all(p.phone != OWN_PHONE for p in fetched.participants)


async def test_without_own_phone_every_group_counts_as_ours(start: Start) -> None:
    sandbox, provider = await start(own_phone=None)
    group = await provider.get_group(sandbox.whapi.groups[LEFT_GROUP_INDICES[0]]["id"])
    assert group.we_are_member is True


async def test_unknown_group_is_not_found(start: Start) -> None:
    _, provider = await start()
    with pytest.raises(NotFound) as caught:
        await provider.get_group("120363000000000000@g.us")
    assert caught.value.details["http_status"] == 404


async def test_malformed_group_id_is_permanent(start: Start) -> None:
    _, provider = await start()
    with pytest.raises(PermanentProviderError) as caught:
        await provider.get_group("12@g.us")
    assert caught.value.http_status == 400


async def test_bad_page_arguments_are_refused_before_any_call(start: Start) -> None:
    sandbox, provider = await start()
    for kwargs in ({"count": 0}, {"count": 501}, {"offset": -1}):
        with pytest.raises(ValidationError):
            await provider.list_groups(**kwargs)
    assert sandbox.whapi.stats()["calls_total"] == 0


async def test_rate_limit_is_retryable_with_retry_after(start: Start) -> None:
    sandbox, provider = await start(whapi_rate_limit=2, whapi_rate_window_s=30)
    group_id = sandbox.whapi.groups[0]["id"]
    await provider.get_group(group_id)
    await provider.list_groups()
    with pytest.raises(RetryableProviderError) as caught:
        await provider.get_group(group_id)
    assert caught.value.http_status == 429
    assert caught.value.retry_after is not None
    assert 29 <= caught.value.retry_after <= 30
    with pytest.raises(RetryableProviderError):
        await provider.send(text("hi", "4915112345678"))
    assert sandbox.whapi.stats()["rate_limited"] == 2
    assert sandbox.sends == []


async def test_rate_limit_window_reopens(start: Start) -> None:
    _, provider = await start(whapi_rate_limit=1, whapi_rate_window_s=0.2)
    await provider.list_groups(count=1)
    with pytest.raises(RetryableProviderError) as caught:
        await provider.list_groups(count=1)
    assert caught.value.retry_after == 1.0  # whole seconds, at least 1
    await asyncio.sleep(0.25)
    await provider.list_groups(count=1)


async def test_injected_failure_hits_only_the_named_group(start: Start) -> None:
    sandbox, provider = await start()
    failing, healthy = sandbox.whapi.groups[5]["id"], sandbox.whapi.groups[6]["id"]
    sandbox.config.whapi_fail_groups = (failing,)
    with pytest.raises(RetryableProviderError) as caught:
        await provider.get_group(failing)
    assert caught.value.http_status == 500
    assert (await provider.get_group(healthy)).chat_id == healthy
    sandbox.config.whapi_fail_groups = ()
    assert (await provider.get_group(failing)).chat_id == failing


async def test_failing_listing_is_retryable(start: Start) -> None:
    _, provider = await start(whapi_fail_list=True)
    with pytest.raises(RetryableProviderError) as caught:
        await provider.list_groups()
    assert caught.value.http_status == 500


async def test_wrong_token_is_permanent(start: Start) -> None:
    sandbox, provider = await start(token="wrong-token")
    with pytest.raises(PermanentProviderError) as caught:
        await provider.list_groups()
    assert caught.value.http_status == 401
    assert "token" in caught.value.message
    with pytest.raises(PermanentProviderError):
        await provider.send(text("hi", "4915112345678"))
    assert sandbox.whapi.stats()["refused"] == {"unauthorized": 2}
    assert sandbox.sends == []


async def test_slow_read_is_retryable(start: Start) -> None:
    _, provider = await start(whapi_latency_ms=2000, timeout_s=0.3)
    with pytest.raises(RetryableProviderError, match="TimeoutError"):
        await provider.list_groups()


async def test_send_text_is_recorded_by_the_sandbox(start: Start) -> None:
    sandbox, provider = await start()
    result = await provider.send(text("hello", "4915112345678", reply_to="QUOTED-ID"))
    assert result.wa_id == "4915112345678"
    [record] = sandbox.sends
    assert record.provider == "whapi"
    assert record.wamid == result.provider_message_id
    assert record.to == "4915112345678"
    assert record.body == {
        "to": "4915112345678",
        "body": "hello",
        "quoted": "QUOTED-ID",
        "no_link_preview": True,
    }
    assert sandbox.stats()["accepted"] == 1
    assert sandbox.whapi.stats()["sent"] == 1


async def test_send_to_a_group_we_are_in_and_to_one_we_left(start: Start) -> None:
    sandbox, provider = await start()
    ours = sandbox.whapi.groups[0]["id"]
    left = sandbox.whapi.groups[LEFT_GROUP_INDICES[0]]["id"]
    result = await provider.send(text("to the group", ours))
    assert result.wa_id is None  # a group has no wa_id; its JID is already the chat id
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(text("to the group", left))
    assert caught.value.http_status == 403
    assert [s.to for s in sandbox.sends] == [ours]
    assert sandbox.sends[0].wa_id == ours


async def test_message_ids_are_unique(start: Start) -> None:
    _, provider = await start()
    results = await asyncio.gather(
        *(provider.send(text(f"n{i}", "4915112345678")) for i in range(20))
    )
    assert len({r.provider_message_id for r in results}) == 20


async def test_non_text_is_refused_without_a_call(start: Start) -> None:
    sandbox, provider = await start()
    image = OutboundMessage(
        tracking_id="msg_02",
        recipient="4915112345678",
        is_group=False,
        content={"type": "image", "image": {"link": "https://x.test/a.png"}},
    )
    with pytest.raises(PermanentProviderError, match="only text"):
        await provider.send(image)
    assert sandbox.whapi.stats()["calls_total"] == 0


async def test_send_timeout_after_the_request_left_is_outcome_unknown(start: Start) -> None:
    _, provider = await start(whapi_latency_ms=2000, timeout_s=0.3)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.send(text("hi", "4915112345678"))


async def test_unreachable_whapi_is_retryable_for_sends_and_reads(
    http: aiohttp.ClientSession,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port once the socket is closed: connection refused.
    provider = WhapiProvider(token="t", session=http, base_url=f"http://127.0.0.1:{port}/whapi")
    with pytest.raises(RetryableProviderError, match="not reached"):
        await provider.send(text("hi", "4915112345678"))
    with pytest.raises(RetryableProviderError):
        await provider.list_groups()


async def test_lids_for_phones(start: Start) -> None:
    _, provider = await start()
    found = await provider.lids_for(["+49 151 1234 5678", "5511987654321"])
    assert found == {
        "+49 151 1234 5678": lid_for("4915112345678"),
        "5511987654321": lid_for("5511987654321"),
    }
    assert await provider.lids_for([]) == {}
    with pytest.raises(ValidationError):
        await provider.lids_for(["12"])


async def test_a_replaced_directory_is_served(start: Start, http: aiohttp.ClientSession) -> None:
    sandbox, provider = await start()
    groups = [
        {
            "id": "120363000000000001@g.us",
            "name": "Custom",
            "participants": [
                {"id": "4915112345678@s.whatsapp.net", "rank": "creator"},
                {"id": OWN_PHONE.removeprefix("+"), "rank": "member"},
                {"id": "76699677012110@lid", "rank": "admin"},
            ],
        }
    ]
    async with http.post(f"{sandbox.url}/_sandbox/whapi/groups", json=groups) as response:
        assert response.status == 200
        assert await response.json() == {"groups": 1}
    page = await provider.list_groups()
    assert page.total == 1
    [group] = page.groups
    assert group.name == "Custom"
    assert group.we_are_member is True
    assert [(p.phone, p.lid, p.rank) for p in group.participants] == [
        ("+4915112345678", None, "creator"),
        (OWN_PHONE, None, "member"),
        (None, "76699677012110@lid", "admin"),
    ]
