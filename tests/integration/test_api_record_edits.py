"""``PATCH /v1/leads/{id}``, ``/v1/contacts/{id}`` and ``/v1/conversations/{id}`` over
HTTP: the change, the error envelope for bad input, roles, and the ``/v1/stream`` event."""

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


async def a_conversation(client: httpx.AsyncClient, hub: Hub, headers_for: Headers) -> Any:
    await post_and_process(client, hub, inbound_body("wamid.p1", "Hi"))
    (item,) = (await client.get("/v1/conversations", headers=headers_for("admin"))).json()["data"]
    return item


async def test_a_lead_is_marked_won_and_the_conversation_shows_it(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)

    patched = await client.patch(
        f"/v1/leads/{item['lead_id']}", json={"status": "won"}, headers=headers_for("admin")
    )

    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "won"
    (listed,) = (await client.get("/v1/conversations", headers=headers_for("admin"))).json()["data"]
    assert listed["lead_status"] == "won"


async def test_an_unknown_lead_status_is_a_422_listing_the_allowed_ones(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)

    response = await client.patch(
        f"/v1/leads/{item['lead_id']}", json={"status": "hot"}, headers=headers_for("admin")
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["allowed"] == [
        "new",
        "contacted",
        "replied",
        "qualified",
        "won",
        "lost",
    ]


async def test_an_empty_patch_is_a_422_naming_the_fields(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)

    response = await client.patch(
        f"/v1/contacts/{item['contact_id']}", json={}, headers=headers_for("admin")
    )

    assert response.status_code == 422, response.text
    assert "name, attributes" in response.json()["error"]["message"]


async def test_oversized_contact_attributes_are_a_413_naming_the_limit(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)

    response = await client.patch(
        f"/v1/contacts/{item['contact_id']}",
        json={"attributes": {"notes": "x" * 20_000}},
        headers=headers_for("admin"),
    )

    assert response.status_code == 413, response.text
    assert "16384-byte limit" in response.json()["error"]["message"]


async def test_viewers_cannot_patch_and_agents_get_404_for_what_they_do_not_see(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)
    routes = [
        (f"/v1/leads/{item['lead_id']}", {"status": "lost"}),
        (f"/v1/contacts/{item['contact_id']}", {"name": "K"}),
        (f"/v1/conversations/{item['id']}", {"read": True}),
    ]

    for path, body in routes:
        viewer = await client.patch(path, json=body, headers=headers_for("viewer"))
        agent = await client.patch(path, json=body, headers=headers_for("agent"))
        assert (viewer.status_code, agent.status_code) == (403, 404), path


async def test_assigning_a_conversation_streams_it_to_the_new_assignee(
    client: httpx.AsyncClient,
    live_server: str,
    hub: Hub,
    headers_for: Headers,
    api_keys: dict[str, str],
) -> None:
    item = await a_conversation(client, hub, headers_for)
    agent = await hub.access.authenticate(api_keys["agent"])
    url = live_server.replace("http://", "ws://") + "/v1/stream"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers_for("agent")) as ws,
    ):
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "subscribed"
        patched = await client.patch(
            f"/v1/conversations/{item['id']}",
            json={"assigned_user_id": agent.user_id, "read": True},
            headers=headers_for("admin"),
        )
        assert patched.status_code == 200, patched.text
        async with asyncio.timeout(TIMEOUT):
            event = await ws.receive_json()
            while event["type"] != "conversation.updated":
                event = await ws.receive_json()

    assert (event["conversation_id"], event["assigned_user_id"]) == (item["id"], agent.user_id)
    assert event["unread_count"] == 0
    assert event["chat_id"] == f"{SENDER}@s.whatsapp.net"
    mine = await client.get(f"/v1/conversations/{item['id']}", headers=headers_for("agent"))
    assert mine.status_code == 200, "an assigned conversation is the agent's to see"


async def test_a_key_limited_to_another_channel_neither_sees_nor_edits_the_conversation(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    item = await a_conversation(client, hub, headers_for)
    other = await hub.channels.create(
        name="other", phone_number_id="2", access_token="t", base_url="http://127.0.0.1:9"
    )
    created = await hub.access.create_key(user_name="crm", role="admin", channels=[other["id"]])
    headers = {"Authorization": f"Bearer {created.key}"}

    listed = await client.get("/v1/conversations", headers=headers)
    patched = await client.patch(
        f"/v1/leads/{item['lead_id']}", json={"status": "won"}, headers=headers
    )
    notes = await client.get("/v1/notifications", headers=headers)

    assert listed.json()["data"] == []
    assert patched.status_code == 404
    assert (notes.json()["data"], notes.json()["unread_count"]) == ([], 0)


async def test_the_stream_of_a_channel_limited_key_carries_only_its_channels_events(
    live_server: str, hub: Hub, channel: dict[str, Any]
) -> None:
    other = await hub.channels.create(
        name="other", phone_number_id="2", access_token="t", base_url="http://127.0.0.1:9"
    )
    created = await hub.access.create_key(user_name="crm", role="viewer", channels=[other["id"]])
    url = live_server.replace("http://", "ws://") + "/v1/stream"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {created.key}"}) as ws,
    ):
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "subscribed"
        hub.realtime.publish(
            {"type": "conversation.updated", "conversation_id": "c1", "channel_id": channel["id"]},
            {"type": "campaign.stats", "campaign_id": "cmp1"},
            {"type": "lead.updated", "lead_id": "l1", "channel_ids": [channel["id"]]},
            {"type": "lead.updated", "lead_id": "l2", "channel_ids": [channel["id"], other["id"]]},
            {"type": "conversation.updated", "conversation_id": "c2", "channel_id": other["id"]},
        )
        first = await ws.receive_json(timeout=TIMEOUT)
        second = await ws.receive_json(timeout=TIMEOUT)

    assert (first["type"], first["lead_id"]) == ("lead.updated", "l2")
    assert (second["type"], second["conversation_id"]) == ("conversation.updated", "c2")
