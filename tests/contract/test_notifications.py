"""Who sees which notification, on every store backend: the listing, the unread count,
marking one and marking all apply one rule (addressed to the reader or to everyone, of a
conversation the reader sees)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert

from wahub.domain.actors import Actor
from wahub.domain.errors import NotFound
from wahub.features.notifications import Notifications
from wahub.store.schema import chats, conversations, notifications

if TYPE_CHECKING:
    from conftest import ContractEnv


async def add_conversation(
    env: ContractEnv, n: int, *, assigned_to: str | None = None
) -> dict[str, Any]:
    now = time.time()
    row = {
        "id": f"conv_{n}",
        "channel_id": env.channel_id,
        "chat_id": env.person_chat(n),
        "unread_count": 0,
        "assigned_user_id": assigned_to,
        "created_at": now,
        "updated_at": now,
    }
    async with env.db.transaction() as conn:
        await conn.execute(
            insert(chats).values(chat_id=row["chat_id"], kind="person", created_at=now)
        )
        await conn.execute(insert(conversations).values(row))
    return row


async def add_notification(
    env: ContractEnv, title: str, conversation_id: str | None, user_id: str | None
) -> int:
    async with env.db.transaction() as conn:
        result = await conn.execute(
            insert(notifications)
            .values(
                kind="message.received",
                conversation_id=conversation_id,
                user_id=user_id,
                title=title,
                created_at=time.time(),
            )
            .returning(notifications.c.id)
        )
    return int(result.scalar_one())


async def titles(service: Notifications, actor: Actor, **kwargs: Any) -> list[str]:
    page = await service.list_page(
        actor, **{"unread_only": False, "before": None, "limit": 50, **kwargs}
    )
    return [r["title"] for r in page.rows]


async def test_agents_see_their_chats_conversations_and_what_is_addressed_to_them(
    env: ContractEnv,
) -> None:
    agent = await env.actor("agent", "agent")
    other = await env.actor("other", "agent")
    viewer = await env.actor("viewer", "viewer")
    assigned_chat = await add_conversation(env, 1)  # its chat is assigned to the agent's group
    unassigned = await add_conversation(env, 2)
    theirs = await add_conversation(env, 3, assigned_to=agent.user_id)
    await env.access.add_member(group_name="support", user_name="agent")
    await env.access.assign_chat(group_name="support", chat_id=assigned_chat["chat_id"])
    await add_notification(env, "assigned chat", assigned_chat["id"], None)
    hidden = await add_notification(env, "unassigned chat", unassigned["id"], None)
    await add_notification(env, "assigned conversation", theirs["id"], None)
    await add_notification(env, "for another user", assigned_chat["id"], other.user_id)
    await add_notification(env, "for the agent, unassigned chat", unassigned["id"], agent.user_id)
    await add_notification(env, "for the agent, no chat", None, agent.user_id)
    await add_notification(env, "for everyone, no chat", None, None)
    service = Notifications(env.db)

    agent_sees = await titles(service, agent)
    admin_sees = await titles(service, env.admin)
    viewer_sees = await titles(service, viewer)

    assert agent_sees == ["for the agent, no chat", "assigned conversation", "assigned chat"]
    assert (
        admin_sees
        == viewer_sees
        == [
            "for everyone, no chat",
            "assigned conversation",
            "unassigned chat",
            "assigned chat",
        ]
    )
    with pytest.raises(NotFound):
        await service.mark_read(agent, hidden)
    with pytest.raises(NotFound):
        await service.mark_all_read(agent, conversation_id=unassigned["id"])
    assert await service.mark_all_read(agent, conversation_id=theirs["id"]) == 1
    assert await service.mark_all_read(agent, conversation_id=None) == 2
    page = await service.list_page(env.admin, unread_only=True, before=None, limit=50)
    assert [r["title"] for r in page.rows] == ["for everyone, no chat", "unassigned chat"]
    assert page.unread_count == 2
    assert (await service.list_page(agent, unread_only=True, before=None, limit=50)).rows == []
