"""Inbound over HTTP: a signed Cloud API message webhook becomes a conversation that
``/v1/conversations`` shows (to whom it may), a ``/v1/stream`` event, and the sender
rules answer through ``POST /v1/messages``; ``/v1/auto-replies`` is admin-only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import pytest

from inbound import SENDER, inbound_body, post_and_process
from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]

TIMEOUT = 10.0

pytestmark = pytest.mark.usefixtures("channel")


async def test_an_inbound_message_is_a_conversation_admins_list_read_and_mark_read(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.in1", "Hi, is this available?"))

    listed = await client.get("/v1/conversations", headers=headers_for("viewer"))
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["data"]
    assert item["chat_id"] == f"{SENDER}@s.whatsapp.net"
    assert (item["unread_count"], item["contact_name"], item["lead_status"]) == (1, "Kerry", "new")
    assert item["last_message_preview"] == "Hi, is this available?"
    assert item["service_window_until"] is not None

    one = await client.get(f"/v1/conversations/{item['id']}", headers=headers_for("admin"))
    assert one.status_code == 200, one.text
    detail = one.json()
    assert detail["contact"]["phone"] == f"+{SENDER}"
    assert detail["lead"]["status"] == "new"
    (message,) = detail["messages"]
    assert (message["direction"], message["status"], message["text"]) == (
        "in",
        "received",
        "Hi, is this available?",
    )
    assert message["sender_name"] == "Kerry"

    read = await client.post(f"/v1/conversations/{item['id']}/read", headers=headers_for("admin"))
    assert read.status_code == 200, read.text
    again = await client.get("/v1/conversations?unread=true", headers=headers_for("admin"))
    assert again.json()["data"] == []


async def test_agents_do_not_see_conversations_of_chats_not_assigned_to_them(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.in1", "hello"))
    (item,) = (await client.get("/v1/conversations", headers=headers_for("admin"))).json()["data"]

    listed = await client.get("/v1/conversations", headers=headers_for("agent"))
    one = await client.get(f"/v1/conversations/{item['id']}", headers=headers_for("agent"))
    read = await client.post(f"/v1/conversations/{item['id']}/read", headers=headers_for("agent"))
    viewer_read = await client.post(
        f"/v1/conversations/{item['id']}/read", headers=headers_for("viewer")
    )

    assert listed.json()["data"] == []
    assert one.status_code == 404
    assert read.status_code == 404
    assert viewer_read.status_code == 403


async def test_an_opted_out_contact_is_refused_with_its_own_error_code(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.stop", "STOP"))

    response = await client.post(
        "/v1/messages",
        json={"to": f"+{SENDER}", "type": "text", "text": {"body": "one more offer"}},
        headers=headers_for("admin"),
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "opted_out"
    assert "opted out" in error["message"]


async def test_the_stream_announces_the_message_and_its_conversation(
    client: httpx.AsyncClient, live_server: str, hub: Hub, headers_for: Headers
) -> None:
    url = live_server.replace("http://", "ws://") + "/v1/stream"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers_for("viewer")) as ws,
    ):
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "subscribed"
        await post_and_process(client, hub, inbound_body("wamid.live", "are you there?"))

        seen: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(TIMEOUT):
            while len(seen) < 2:
                event = await ws.receive_json()
                if event["type"] in ("message.received", "conversation.updated"):
                    seen[event["type"]] = event

    received, updated = seen["message.received"], seen["conversation.updated"]
    assert received["chat_id"] == f"{SENDER}@s.whatsapp.net"
    assert (received["direction"], received["provider_message_id"]) == ("in", "wamid.live")
    assert updated["conversation_id"] == received["conversation_id"] is not None
    assert updated["unread_count"] == 1


async def test_auto_reply_rules_are_admin_only_and_validated(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    rule = {
        "name": "prices",
        "match_kind": "keyword",
        "pattern": "price",
        "reply_text": "See example.com/prices",
    }

    as_agent = await client.post("/v1/auto-replies", json=rule, headers=headers_for("agent"))
    bad = await client.post(
        "/v1/auto-replies",
        json={**rule, "match_kind": "regex", "pattern": "(unclosed"},
        headers=headers_for("admin"),
    )
    no_hours = await client.post(
        "/v1/auto-replies",
        json={**rule, "match_kind": "outside_hours"},
        headers=headers_for("admin"),
    )
    created = await client.post("/v1/auto-replies", json=rule, headers=headers_for("admin"))

    assert as_agent.status_code == 403
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "pattern"
    assert no_hours.status_code == 422
    assert no_hours.json()["error"]["details"]["field"] == "business_hours"
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    assert created.json()["cooldown_seconds"] == 86400

    patched = await client.patch(
        f"/v1/auto-replies/{rule_id}", json={"enabled": False}, headers=headers_for("admin")
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["enabled"] is False
    deleted = await client.delete(f"/v1/auto-replies/{rule_id}", headers=headers_for("admin"))
    assert deleted.status_code == 204
    listed = await client.get("/v1/auto-replies", headers=headers_for("admin"))
    assert listed.json()["data"] == []


async def test_an_inbound_keyword_gets_its_auto_reply_queued(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    rule = {"name": "p", "match_kind": "keyword", "pattern": "price", "reply_text": "€10"}
    assert (
        await client.post("/v1/auto-replies", json=rule, headers=headers_for("admin"))
    ).status_code == 201

    await post_and_process(client, hub, inbound_body("wamid.q", "price?"))

    (item,) = (await client.get("/v1/conversations", headers=headers_for("admin"))).json()["data"]
    assert (item["last_message_direction"], item["last_message_preview"]) == ("out", "€10")
    messages = (await client.get("/v1/messages", headers=headers_for("admin"))).json()["data"]
    reply = next(m for m in messages if m["direction"] == "out")
    assert (reply["status"], reply["source"]) == ("queued", "auto_reply")
