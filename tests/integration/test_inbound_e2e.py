"""End to end over real HTTP, per provider: the sandbox's simulated leads write (Cloud API,
WHAPI, Periskope webhook shapes, signed or secret-carrying), the hub's receiver stores
each delivery once, and the inbox processor turns it into a conversation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
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
from wahub.store import inbox as inbox_q
from wahub.store.schema import conversations, inbox


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'inbound.db'}",
        port=free_port(),
    )
    # Every inbound webhook delivered twice: the hub must store and apply each once.
    config = SandboxConfig(duplicate_fraction=1.0, webhook_backoff_initial_s=0.05)
    async with embedded_stack(settings, sandbox_config=config) as stack:
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
        yield stack


async def emit(stack: Stack, **body: Any) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.sandbox_url}/_sandbox/inbound", json=body) as response,
    ):
        payload: dict[str, Any] = await response.json()
        assert response.status == 200, payload
        emitted: list[dict[str, Any]] = payload["emitted"]
        return emitted


async def settle(stack: Stack, timeout: float = 15.0) -> None:
    """Until the sandbox delivered everything and the inbox has nothing pending."""
    assert stack.sandbox is not None
    await stack.sandbox.wait_webhooks_idle(timeout)
    deadline = time.monotonic() + timeout
    while True:
        async with stack.hub.db.read() as conn:
            pending = (await inbox_q.count_by_status(conn)).get("pending", 0)
        if pending == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail("inbox still has pending deliveries")
        await asyncio.sleep(0.05)


async def rows(stack: Stack, table: Any) -> list[dict[str, Any]]:
    async with stack.hub.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(table))]


@pytest.mark.parametrize(
    ("provider", "sender", "chat_id"),
    [
        ("cloudapi", "4915112345678", "4915112345678@s.whatsapp.net"),
        ("whapi", "4915112345679", "4915112345679@s.whatsapp.net"),
        ("periskope", "919812345678", "919812345678@s.whatsapp.net"),
    ],
)
async def test_a_lead_writing_on_each_provider_becomes_one_conversation(
    stack: Stack, provider: str, sender: str, chat_id: str
) -> None:
    emitted = await emit(
        stack, provider=provider, count=2, kinds=["text", "image"], **{"from": [sender]}
    )
    await settle(stack)

    stored = [r for r in await rows(stack, inbox) if r["provider"] == provider]
    assert len(stored) == 2, "each delivery is stored once though delivered twice"
    assert {r["status"] for r in stored} == {"processed"}, [r["error"] for r in stored]
    (conversation,) = [c for c in await rows(stack, conversations) if c["chat_id"] == chat_id]
    assert conversation["unread_count"] == 2
    assert conversation["last_inbound_at"] is not None
    assert len(emitted) == 2
