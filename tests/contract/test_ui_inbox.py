"""The dashboard's inbox (issue 17, point 4) over HTTP on every store backend:
conversations unread first with their names, an agent kept to the chats assigned to
them (also by typing a URL), a viewer who changes nothing, a reply refused outside the
24-hour window with the template picker offered, and HTML in a message shown as text."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select, update

from ui_pages import csrf_of, sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import conversations, messages

if TYPE_CHECKING:
    from conftest import ContractEnv

ASSIGNED = "120363000000000001@g.us"
UNASSIGNED = "120363000000000002@g.us"


@dataclass
class Inbox:
    env: ContractEnv
    hub: Hub
    transport: httpx.ASGITransport

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://wahub.test")

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as client:
            key = (await self.hub.access.create_key(user_name=user, role=role)).key
            assert (await sign_in_with_key(client, key)).status_code == 303
            yield client

    async def conversation_of(self, chat_id: str) -> str:
        async with self.env.db.read() as conn:
            row = (
                await conn.execute(
                    select(conversations.c.id).where(conversations.c.chat_id == chat_id)
                )
            ).first()
        assert row is not None, f"no conversation for {chat_id}"
        return str(row.id)


@pytest.fixture
async def inbox(env: ContractEnv, database_url: str) -> AsyncIterator[Inbox]:
    """Two groups on channel main (ASSIGNED assigned to agent ann's employee group), each
    with a message from the admin, so each has a conversation."""
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    for chat_id, name in ((ASSIGNED, "Assigned group"), (UNASSIGNED, "<b>Secret</b> group")):
        await hub.channels.register_group(chat_id=chat_id, name=name, channel_id=env.channel_id)
        await env.send_text(chat_id, f"hello {name}")
    await hub.access.add_member(group_name="support", user_name="ann")
    await hub.access.assign_chat(group_name="support", chat_id=ASSIGNED)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Inbox(env, hub, transport)
    finally:
        await hub.stop()


async def test_conversations_are_listed_unread_first_with_their_names(inbox: Inbox) -> None:
    async with inbox.env.db.transaction() as conn:
        await conn.execute(
            update(conversations)
            .where(conversations.c.chat_id == ASSIGNED)
            .values(unread_count=3, last_message_at=1.0)
        )
    async with inbox.signed_in("admin", "root2") as client:
        page = await client.get("/ui/inbox")

    assert page.status_code == 200
    rows = re.findall(r'<tr class="(unread)?" data-conversation-id', page.text)
    assert rows == ["unread", ""], "the unread one first, though its last message is older"
    assert page.text.index("Assigned group") < page.text.index("&lt;b&gt;Secret&lt;/b&gt; group")
    assert "<b>Secret</b>" not in page.text


async def test_an_agent_sees_only_assigned_chats_also_by_typing_the_url(inbox: Inbox) -> None:
    hidden = await inbox.conversation_of(UNASSIGNED)
    async with inbox.signed_in("agent", "ann") as client:
        page = await client.get("/ui/inbox")
        typed = await client.get(f"/ui/inbox/{hidden}")
        reply = await client.post(
            f"/ui/inbox/{hidden}/reply",
            data={"csrf": csrf_of(page.text), "kind": "text", "text": "let me in"},
        )

    assert "Assigned group" in page.text
    assert "Secret" not in page.text
    assert typed.status_code == 404
    assert "Secret" not in typed.text
    assert reply.status_code == 404
    async with inbox.env.db.read() as conn:
        texts = [r.content for r in await conn.execute(select(messages.c.content))]
    assert not any("let me in" in str(t) for t in texts), "nothing was sent"


async def test_an_agent_answers_an_assigned_group_from_the_thread(inbox: Inbox) -> None:
    shown = await inbox.conversation_of(ASSIGNED)
    async with inbox.signed_in("agent", "ann") as client:
        thread = await client.get(f"/ui/inbox/{shown}")
        sent = await client.post(
            f"/ui/inbox/{shown}/reply",
            data={
                "csrf": csrf_of(thread.text),
                "kind": "text",
                "text": "<script>alert(1)</script> on it",
                "once": "form-1",
            },
        )
        again = await client.get(f"/ui/inbox/{shown}")

    assert thread.status_code == 200
    assert 'id="reply-text"' in thread.text
    assert sent.status_code == 303
    assert "&lt;script&gt;alert(1)&lt;/script&gt; on it" in again.text
    assert "<script>alert(1)</script>" not in again.text


async def test_a_viewer_gets_no_reply_box_and_a_forced_post_is_refused(inbox: Inbox) -> None:
    shown = await inbox.conversation_of(ASSIGNED)
    async with inbox.signed_in("viewer", "vic") as client:
        thread = await client.get(f"/ui/inbox/{shown}")
        forced = await client.post(
            f"/ui/inbox/{shown}/reply",
            data={"csrf": csrf_of(thread.text), "kind": "text", "text": "hi"},
        )

    assert 'id="reply-text"' not in thread.text
    assert "Viewers read only" in thread.text
    assert forced.status_code == 403
    assert "read-only" in forced.text


async def test_a_reply_without_the_csrf_token_is_refused(inbox: Inbox) -> None:
    shown = await inbox.conversation_of(ASSIGNED)
    async with inbox.signed_in("admin", "root2") as client:
        refused = await client.post(f"/ui/inbox/{shown}/reply", data={"kind": "text", "text": "x"})

    assert refused.status_code == 403


async def test_outside_the_window_the_reply_is_refused_and_templates_offered(
    inbox: Inbox,
) -> None:
    meta = await inbox.hub.channels.create(
        name="meta",
        phone_number_id="pnid-meta",
        access_token="secret-token",
        enforce_service_window=True,
    )
    await inbox.hub.channels.add_template(
        "meta", name="order_update", language="en_US", body_parameters=1, category="utility"
    )
    person = inbox.env.person_chat(7)
    await _send_template(inbox, meta, person)
    shown = await inbox.conversation_of(person)

    async with inbox.signed_in("admin", "root2") as client:
        thread = await client.get(f"/ui/inbox/{shown}")
        assert "The 24-hour window is closed" in thread.text
        assert "never wrote to this number" in thread.text
        assert 'id="reply-text"' not in thread.text
        assert 'value="order_update|en_US"' in thread.text

        text = await client.post(
            f"/ui/inbox/{shown}/reply",
            data={"csrf": csrf_of(thread.text), "kind": "text", "text": "are you there?"},
        )
        missing = await client.post(
            f"/ui/inbox/{shown}/reply",
            data={
                "csrf": csrf_of(thread.text),
                "kind": "template",
                "template": "order_update|en_US",
            },
        )
        template = await client.post(
            f"/ui/inbox/{shown}/reply",
            data={
                "csrf": csrf_of(thread.text),
                "kind": "template",
                "template": "order_update|en_US",
                "param1": "A-17",
                "once": "form-2",
            },
        )

    assert text.status_code == 422
    assert "customer-service window" in text.text
    assert 'value="order_update|en_US"' in text.text, "the picker is offered again"
    assert missing.status_code == 422
    assert "fill in parameter 1" in missing.text
    assert template.status_code == 303


async def _send_template(inbox: Inbox, channel: dict[str, Any], chat_id: str) -> None:
    from wahub.domain.content import SendRequest

    request = SendRequest.model_validate(
        {
            "to": chat_id,
            "channel_id": channel["id"],
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "1"}]}],
            },
        }
    )
    await inbox.hub.messaging.send(inbox.env.admin, request)
