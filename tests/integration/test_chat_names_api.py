"""Chat names over HTTP: seed 002's GET /refresh-cache shape, GET /v1/chats/refresh and
/v1/chats/{id}/name with their permissions, the /metrics counters, and the start-up warm-up
that must not hold back the health checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from wahub.app import create_app
from wahub.config import Settings
from wahub.providers.sandbox import DEFAULT_CHAT_COUNT, Sandbox, SandboxConfig, default_chat_id
from wahub.runtime import Hub
from wahub.store import chat_names as q

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(SandboxConfig())
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def add_periskope_channel(hub: Hub, sandbox: Sandbox) -> dict[str, Any]:
    return await hub.channels.create(
        name="periskope",
        kind="periskope",
        access_token=str(sandbox.config.periskope_api_key),
        phone_number="+" + sandbox.config.periskope_org_phone,
        base_url=f"{sandbox.url}/periskope",
    )


@pytest.fixture
async def periskope(hub: Hub, sandbox: Sandbox) -> dict[str, Any]:
    return await add_periskope_channel(hub, sandbox)


@pytest.mark.usefixtures("periskope")
async def test_refresh_cache_answers_the_seed_shape_exactly(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub
) -> None:
    async with hub.db.transaction() as conn:
        await q.learn_chat_name(
            conn, chat_id=default_chat_id(0), name="Known", source="api", now=1.0
        )

    first = await client.get("/refresh-cache", headers=headers_for("admin"))
    second = await client.get("/refresh-cache", headers=headers_for("admin"))

    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "success",
        "total_chats": DEFAULT_CHAT_COUNT,
        "newly_cached": DEFAULT_CHAT_COUNT - 1,
        "already_cached": 1,
    }
    assert second.json() == {
        "status": "success",
        "total_chats": DEFAULT_CHAT_COUNT,
        "newly_cached": 0,
        "already_cached": DEFAULT_CHAT_COUNT,
    }


@pytest.mark.usefixtures("periskope")
async def test_v1_refresh_is_the_same_and_admin_only(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    anonymous = await client.get("/v1/chats/refresh")
    agent = await client.get("/v1/chats/refresh", headers=headers_for("agent"))
    viewer = await client.get("/refresh-cache", headers=headers_for("viewer"))
    admin = await client.get("/v1/chats/refresh", headers=headers_for("admin"))

    assert anonymous.status_code == 401
    assert agent.status_code == 403
    assert viewer.status_code == 403
    assert admin.status_code == 200
    assert set(admin.json()) == {"status", "total_chats", "newly_cached", "already_cached"}


async def test_refresh_of_one_channel_and_an_unknown_one(
    client: httpx.AsyncClient, headers_for: Headers, periskope: dict[str, Any]
) -> None:
    one = await client.get(
        "/v1/chats/refresh", params={"channel_id": periskope["id"]}, headers=headers_for("admin")
    )
    unknown = await client.get(
        "/v1/chats/refresh", params={"channel_id": "ch_nope"}, headers=headers_for("admin")
    )

    assert one.json()["total_chats"] == DEFAULT_CHAT_COUNT
    assert unknown.status_code == 404


async def test_refresh_without_any_directory_is_a_clear_422(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.get("/refresh-cache", headers=headers_for("admin"))

    assert response.status_code == 422
    assert "periskope" in response.json()["error"]["message"]


@pytest.mark.usefixtures("periskope")
async def test_a_failing_provider_is_a_502_in_the_error_shape(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox, hub: Hub
) -> None:
    sandbox.config.periskope_fail_status = 500
    hub.chat_names.refresh_attempts = 2
    hub.chat_names.refresh_backoff_s = 0.01

    response = await client.get("/refresh-cache", headers=headers_for("admin"))

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_unavailable"


@pytest.mark.usefixtures("periskope")
async def test_name_route_asks_once_and_reports_the_source(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox
) -> None:
    chat = default_chat_id(1)

    first = await client.get(f"/v1/chats/{chat}/name", headers=headers_for("viewer"))
    second = await client.get(f"/v1/chats/{chat}/name", headers=headers_for("agent"))

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["chat_id"] == chat.replace("@c.us", "@s.whatsapp.net")
    assert body["name"] == sandbox.periskope.chats[1]["chat_name"]
    assert body["name_source"] == "provider"
    assert second.json()["name"] == body["name"]
    assert sandbox.periskope.stats()["calls"]["GET /chats/{chat_id}"] == 1


async def test_name_route_hides_unassigned_groups_from_agents(
    client: httpx.AsyncClient, headers_for: Headers, groups: Any
) -> None:
    hidden = await client.get(f"/v1/chats/{groups.unassigned}/name", headers=headers_for("agent"))
    shown = await client.get(f"/v1/chats/{groups.assigned}/name", headers=headers_for("agent"))
    bad = await client.get("/v1/chats/not-a-chat/name", headers=headers_for("admin"))

    assert hidden.status_code == 404
    assert shown.json()["name"] == "Assigned"
    assert shown.json()["name_source"] == "api"
    assert bad.status_code == 422


@pytest.mark.usefixtures("periskope")
async def test_metrics_count_hits_misses_and_provider_calls(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox
) -> None:
    sandbox.config.periskope_fail_status = None
    for index in (1, 1, 1, 2):
        await client.get(f"/v1/chats/{default_chat_id(index)}/name", headers=headers_for("admin"))
    sandbox.config.periskope_fail_status = 503
    await client.get(f"/v1/chats/{default_chat_id(3)}/name", headers=headers_for("admin"))

    text = (await client.get("/metrics")).text

    assert "wahub_chat_name_cache_hits_total 2.0" in text
    assert "wahub_chat_name_cache_misses_total 3.0" in text
    assert "wahub_chat_name_provider_calls_total 3.0" in text
    assert "wahub_chat_name_provider_failures_total 1.0" in text


async def test_root_answers_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.json()["message"]


async def test_warm_up_on_start_does_not_delay_health(settings: Settings, sandbox: Sandbox) -> None:
    warm = settings.model_copy(update={"cache_on_startup": True})
    setup = Hub.build(warm)
    await setup.start(workers=False, realtime=False)
    await add_periskope_channel(setup, sandbox)
    await setup.stop()
    # The directory answers only when the test says so: the warm-up is stuck in its
    # first provider call while the health checks run.
    sandbox.config.periskope_latency_ms = 60_000

    hub = Hub.build(warm)
    await hub.start(workers=False)
    app: FastAPI = create_app(warm, hub=hub)
    transport = httpx.ASGITransport(app=app)
    try:
        await _until(lambda: sandbox.periskope.stats()["calls"]["GET /chats"] == 1)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            health = await client.get("/healthz")
            root = await client.get("/")
        assert health.status_code == 200
        assert root.status_code == 200
        async with hub.db.read() as conn:
            assert await q.get_chat_name(conn, default_chat_id(0)) is None, "still warming"
    finally:
        await hub.stop()  # cancels the warm-up stuck in its call

    sandbox.config.periskope_latency_ms = 0
    hub = Hub.build(warm)
    await hub.start(workers=False)
    try:

        async def named() -> bool:
            async with hub.db.read() as conn:
                last = default_chat_id(DEFAULT_CHAT_COUNT - 1)  # a person: stored canonical
                row = await q.get_chat_name(conn, last.replace("@c.us", "@s.whatsapp.net"))
            return row is not None and row["name"] is not None

        await _until_async(named)
    finally:
        await hub.stop()


async def _until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    async def check() -> bool:
        return predicate()

    await _until_async(check, within)


async def _until_async(predicate: Callable[[], Any], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():
            await asyncio.sleep(0.02)
