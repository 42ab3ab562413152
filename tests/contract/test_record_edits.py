"""What people change on leads, contacts and conversations (``RecordEdits``, issue 18),
on every store backend: the edit, its bounds, who may make it, and that the change log
carries it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select
from test_conversations import CHAT, conversation, deliver, inbound_webhook, rows, text

from wahub.domain.errors import NotFound, PayloadTooLarge, ValidationError
from wahub.features.records import ATTRIBUTES_MAX_BYTES, RecordEdits
from wahub.store.schema import changes, contacts, leads, notifications

if TYPE_CHECKING:
    from conftest import ContractEnv


async def inbound(env: ContractEnv) -> dict[str, Any]:
    """One inbound text from Kerry: the conversation it made."""
    await deliver(env, inbound_webhook(text("wamid.edit1", "Hi")))
    return await conversation(env, CHAT)


async def logged(env: ContractEnv, table: str, key: str) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        result = await conn.execute(
            select(changes.c.op, changes.c.data)
            .where(changes.c.table_name == table, changes.c.row_key == key)
            .order_by(changes.c.seq)
        )
        return [dict(r._mapping) for r in result]


async def test_a_lead_status_and_owner_change_is_stored_and_logged(env: ContractEnv) -> None:
    conv = await inbound(env)
    edits = RecordEdits(env.db)

    edited = await edits.update_lead(
        env.admin, conv["lead_id"], {"status": "won", "owner_user_id": env.admin.user_id}
    )

    (lead,) = await rows(env, leads)
    assert (lead["status"], lead["owner_user_id"]) == ("won", env.admin.user_id)
    assert edited.row["status"] == "won"
    assert edited.event["type"] == "lead.updated"
    assert edited.event["chat_id"] == CHAT
    assert edited.event["channel_ids"] == [env.channel_id]
    last = (await logged(env, "leads", conv["lead_id"]))[-1]
    assert (last["op"], last["data"]["status"]) == ("update", "won")


async def test_an_unknown_lead_status_is_refused_listing_the_allowed_ones(
    env: ContractEnv,
) -> None:
    conv = await inbound(env)

    with pytest.raises(ValidationError) as refused:
        await RecordEdits(env.db).update_lead(env.admin, conv["lead_id"], {"status": "hot"})

    assert refused.value.details["allowed"] == [
        "new",
        "contacted",
        "replied",
        "qualified",
        "won",
        "lost",
    ]
    assert "won" in refused.value.message
    (lead,) = await rows(env, leads)
    assert lead["status"] == "new"


async def test_an_owner_who_is_no_user_is_refused(env: ContractEnv) -> None:
    conv = await inbound(env)

    with pytest.raises(ValidationError, match="owner_user_id"):
        await RecordEdits(env.db).update_lead(
            env.admin, conv["lead_id"], {"owner_user_id": "usr_nobody"}
        )


async def test_agents_cannot_edit_what_they_do_not_see_until_it_is_assigned_to_them(
    env: ContractEnv,
) -> None:
    conv = await inbound(env)
    agent = await env.actor("ann", "agent")
    edits = RecordEdits(env.db)

    with pytest.raises(NotFound):
        await edits.update_lead(agent, conv["lead_id"], {"status": "qualified"})
    with pytest.raises(NotFound):
        await edits.update_contact(agent, conv["contact_id"], {"name": "K"})
    with pytest.raises(NotFound):
        await edits.update_conversation(agent, conv["id"], {"read": True})

    await edits.update_conversation(env.admin, conv["id"], {"assigned_user_id": agent.user_id})
    await edits.update_lead(agent, conv["lead_id"], {"status": "qualified"})

    (lead,) = await rows(env, leads)
    assert lead["status"] == "qualified"


async def test_a_contact_name_set_by_api_outranks_later_profile_names(env: ContractEnv) -> None:
    conv = await inbound(env)

    await RecordEdits(env.db).update_contact(
        env.admin, conv["contact_id"], {"name": "Kerry Smith", "attributes": {"tier": "gold"}}
    )
    await deliver(env, inbound_webhook(text("wamid.edit2", "again"), name="kez"))

    (contact,) = await rows(env, contacts)
    assert (contact["name"], contact["name_source"]) == ("Kerry Smith", "api")
    assert contact["attributes"] == {"tier": "gold"}
    last = (await logged(env, "contacts", conv["contact_id"]))[-1]
    assert last["data"]["attributes"] == {"tier": "gold"}, "the change log carries attributes"


@pytest.mark.parametrize(
    ("attributes", "error"),
    [
        (["not", "an", "object"], ValidationError),
        ({"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}, ValidationError),
        ({"blob": "x" * ATTRIBUTES_MAX_BYTES}, PayloadTooLarge),
    ],
    ids=["not an object", "too deep", "too large"],
)
async def test_bad_contact_attributes_are_refused_and_nothing_changes(
    env: ContractEnv, attributes: Any, error: type[Exception]
) -> None:
    conv = await inbound(env)

    with pytest.raises(error, match="attributes"):
        await RecordEdits(env.db).update_contact(
            env.admin, conv["contact_id"], {"attributes": attributes}
        )

    (contact,) = await rows(env, contacts)
    assert contact["attributes"] is None


async def test_a_conversation_marked_unread_then_read(env: ContractEnv) -> None:
    conv = await inbound(env)
    edits = RecordEdits(env.db)

    read = await edits.update_conversation(env.admin, conv["id"], {"read": True})
    unread = await edits.update_conversation(env.admin, conv["id"], {"read": False})

    assert read.row["unread_count"] == 0
    assert unread.row["unread_count"] == 1
    assert unread.event["type"] == "conversation.updated"
    (note,) = await rows(env, notifications)
    assert note["read_at"] is not None, "reading a conversation reads its notifications"
    logged_counts = [
        c["data"]["unread_count"] for c in await logged(env, "conversations", conv["id"])
    ]
    assert logged_counts[-2:] == [0, 1]


async def test_assigning_a_conversation_to_no_user_is_refused(env: ContractEnv) -> None:
    conv = await inbound(env)

    with pytest.raises(ValidationError, match="assigned_user_id"):
        await RecordEdits(env.db).update_conversation(
            env.admin, conv["id"], {"assigned_user_id": "usr_nobody"}
        )
