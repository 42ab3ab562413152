"""GET /v1/messages/search over HTTP: results with chat names and snippets, ISO or unix
times, and any input answered 200 or 422, never 500."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from wahub.domain.ids import new_id
from wahub.runtime import Hub
from wahub.store import messages as q

Headers = Callable[[str], dict[str, str]]


async def store(hub: Hub, channel_id: str, chat_id: str, text: str, created_at: float) -> str:
    message_id = new_id("msg")
    async with hub.db.transaction() as conn:
        await q.insert_message(
            conn,
            {
                "id": message_id,
                "channel_id": channel_id,
                "chat_id": chat_id,
                "direction": "in",
                "type": "text",
                "content": {"type": "text", "text": {"body": text}},
                "text": text,
                "status": "received",
                "ordering_key": f"in:{message_id}",
                "priority": 0,
                "attempts": 0,
                "next_attempt_at": created_at,
                "created_at": created_at,
                "updated_at": created_at,
            },
        )
    return message_id


async def test_search_returns_messages_with_chat_name_and_snippet(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, channel: dict[str, Any], groups: Any
) -> None:
    message_id = await store(hub, channel["id"], groups.assigned, "the shipment left today", 1.0)

    response = await client.get(
        "/v1/messages/search", params={"q": "shipment"}, headers=headers_for("admin")
    )

    assert response.status_code == 200, response.text
    [hit] = response.json()["data"]
    assert hit["message"]["id"] == message_id
    assert hit["chat_name"] == "Assigned"
    assert "[[shipment]]" in hit["snippet"]


async def test_time_filters_take_iso_or_unix_seconds(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, channel: dict[str, Any]
) -> None:
    chat = "4915112345678@s.whatsapp.net"
    old = await store(hub, channel["id"], chat, "budget draft", 1_700_000_000.0)
    new = await store(hub, channel["id"], chat, "budget final", time.time())

    iso = await client.get(
        "/v1/messages/search",
        params={"q": "budget", "since": "2024-01-01T00:00:00Z"},
        headers=headers_for("admin"),
    )
    unix = await client.get(
        "/v1/messages/search",
        params={"q": "budget", "until": "1700000001", "chat_id": "+4915112345678"},
        headers=headers_for("admin"),
    )
    bad = await client.get(
        "/v1/messages/search",
        params={"q": "budget", "since": "yesterday"},
        headers=headers_for("admin"),
    )
    naive = await client.get(
        "/v1/messages/search",
        params={"q": "budget", "since": "2024-01-01T00:00:00"},
        headers=headers_for("admin"),
    )

    assert [h["message"]["id"] for h in iso.json()["data"]] == [new]
    assert [h["message"]["id"] for h in unix.json()["data"]] == [old]
    assert bad.status_code == 422
    assert naive.status_code == 422


@pytest.mark.parametrize(
    "query",
    ['"', "*", "AND OR", "'; drop table messages; --", "NEAR(", "a:b", "%", "\\", "x" * 500],
)
async def test_any_query_is_200_or_422_never_500(
    client: httpx.AsyncClient, headers_for: Headers, query: str
) -> None:
    response = await client.get(
        "/v1/messages/search", params={"q": query}, headers=headers_for("agent")
    )

    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["message"]


async def test_search_needs_a_key_and_a_query(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    anonymous = await client.get("/v1/messages/search", params={"q": "x"})
    missing = await client.get("/v1/messages/search", headers=headers_for("viewer"))
    too_long = await client.get(
        "/v1/messages/search", params={"q": "x" * 501}, headers=headers_for("viewer")
    )

    assert anonymous.status_code == 401
    assert missing.status_code == 422
    assert too_long.status_code == 422
