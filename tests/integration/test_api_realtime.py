"""``/v1/stream`` (WebSocket) and ``/v1/stream/sse`` over a real uvicorn server: status
events arrive, agents see only their chats, bad keys are refused, subscriptions end
with the connection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
import httpx
import pytest

from wahub.api import realtime
from wahub.domain.content import SendRequest, TextBody
from wahub.domain.status import Status
from wahub.runtime import Hub
from wahub.store import messages as messages_q

Headers = Callable[[str], dict[str, str]]

PERSON = "+14155552671"
TIMEOUT = 10.0


def ws_url(base: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return base.replace("http://", "ws://") + "/v1/stream" + (f"?{query}" if query else "")


async def send_as(hub: Hub, key: str, to: str) -> str:
    actor = await hub.access.authenticate(key)
    request = SendRequest(to=to, type="text", text=TextBody(body="hello"))
    return str((await hub.messaging.send(actor, request)).message["id"])


async def mark(hub: Hub, message_id: str, status: Status) -> None:
    """Apply a provider status the way the inbox processor does, then wake the fan-out."""
    observed = messages_q.ObservedStatus(
        f"wamid.{message_id}", status, int(time.time()), tracking_id=message_id
    )
    async with hub.db.transaction() as conn:
        await messages_q.apply_statuses(conn, [observed], time.time())
    hub.realtime.poke()


async def next_status(ws: aiohttp.ClientWebSocketResponse, status: str) -> dict[str, Any]:
    """The next message.status event with ``status`` (earlier ones, e.g. queued, skipped)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            event: dict[str, Any] = await ws.receive_json()
            if event["type"] == "message.status" and event["event"] == status:
                return event


async def wait_for_no_subscribers(hub: Hub) -> None:
    async with asyncio.timeout(TIMEOUT):
        while hub.realtime._subs:
            await asyncio.sleep(0.02)


# --- WebSocket ---------------------------------------------------------------------------


@pytest.mark.usefixtures("channel")
async def test_websocket_pushes_a_status_change(
    live_server: str, hub: Hub, api_keys: dict[str, str], headers_for: Headers
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(live_server), headers=headers_for("viewer")) as ws,
    ):
        hello = await ws.receive_json(timeout=TIMEOUT)
        assert hello["type"] == "subscribed"
        assert hello["role"] == "viewer"
        message_id = await send_as(hub, api_keys["admin"], PERSON)

        await mark(hub, message_id, Status.SENT)
        event = await next_status(ws, "sent")

    assert event["message_id"] == message_id
    assert event["status"] == "sent"
    assert event["source"] == "webhook"
    assert event["chat_id"] == "14155552671@s.whatsapp.net"
    assert event["provider_message_id"] == f"wamid.{message_id}"
    assert "_sender_user_id" not in event
    assert datetime.fromisoformat(event["at"]).tzinfo is not None
    await wait_for_no_subscribers(hub)


async def test_agent_does_not_receive_events_of_unassigned_groups(
    live_server: str, hub: Hub, api_keys: dict[str, str], groups: Any
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(live_server, api_key=api_keys["agent"])) as ws,
    ):
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "subscribed"
        hidden = await send_as(hub, api_keys["admin"], groups.unassigned)
        visible = await send_as(hub, api_keys["admin"], groups.assigned)
        # The fan-out is in event order: once the later event arrives, the earlier
        # one has been offered to this subscriber too.
        await mark(hub, hidden, Status.SENT)
        await mark(hub, visible, Status.SENT)

        received: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while not any(e.get("event") == "sent" for e in received):
                received.append(await ws.receive_json())

    assert {e["message_id"] for e in received} == {visible}
    assert received[-1]["status"] == "sent"


async def test_agent_receives_events_of_messages_they_sent(
    live_server: str, hub: Hub, api_keys: dict[str, str], channel: dict[str, Any]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(live_server), headers={"X-API-Key": api_keys["agent"]}) as ws,
    ):
        assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "subscribed"
        own = await send_as(hub, api_keys["agent"], PERSON)
        await mark(hub, own, Status.DELIVERED)

        event = await next_status(ws, "delivered")

    assert event["message_id"] == own
    assert event["channel_id"] == channel["id"]


@pytest.mark.parametrize(
    "auth",
    [{}, {"headers": {"Authorization": "Bearer wh_bad"}}, {"params": {"api_key": "wh_bad"}}],
    ids=["no key", "bad header key", "bad query key"],
)
async def test_websocket_with_a_bad_key_is_closed_with_4401(
    live_server: str, hub: Hub, auth: dict[str, dict[str, str]]
) -> None:
    async with aiohttp.ClientSession() as session:
        url = ws_url(live_server, **auth.get("params", {}))
        async with session.ws_connect(url, headers=auth.get("headers")) as ws:
            message = await ws.receive(timeout=TIMEOUT)

            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == 4401
    assert not hub.realtime._subs


# --- server-sent events ------------------------------------------------------------------


async def read_frames(lines: AsyncIterator[str], count: int) -> list[str]:
    """The next ``count`` SSE frames (``data:`` payloads or ``:`` comments), in order."""
    frames: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        async for line in lines:
            if line:
                frames.append(line)
                if len(frames) == count:
                    break
    return frames


async def next_sse_status(lines: AsyncIterator[str], status: str) -> dict[str, Any]:
    """The next message.status event with ``status``; every frame before it must be data."""
    while True:
        (frame,) = await read_frames(lines, 1)
        assert frame.startswith("data: "), frame
        event: dict[str, Any] = json.loads(frame.removeprefix("data: "))
        if event["type"] == "message.status" and event["event"] == status:
            return event


@pytest.mark.usefixtures("channel")
async def test_sse_delivers_a_status_event(
    live_server: str, hub: Hub, api_keys: dict[str, str]
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=TIMEOUT) as client,
        client.stream("GET", "/v1/stream/sse", params={"api_key": api_keys["viewer"]}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        (hello,) = await read_frames(lines, 1)
        assert json.loads(hello.removeprefix("data: "))["type"] == "subscribed"
        message_id = await send_as(hub, api_keys["admin"], PERSON)
        await mark(hub, message_id, Status.SENT)

        event = await next_sse_status(lines, "sent")

    assert (event["type"], event["message_id"], event["status"]) == (
        "message.status",
        message_id,
        "sent",
    )
    assert "_sender_user_id" not in event
    await wait_for_no_subscribers(hub)


async def test_sse_sends_comment_heartbeats(
    live_server: str, api_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime, "HEARTBEAT_SECONDS", 0.05)

    async with (
        httpx.AsyncClient(base_url=live_server, timeout=TIMEOUT) as client,
        client.stream(
            "GET", "/v1/stream/sse", headers={"Authorization": f"Bearer {api_keys['admin']}"}
        ) as response,
    ):
        frames = await read_frames(response.aiter_lines(), 3)

    assert frames[1:] == [": heartbeat", ": heartbeat"]


async def test_sse_with_a_bad_key_is_401_in_the_error_shape(live_server: str, hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=TIMEOUT) as client:
        response = await client.get("/v1/stream/sse", params={"api_key": "wh_bad"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert not hub.realtime._subs
