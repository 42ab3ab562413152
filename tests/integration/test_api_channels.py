"""The channel routes: refusals with their status codes, channels by id or name,
update (PATCH) and removal (DELETE, 409 while messages wait unless ``force``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from wahub.embedded import SANDBOX_TOKEN, add_sandbox_channel
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]


async def test_an_empty_token_is_422_naming_the_field(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/channels",
        headers=headers_for("admin"),
        json={"name": "x", "phone_number_id": "1", "access_token": "  "},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "access_token"


async def test_a_duplicate_name_or_number_is_409(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    for body, field in [
        ({"name": "main", "phone_number_id": "2"}, "name"),
        ({"name": "other", "phone_number_id": channel["phone_number_id"]}, "phone_number_id"),
    ]:
        response = await client.post(
            "/v1/channels", headers=headers_for("admin"), json={**body, "access_token": "t"}
        )
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "duplicate_channel"
        assert error["details"] == {"field": field, "channel": channel["id"]}


async def test_a_new_channel_is_unverified(client: httpx.AsyncClient, headers_for: Headers) -> None:
    response = await client.post(
        "/v1/channels",
        headers=headers_for("admin"),
        json={"name": "new", "phone_number_id": "7", "access_token": "t"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "unverified"
    assert response.json()["verified_at"] is None


async def test_a_channel_is_read_by_name_or_id(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    for ref in ("main", channel["id"]):
        response = await client.get(f"/v1/channels/{ref}", headers=headers_for("agent"))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == channel["id"]
    missing = await client.get("/v1/channels/nope", headers=headers_for("agent"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_templates_are_registered_on_a_channel_by_name(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/channels/main/templates",
        headers=headers_for("admin"),
        json={"name": "order_update", "language": "en_US", "body_parameters": 1},
    )
    assert response.status_code == 201, response.text
    assert response.json()["channel_id"] == channel["id"]
    listed = await client.get("/v1/channels/main/templates", headers=headers_for("viewer"))
    assert [t["name"] for t in listed.json()["data"]] == ["order_update"]


async def test_patch_renames_pauses_and_retokens(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, channel: dict[str, Any]
) -> None:
    response = await client.patch(
        "/v1/channels/main",
        headers=headers_for("admin"),
        json={
            "name": "primary",
            "paused": True,
            "rate_per_second": 20,
            "access_token": "fresh-token-9876",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["paused"], body["rate_per_second"]) == ("primary", True, 20)
    assert body["status"] == "unverified"
    assert "fresh-token-9876" not in response.text
    row = await hub.channels.get("primary")
    assert row["id"] == channel["id"]


async def test_patch_is_admin_only_and_checks_its_body(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    agent = await client.patch("/v1/channels/main", headers=headers_for("agent"), json={})
    assert agent.status_code == 403
    bad = await client.patch(
        "/v1/channels/main", headers=headers_for("admin"), json={"rate_per_second": 0}
    )
    assert bad.status_code == 422
    unknown = await client.patch(
        "/v1/channels/main", headers=headers_for("admin"), json={"kind": "whapi"}
    )
    assert unknown.status_code == 422, "the kind cannot change"


async def test_delete_is_409_while_messages_wait_and_force_fails_them(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    sent = await client.post(
        "/v1/messages",
        headers=headers_for("admin"),
        json={"to": "+4915123456789", "text": {"body": "hi"}, "channel_id": "main"},
    )
    assert sent.status_code == 202, sent.text

    refused = await client.delete("/v1/channels/main", headers=headers_for("admin"))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["messages"] == {"queued": 1}

    forced = await client.delete("/v1/channels/main?force=true", headers=headers_for("admin"))
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"id": channel["id"], "removed": True, "failed_messages": 1}
    message = await client.get(f"/v1/messages/{sent.json()['id']}", headers=headers_for("admin"))
    assert message.json()["status"] == "failed"
    assert message.json()["error"]["code"] == "channel_removed"
    listed = await client.get("/v1/channels", headers=headers_for("admin"))
    assert listed.json()["data"] == []
    gone = await client.get("/v1/channels/main", headers=headers_for("admin"))
    assert gone.status_code == 404


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    """A sandbox that accepts only the sandbox channel's token."""
    sandbox = Sandbox(SandboxConfig(access_token=SANDBOX_TOKEN))
    url = await sandbox.start()
    try:
        yield url
    finally:
        await sandbox.stop()


async def test_a_check_the_provider_answers_proves_the_channel_connected(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, sandbox: str
) -> None:
    await add_sandbox_channel(hub, sandbox)

    response = await client.post("/v1/channels/sandbox/check", headers=headers_for("admin"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["error"]) == (True, None)
    assert body["channel"]["status"] == "connected"
    assert (await hub.channels.get("sandbox"))["status"] == "connected", "stored"


async def test_a_check_with_a_refused_token_reports_it_and_proves_nothing(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, sandbox: str
) -> None:
    await add_sandbox_channel(hub, sandbox)
    await hub.channels.update("sandbox", access_token="not-the-sandbox-token")

    response = await client.post("/v1/channels/sandbox/check", headers=headers_for("admin"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "190"
    assert body["channel"]["status"] == "unverified"
    assert (await hub.channels.get("sandbox"))["status"] == "unverified"
