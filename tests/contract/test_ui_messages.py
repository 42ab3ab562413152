"""The dashboard's messages log and message page (issue 17, point 5) over HTTP on every
store backend: filters, the status history, the provider's error in words, and retry
for a failed message (refused for a viewer, invisible to an agent it is not for)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from ui_pages import csrf_of, sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub

if TYPE_CHECKING:
    from conftest import ContractEnv


@dataclass
class Log:
    env: ContractEnv
    hub: Hub
    transport: httpx.ASGITransport
    failed_id: str
    queued_id: str

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as client:
            key = (await self.hub.access.create_key(user_name=user, role=role)).key
            assert (await sign_in_with_key(client, key)).status_code == 303
            yield client


@pytest.fixture
async def log(env: ContractEnv, database_url: str) -> AsyncIterator[Log]:
    """One queued message to person 1 and one failed to person 2 (with the provider's
    words), sent by the admin."""
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    queued = await env.insert_queued(env.person_chat(1))
    failed = await env.insert_queued(
        env.person_chat(2),
        status="failed",
        error_code="131026",
        error_title="Message undeliverable",
        error_detail="the number is not on WhatsApp or cannot receive this message",
        failed_at=1.0,
    )
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Log(env, hub, transport, failed["id"], queued["id"])
    finally:
        await hub.stop()


def listed(html: str) -> list[str]:
    return re.findall(r'<tr\s+(?:class="bad"\s+)?data-message-id="([^"]+)"', html)


async def test_the_log_lists_and_filters_by_status_and_chat_in_any_form(log: Log) -> None:
    async with log.signed_in("viewer", "vic") as client:
        everything = await client.get("/ui/messages")
        failed = await client.get("/ui/messages", params={"status": "failed"})
        by_chat = await client.get("/ui/messages", params={"chat": "+49 151 1000 0001"})

    assert everything.status_code == 200
    assert set(listed(everything.text)) == {log.failed_id, log.queued_id}
    assert listed(failed.text) == [log.failed_id]
    assert listed(by_chat.text) == [log.queued_id]


async def test_a_bad_filter_is_named_beside_its_field_and_kept(log: Log) -> None:
    async with log.signed_in("viewer", "vic") as client:
        bad_status = await client.get("/ui/messages", params={"status": "lost"})
        bad_chat = await client.get("/ui/messages", params={"chat": "not a number"})

    assert bad_status.status_code == 422
    assert 'id="status-error"' in bad_status.text
    assert bad_chat.status_code == 422
    assert 'id="chat-error"' in bad_chat.text
    assert 'value="not a number"' in bad_chat.text


async def test_a_failed_message_shows_the_providers_words_and_retries(log: Log) -> None:
    async with log.signed_in("admin", "root2") as client:
        page = await client.get(f"/ui/messages/{log.failed_id}")
        retried = await client.post(
            f"/ui/messages/{log.failed_id}/retry", data={"csrf": csrf_of(page.text)}
        )
        after = await client.get(f"/ui/messages/{log.failed_id}")
        again = await client.post(
            f"/ui/messages/{log.failed_id}/retry", data={"csrf": csrf_of(after.text)}
        )

    assert page.status_code == 200
    assert "Message undeliverable" in page.text
    assert "the number is not on WhatsApp or cannot receive this message" in page.text
    assert 'id="retry"' in page.text
    assert retried.status_code == 303
    assert "queued" in after.text
    assert 'id="retry"' not in after.text
    assert again.status_code == 409
    assert "only failed messages can be retried" in again.text


async def test_a_viewer_cannot_retry_and_an_agent_cannot_see_others_messages(log: Log) -> None:
    async with log.signed_in("viewer", "vic") as client:
        page = await client.get(f"/ui/messages/{log.failed_id}")
        forced = await client.post(
            f"/ui/messages/{log.failed_id}/retry", data={"csrf": csrf_of(page.text)}
        )
    async with log.signed_in("agent", "ann") as client:
        hidden = await client.get(f"/ui/messages/{log.failed_id}")
        listing = await client.get("/ui/messages")

    assert 'id="retry"' not in page.text
    assert forced.status_code == 403
    assert hidden.status_code == 404
    assert listed(listing.text) == []
