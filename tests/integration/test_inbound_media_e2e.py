"""Inbound media end to end, on SQLite and PostgreSQL: a lead sends an image through the
sandbox (Cloud API media id, WHAPI link, Periskope link), the inbox stores the message
at once with its download queued, the download loop fetches the file once (Cloud API:
``GET /{media_id}``, then its URL with the token), stores it in the media store and
links it to the message, and ``GET /v1/media/{id}`` serves the bytes to keys that may
see the chat."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from wahub.config import Settings
from wahub.embedded import (
    Stack,
    add_sandbox_channel,
    add_sandbox_whapi_channel,
    embedded_stack,
    free_port,
)
from wahub.providers.sandbox import SandboxConfig
from wahub.providers.sandbox.media import RECEIVED_SIZE
from wahub.store.schema import conversations, media, media_downloads, messages


@pytest.fixture
async def stack_factory(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Starts the stack with extra settings (one per test)."""
    opened: list[Any] = []

    async def open_stack(**extra: Any) -> Stack:
        settings = Settings(
            _env_file=None,
            database_url=db_url,
            port=free_port(),
            media_dir=tmp_path / "media",
            media_download_retry_base_seconds=0.05,
            media_download_retry_cap_seconds=0.2,
            **extra,
        )
        # Every inbound webhook delivered twice: the file must still be fetched once.
        config = SandboxConfig(duplicate_fraction=1.0, webhook_backoff_initial_s=0.05)
        context = embedded_stack(settings, sandbox_config=config)
        stack = await context.__aenter__()
        opened.append(context)
        assert stack.sandbox_url is not None
        await add_sandbox_channel(stack.hub, stack.sandbox_url)
        await add_sandbox_whapi_channel(stack.hub, stack.sandbox_url, config=config)
        await stack.hub.channels.create(
            name="sandbox-periskope",
            kind="periskope",
            access_token=config.periskope_api_key or "sandbox-periskope-key",
            base_url=f"{stack.sandbox_url}/periskope",
            phone_number="+" + config.periskope_org_phone,
        )
        return stack

    yield open_stack
    for context in reversed(opened):
        await context.__aexit__(None, None, None)


async def emit(stack: Stack, provider: str, sender: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{stack.sandbox_url}/_sandbox/inbound",
            json={"provider": provider, "count": 1, "kinds": ["image"], "from": [sender]},
        )
    assert response.status_code == 200, response.text


async def sandbox_media(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stack.sandbox_url}/_sandbox/media")
    payload: dict[str, Any] = response.json()
    return payload


