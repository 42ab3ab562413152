"""The sandbox's WHAPI channel over raw HTTP: WHAPI's shapes and validation, auth, the
rate limit, failure injection, and the control routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from wahub.providers.sandbox import DEFAULT_GROUP_COUNT, Sandbox, SandboxConfig, lid_for

TOKEN = SandboxConfig().whapi_token
AUTH = {"Authorization": f"Bearer {TOKEN}"}

StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = AUTH,
    **kwargs: Any,
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.json(), dict(response.headers)


def assert_whapi_error(payload: Any, status: int) -> str:
    error = payload["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], str)
    return str(error["details"])


async def test_groups_list_defaults_and_shape(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups")
    assert status == 200
    assert payload["count"] == 100
    assert payload["offset"] == 0
    assert payload["total"] == DEFAULT_GROUP_COUNT
    assert len(payload["groups"]) == DEFAULT_GROUP_COUNT
    group = payload["groups"][0]
    for key in ("id", "name", "type", "participants_count", "participants", "timestamp"):
        assert key in group
    assert {"id", "rank"} <= set(group["participants"][0])

    status, payload, _ = await call(
        http, "GET", f"{sandbox.url}/whapi/groups", params={"count": "10", "offset": "55"}
    )
    assert status == 200
    assert [g["id"] for g in payload["groups"]] == [g["id"] for g in sandbox.whapi.groups[55:]]

    status, payload, _ = await call(
        http, "GET", f"{sandbox.url}/whapi/groups", params={"offset": "600"}
    )
    assert (status, payload["groups"], payload["total"]) == (200, [], DEFAULT_GROUP_COUNT)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"count": "0"}, "count"),
        ({"count": "501"}, "count"),
        ({"count": "ten"}, "count"),
        ({"count": "2.5"}, "count"),
        ({"count": "-1"}, "count"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
async def test_bad_page_parameters_are_400(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, params: dict[str, str], field: str
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups", params=params)
    assert status == 400
    assert field in assert_whapi_error(payload, 400)
    assert sandbox.whapi.stats()["refused"] == {"invalid": 1}


@pytest.mark.parametrize(
    "group_id",
    ["123@g.us", "120363271212442249", "120363271212442249@s.whatsapp.net", "abcdefghijk@g.us"],
)
async def test_malformed_group_id_is_400(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, group_id: str
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups/{group_id}")
    assert status == 400
    assert "GroupID" in assert_whapi_error(payload, 400)


async def test_group_by_id_and_unknown_group(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    old_style = next(g for g in sandbox.whapi.groups if "-" in g["id"])
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups/{old_style['id']}")
    assert (status, payload) == (200, old_style)
    status, payload, _ = await call(
        http, "GET", f"{sandbox.url}/whapi/groups/120363000000000000@g.us"
    )
    assert status == 404
    assert_whapi_error(payload, 404)


async def test_token_by_header_or_query_and_401_otherwise(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    url = f"{sandbox.url}/whapi/groups"
    assert (await call(http, "GET", url, headers=None))[0] == 401
    assert (await call(http, "GET", url, headers={"Authorization": "Bearer nope"}))[0] == 401
    assert (await call(http, "GET", url, headers={"Authorization": TOKEN or ""}))[0] == 401
    status, payload, _ = await call(http, "GET", url, headers=None, params={"token": "nope"})
    assert status == 401
    assert_whapi_error(payload, 401)
    assert (await call(http, "GET", url, headers=None, params={"token": TOKEN}))[0] == 200
    assert sandbox.whapi.stats()["refused"] == {"unauthorized": 4}

    sandbox.config.whapi_token = None
    assert (await call(http, "GET", url, headers=None))[0] == 200


async def test_send_text_is_answered_and_recorded(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    own = sandbox.config.whapi_own_phone
    body = {"to": "4915112345678", "body": "hello", "quoted": "Q-1", "typing_time": 0}
    status, payload, _ = await call(http, "POST", f"{sandbox.url}/whapi/messages/text", json=body)
    assert status == 200
    assert payload["sent"] is True
    message = payload["message"]
    assert message["from_me"] is True
    assert message["type"] == "text"
    assert message["chat_id"] == "4915112345678@s.whatsapp.net"
    assert message["text"] == {"body": "hello"}
    assert message["from"] == own
    assert message["context"] == {"quoted_id": "Q-1"}
    assert isinstance(message["timestamp"], int)
    [record] = sandbox.sends
    assert (record.provider, record.wamid, record.body) == ("whapi", message["id"], body)
    assert record.phone_number_id == own

    async with http.get(f"{sandbox.url}/_sandbox/sends") as response:
        sends = (await response.json())["sends"]
    assert sends[0]["provider"] == "whapi"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "hi"}, "to"),
        ({"to": "+4915112345678", "body": "hi"}, "to"),
        ({"to": "12345", "body": "hi"}, "to"),
        ({"to": "4915112345678"}, "body"),
        ({"to": "4915112345678", "body": "   "}, "body"),
        ({"to": "4915112345678", "body": 5}, "body"),
        ({"to": "4915112345678", "body": "hi", "quoted": 5}, "quoted"),
        ({"to": "4915112345678", "body": "hi", "typing_time": 61}, "typing_time"),
        ({"to": "4915112345678", "body": "hi", "no_link_preview": "yes"}, "no_link_preview"),
        (["to"], "object"),
    ],
)
async def test_invalid_send_is_400_and_not_recorded(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, body: Any, field: str
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(http, "POST", f"{sandbox.url}/whapi/messages/text", json=body)
    assert status == 400
    assert field in assert_whapi_error(payload, 400)
    assert sandbox.sends == []


async def test_send_body_that_is_not_json_is_400(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(
        http, "POST", f"{sandbox.url}/whapi/messages/text", data=b"{nope"
    )
    assert status == 400
    assert "JSON" in assert_whapi_error(payload, 400)


async def test_send_to_unknown_group_is_403(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(
        http,
        "POST",
        f"{sandbox.url}/whapi/messages/text",
        json={"to": "120363000000000000@g.us", "body": "hi"},
    )
    assert status == 403
    assert "participant" in assert_whapi_error(payload, 403)


async def test_rate_limit_answers_429_with_retry_after_until_the_window_ends(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox(whapi_rate_limit=3, whapi_rate_window_s=0.3)
    url = f"{sandbox.url}/whapi/groups"
    statuses = [(await call(http, "GET", url, params={"count": "1"}))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, payload, headers = await call(http, "GET", url)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert_whapi_error(payload, 429)
    # Unauthorised requests are refused before they can use the budget.
    assert (await call(http, "GET", url, headers=None))[0] == 401
    await asyncio.sleep(0.35)
    assert (await call(http, "GET", url))[0] == 200
    stats = sandbox.whapi.stats()
    assert stats["rate_limited"] == 1
    assert stats["calls"]["GET /groups"] == 6


async def test_injected_failures_through_the_config_endpoint(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    failing = sandbox.whapi.groups[2]["id"]
    async with http.post(
        f"{sandbox.url}/_sandbox/config",
        json={"whapi_fail_groups": [failing], "whapi_fail_list": True, "whapi_latency_ms": 1},
    ) as response:
        assert response.status == 200
        config = (await response.json())["config"]
    assert config["whapi_fail_groups"] == [failing]
    assert config["whapi_token"] == "***"
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups/{failing}")
    assert status == 500
    assert "whapi_fail_groups" in assert_whapi_error(payload, 500)
    assert (await call(http, "GET", f"{sandbox.url}/whapi/groups"))[0] == 500
    other = sandbox.whapi.groups[3]["id"]
    assert (await call(http, "GET", f"{sandbox.url}/whapi/groups/{other}"))[0] == 200
    assert sandbox.whapi.stats()["refused"] == {"server_error": 2}


async def test_lids_endpoints(http: aiohttp.ClientSession, start_sandbox: StartSandbox) -> None:
    sandbox, _ = await start_sandbox()
    status, payload, _ = await call(
        http,
        "GET",
        f"{sandbox.url}/whapi/contacts/lids",
        params={"ContactIDList": "4915112345678,5511987654321"},
    )
    assert status == 200
    assert payload == {
        "4915112345678": {"lid": lid_for("4915112345678")},
        "5511987654321": {"lid": lid_for("5511987654321")},
    }
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/contacts/lids/4915112345678")
    assert (status, payload) == (200, {"lid": lid_for("4915112345678")})
    for params in ({}, {"ContactIDList": "12"}, {"ContactIDList": "4915112345678,+49"}):
        status, payload, _ = await call(
            http, "GET", f"{sandbox.url}/whapi/contacts/lids", params=params
        )
        assert status == 400
        assert_whapi_error(payload, 400)


async def test_control_routes_replace_inspect_and_reset_the_directory(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    default_ids = [g["id"] for g in sandbox.whapi.groups]
    status, payload, _ = await call(
        http, "GET", f"{sandbox.url}/_sandbox/whapi/groups", headers=None
    )
    assert status == 200
    assert payload["count"] == DEFAULT_GROUP_COUNT
    assert [g["id"] for g in payload["groups"]] == default_ids

    bad = [{"id": "1@g.us", "name": "x", "participants": []}]
    status, payload, _ = await call(
        http, "POST", f"{sandbox.url}/_sandbox/whapi/groups", headers=None, json=bad
    )
    assert status == 400
    assert payload["error"]["code"] == "invalid_groups"
    assert "groups[0].id" in payload["error"]["message"]
    assert len(sandbox.whapi.groups) == DEFAULT_GROUP_COUNT  # unchanged

    new = [{"id": "120363000000000001@g.us", "name": "Only", "participants": []}]
    status, payload, _ = await call(
        http, "POST", f"{sandbox.url}/_sandbox/whapi/groups", headers=None, json=new
    )
    assert (status, payload) == (200, {"groups": 1})
    status, payload, _ = await call(http, "GET", f"{sandbox.url}/whapi/groups")
    assert payload["total"] == 1
    assert payload["groups"][0]["participants_count"] == 0

    status, stats, _ = await call(http, "GET", f"{sandbox.url}/_sandbox/whapi/stats", headers=None)
    assert stats["calls"]["GET /groups"] == 1
    assert stats["groups"] == 1

    async with http.post(f"{sandbox.url}/_sandbox/reset") as response:
        assert response.status == 200
    assert [g["id"] for g in sandbox.whapi.groups] == default_ids
    assert sandbox.whapi.stats()["calls_total"] == 0


async def test_cloud_api_sends_and_whapi_sends_share_the_log(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, _ = await start_sandbox()
    cloud = {
        "messaging_product": "whatsapp",
        "to": "4915112345678",
        "type": "text",
        "text": {"body": "cloud"},
    }
    async with http.post(f"{sandbox.url}/v21.0/123/messages", json=cloud) as response:
        assert response.status == 200
    await call(
        http,
        "POST",
        f"{sandbox.url}/whapi/messages/text",
        json={"to": "4915112345678", "body": "whapi"},
    )
    assert [s.provider for s in sandbox.sends] == ["cloudapi", "whapi"]
    assert sandbox.stats()["accepted"] == 2
