"""``/v1/subscriptions`` over HTTP: admin only, the secret shown once, bad URLs and event
types refused with 422, ping signed as Standard Webhooks says, pause and resume, the
delivery log and replay, and (with workers) a received message reaching the receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from wahub.embedded import free_port
from wahub.runtime import Hub
from webhook_catcher import serve_handler

Headers = Callable[[str], dict[str, str]]


class Receiver:
    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[tuple[bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.status)


def serve(receiver: Receiver) -> contextlib.AbstractAsyncContextManager[str]:
    return serve_handler(receiver.handle, "/hook")


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, **extra: Any
) -> httpx.Response:
    body = {"url": url, "event_types": ["message.received"], **extra}
    return await client.post("/v1/subscriptions", json=body, headers=headers)


@pytest.mark.parametrize("role", ["agent", "viewer"])
async def test_only_admins_manage_subscriptions(
    client: httpx.AsyncClient, headers_for: Headers, role: str
) -> None:
    created = await create(client, headers_for("admin"), "http://127.0.0.1:9/hook")
    sub_id = created.json()["id"]
    calls = [
        client.get("/v1/subscriptions", headers=headers_for(role)),
        create(client, headers_for(role), "http://127.0.0.1:9/hook"),
        client.get(f"/v1/subscriptions/{sub_id}", headers=headers_for(role)),
        client.patch(f"/v1/subscriptions/{sub_id}", json={}, headers=headers_for(role)),
        client.post(f"/v1/subscriptions/{sub_id}/pause", headers=headers_for(role)),
        client.post(f"/v1/subscriptions/{sub_id}/ping", headers=headers_for(role)),
        client.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=headers_for(role)),
        client.delete(f"/v1/subscriptions/{sub_id}", headers=headers_for(role)),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/hook", "not a valid URL"),
    ],
)
async def test_a_url_that_is_not_http_or_is_link_local_is_422(
    client: httpx.AsyncClient, headers_for: Headers, url: str, says: str
) -> None:
    response = await create(client, headers_for("admin"), url)

    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]


async def test_an_unknown_event_type_is_422_listing_the_known_ones(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await create(
        client, headers_for("admin"), "http://127.0.0.1:9/", event_types=["message.eaten"]
    )

    assert response.status_code == 422
    assert "lead.updated" in response.text


async def test_the_secret_is_shown_once_and_ping_verifies_with_it(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    receiver = Receiver()
    async with serve(receiver) as url:
        created = await create(client, headers_for("admin"), url, description="crm")
        assert created.status_code == 201, created.text
        sub = created.json()
        listed = await client.get("/v1/subscriptions", headers=headers_for("admin"))
        got = await client.get(f"/v1/subscriptions/{sub['id']}", headers=headers_for("admin"))
        ping = await client.post(
            f"/v1/subscriptions/{sub['id']}/ping", headers=headers_for("admin")
        )

    assert sub["secret"].startswith("whsec_")
    assert "secret" not in got.json()
    assert sub["secret"] not in listed.text
    assert ping.json()["ok"] is True
    assert ping.json()["status_code"] == 204
    body, headers = receiver.requests[0]
    verified = Webhook(sub["secret"]).verify(body, headers)
    assert verified["type"] == "ping"
    assert headers["webhook-id"] == ping.json()["webhook_id"]


async def test_a_ping_answered_410_pauses_and_resume_undoes_it(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    async with serve(Receiver(status=410)) as url:
        sub = (await create(client, admin, url)).json()
        ping = await client.post(f"/v1/subscriptions/{sub['id']}/ping", headers=admin)
    paused = await client.get(f"/v1/subscriptions/{sub['id']}", headers=admin)
    resumed = await client.post(f"/v1/subscriptions/{sub['id']}/resume", headers=admin)

    assert ping.json()["outcome"] == "gone"
    assert paused.json()["paused"] is True
    assert "410" in paused.json()["paused_reason"]
    assert resumed.json()["paused"] is False
    assert resumed.json()["paused_reason"] is None


async def test_a_ping_to_nothing_listening_reports_the_error_not_a_hang(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    sub = (await create(client, admin, f"http://127.0.0.1:{free_port()}/hook")).json()

    ping = await client.post(f"/v1/subscriptions/{sub['id']}/ping", headers=admin)

    assert ping.status_code == 200
    assert ping.json()["ok"] is False
    assert ping.json()["status_code"] is None
    assert ping.json()["error"]


async def test_update_delete_and_unknown_ids(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    sub = (await create(client, admin, "http://127.0.0.1:9/hook")).json()

    patched = await client.patch(
        f"/v1/subscriptions/{sub['id']}",
        json={"event_types": ["lead.updated", "message.status"], "channel_ids": ["ch_1"]},
        headers=admin,
    )
    bad = await client.patch(
        f"/v1/subscriptions/{sub['id']}", json={"url": "gopher://x"}, headers=admin
    )
    deleted = await client.delete(f"/v1/subscriptions/{sub['id']}", headers=admin)
    again = await client.get(f"/v1/subscriptions/{sub['id']}", headers=admin)
    replay = await client.post(
        f"/v1/subscriptions/{sub['id']}/replay", json={"delivery_id": 1}, headers=admin
    )

    assert patched.json()["event_types"] == ["message.status", "lead.updated"]
    assert patched.json()["channel_ids"] == ["ch_1"]
    assert bad.status_code == 422
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert replay.status_code == 404


async def test_replay_needs_a_delivery_or_a_range(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    sub = (await create(client, admin, "http://127.0.0.1:9/hook")).json()

    response = await client.post(f"/v1/subscriptions/{sub['id']}/replay", json={}, headers=admin)

    assert response.status_code == 422
    assert "delivery_id" in response.json()["error"]["message"]


async def test_a_received_message_reaches_the_subscriber_with_workers_running(
    hub: Hub, client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    admin = headers_for("admin")
    receiver = Receiver()
    async with serve(receiver) as url:
        sub = (await create(client, admin, url)).json()
        # A second hub over the same database, this one with workers.
        worker_hub = Hub.build(hub.settings)
        await worker_hub.start(workers=True)
        try:
            await inject_inbound(worker_hub, channel["id"])
            deadline = time.monotonic() + 30
            while not (log := await worker_hub.subscriptions.attempts(sub["id"])):
                assert time.monotonic() < deadline, "no delivery logged within 30 s"
                await asyncio.sleep(0.05)
        finally:
            await worker_hub.stop()

    body, headers = receiver.requests[0]
    event = Webhook(sub["secret"]).verify(body, headers)
    assert event["type"] == "message.received"
    assert event["data"]["channel_id"] == channel["id"]
    assert log[0]["status_code"] == 204


async def inject_inbound(hub: Hub, channel_id: str) -> None:
    from wahub.domain.ids import new_id
    from wahub.store import messages as messages_q

    now = time.time()
    row = {
        "id": new_id("msg"),
        "channel_id": channel_id,
        "chat_id": "4915112345678@s.whatsapp.net",
        "direction": "in",
        "type": "text",
        "content": {"type": "text", "text": {"body": "hi there"}},
        "status": "received",
        "ordering_key": f"{channel_id}:4915112345678@s.whatsapp.net",
        "priority": 0,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }
    async with hub.db.transaction() as conn:
        await messages_q.insert_message(conn, row)


async def test_metrics_count_paused_subscriptions(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    sub = (await create(client, admin, "http://127.0.0.1:9/hook")).json()
    await create(client, admin, "http://127.0.0.1:9/other")
    await client.post(f"/v1/subscriptions/{sub['id']}/pause", headers=admin)

    text = (await client.get("/metrics")).text

    assert 'wahub_subscriptions{state="paused"} 1.0' in text
    assert 'wahub_subscriptions{state="active"} 1.0' in text
    assert 'wahub_event_deliveries{state="dead"} 0.0' in text