async def media_outcome(stack: Stack, chat_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The inbound image message of ``chat_id`` once its download finished (stored or
    failed); fails the test if it never does."""
    assert stack.sandbox is not None
    await stack.sandbox.wait_webhooks_idle(timeout)
    deadline = time.monotonic() + timeout
    while True:
        async with stack.hub.db.read() as conn:
            found = [
                dict(r._mapping)
                for r in await conn.execute(select(messages).where(messages.c.chat_id == chat_id))
            ]
        outcome = found[0]["content"].get("wahub_media") if len(found) == 1 else None
        if outcome is not None and outcome["status"] != "pending":
            assert len(found) == 1, "the message is stored once"
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"the download of {chat_id}'s image never finished: {found}")
        await asyncio.sleep(0.05)


async def table(stack: Stack, which: Any) -> list[dict[str, Any]]:
    async with stack.hub.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(which))]


async def key(stack: Stack, name: str, role: str) -> dict[str, str]:
    created = await stack.hub.access.create_key(user_name=name, role=role)
    return {"Authorization": f"Bearer {created.key}"}


@pytest.mark.parametrize(
    ("provider", "sender"),
    [("cloudapi", "4915112345678"), ("whapi", "4915112345679"), ("periskope", "919812345678")],
)
async def test_an_inbound_image_is_downloaded_once_and_served(
    stack_factory: Any, provider: str, sender: str
) -> None:
    stack = await stack_factory()
    await emit(stack, provider, sender)
    message = await media_outcome(stack, f"{sender}@s.whatsapp.net")

    outcome = message["content"]["wahub_media"]
    assert outcome["status"] == "stored", outcome
    assert (await sandbox_media(stack))["downloads"] == 1, "a webhook delivered twice: one fetch"
    assert await table(stack, media_downloads) == [], "nothing left queued"
    async with httpx.AsyncClient() as http:
        served = await http.get(
            f"{stack.url}/v1/media/{outcome['id']}", headers=await key(stack, "crm", "admin")
        )
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["content-disposition"].startswith("attachment"), "never rendered"
    assert len(served.content) == RECEIVED_SIZE
    (row,) = await table(stack, media)
    assert row["source"] == "inbound"
    assert row["chat_id"] == f"{sender}@s.whatsapp.net"
    assert row["sha256"] == hashlib.sha256(served.content).hexdigest()


async def test_a_download_failing_twice_then_succeeding_stores_the_file(
    stack_factory: Any,
) -> None:
    stack = await stack_factory()
    async with httpx.AsyncClient() as http:
        armed = await http.post(
            f"{stack.sandbox_url}/_sandbox/media/fail-downloads", json={"count": 2}
        )
    assert armed.status_code == 200
    await emit(stack, "cloudapi", "4915112345670")
    message = await media_outcome(stack, "4915112345670@s.whatsapp.net")

    assert message["content"]["wahub_media"]["status"] == "stored"
    counts = await sandbox_media(stack)
    assert (counts["downloads_failed"], counts["downloads"]) == (2, 1)
    assert len(await table(stack, media)) == 1


async def test_downloads_that_keep_failing_give_up_and_keep_the_message(
    stack_factory: Any,
) -> None:
    stack = await stack_factory(media_download_max_attempts=3)
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.sandbox_url}/_sandbox/media/fail-downloads", json={"count": 99})
    await emit(stack, "whapi", "4915112345673")
    message = await media_outcome(stack, "4915112345673@s.whatsapp.net")

    outcome = message["content"]["wahub_media"]
    assert (outcome["status"], outcome["reason"]) == ("failed", "gave_up")
    assert "3 attempts" in outcome["message"]
    assert "500" in outcome["message"]
    assert (await sandbox_media(stack))["downloads_failed"] == 3
    assert await table(stack, media) == []
    assert await table(stack, media_downloads) == []


async def test_a_file_over_the_cap_keeps_the_message_and_names_the_reason(
    stack_factory: Any,
) -> None:
    stack = await stack_factory(media_max_bytes=RECEIVED_SIZE - 1)
    await emit(stack, "cloudapi", "4915112345671")
    message = await media_outcome(stack, "4915112345671@s.whatsapp.net")

    outcome = message["content"]["wahub_media"]
    assert outcome["status"] == "failed"
    assert outcome["reason"] == "too_large"
    assert "WAHUB_MEDIA_MAX_BYTES" in outcome["message"]
    assert message["content"]["image"]["caption"], "the message keeps what it said"
    assert await table(stack, media) == []
    assert await table(stack, media_downloads) == []


async def test_only_agents_of_the_chat_get_the_file(stack_factory: Any) -> None:
    stack = await stack_factory()
    chat_id = "4915112345672@s.whatsapp.net"
    await emit(stack, "cloudapi", "4915112345672")
    media_id = (await media_outcome(stack, chat_id))["content"]["wahub_media"]["id"]
    admin = await key(stack, "crm", "admin")
    outsider = await key(stack, "outsider", "agent")
    agent = await stack.hub.access.create_key(user_name="anna", role="agent")
    (conversation,) = [c for c in await table(stack, conversations) if c["chat_id"] == chat_id]

    async with httpx.AsyncClient(base_url=stack.url) as http:
        refused = await http.get(f"/v1/media/{media_id}", headers=outsider)
        assigned = await http.patch(
            f"/v1/conversations/{conversation['id']}",
            json={"assigned_user_id": agent.user_id},
            headers=admin,
        )
        assert assigned.status_code == 200, assigned.text
        allowed = await http.get(
            f"/v1/media/{media_id}", headers={"Authorization": f"Bearer {agent.key}"}
        )
        still_refused = await http.get(f"/v1/media/{media_id}", headers=outsider)

    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert allowed.status_code == 200
    assert len(allowed.content) == RECEIVED_SIZE
    assert still_refused.status_code == 404
