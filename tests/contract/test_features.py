"""Access control and sending, through the feature objects over a real database."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from wahub.domain.actors import Actor, Role
from wahub.domain.content import SendRequest
from wahub.domain.errors import (
    AuthenticationFailed,
    ConflictError,
    PermissionDenied,
    ValidationError,
)
from wahub.features.access import hash_key
from wahub.features.messaging import Messaging
from wahub.store import access as access_q
from wahub.store.schema import api_keys, messages

if TYPE_CHECKING:
    from conftest import ContractEnv

ASSIGNED_GROUP = "120363000000000001@g.us"
UNASSIGNED_GROUP = "120363000000000002@g.us"


# --- API keys ----------------------------------------------------------------------------


async def test_a_created_key_authenticates_as_its_user_and_role(env: ContractEnv) -> None:
    created = await env.access.create_key(user_name="alice", role="agent")

    actor = await env.access.authenticate(created.key)

    assert (actor.user_id, actor.user_name, actor.role, actor.key_id) == (
        created.user_id,
        "alice",
        Role.AGENT,
        created.key_id,
    )
    assert created.key.startswith(f"wh_{created.prefix}_")


async def test_only_the_hash_of_a_key_is_stored(env: ContractEnv) -> None:
    created = await env.access.create_key(user_name="alice", role="agent")

    async with env.db.read() as conn:
        stored = [dict(r._mapping) for r in await conn.execute(api_keys.select())]

    assert created.key not in repr(stored), "the secret itself must never be stored"
    assert hash_key(created.key) in {row["key_hash"] for row in stored}


async def test_a_second_key_for_a_user_name_belongs_to_the_same_user(env: ContractEnv) -> None:
    first = await env.access.create_key(user_name="alice", role="agent")
    second = await env.access.create_key(user_name=" alice ", role="viewer")

    assert second.user_id == first.user_id
    assert second.key != first.key


@pytest.mark.parametrize("key", [None, "", "wh_00000000_not-a-real-key"])
async def test_a_missing_or_unknown_key_is_refused(env: ContractEnv, key: str | None) -> None:
    with pytest.raises(AuthenticationFailed):
        await env.access.authenticate(key)


async def test_a_key_with_one_character_changed_is_refused(env: ContractEnv) -> None:
    created = await env.access.create_key(user_name="alice", role="admin")
    tampered = created.key[:-1] + ("A" if created.key[-1] != "A" else "B")

    with pytest.raises(AuthenticationFailed):
        await env.access.authenticate(tampered)


async def test_a_revoked_key_is_refused(env: ContractEnv) -> None:
    created = await env.access.create_key(user_name="alice", role="admin")
    async with env.db.transaction() as conn:
        assert await access_q.revoke_api_key(conn, created.key_id, time.time())

    with pytest.raises(AuthenticationFailed, match="invalid or revoked"):
        await env.access.authenticate(created.key)


async def test_revoking_one_key_leaves_the_users_other_keys_working(env: ContractEnv) -> None:
    revoked = await env.access.create_key(user_name="alice", role="admin")
    kept = await env.access.create_key(user_name="alice", role="admin")
    async with env.db.transaction() as conn:
        await access_q.revoke_api_key(conn, revoked.key_id, time.time())

    assert (await env.access.authenticate(kept.key)).key_id == kept.key_id


@pytest.mark.parametrize("role", ["root", "Admin", ""])
async def test_a_key_with_an_unknown_role_is_refused(env: ContractEnv, role: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await env.access.create_key(user_name="alice", role=role)

    assert caught.value.details == {"field": "role"}


async def test_a_key_for_a_blank_user_name_is_refused(env: ContractEnv) -> None:
    with pytest.raises(ValidationError) as caught:
        await env.access.create_key(user_name="   ", role="agent")

    assert caught.value.details == {"field": "user"}


# --- who may send where ------------------------------------------------------------------


@pytest.fixture
async def actors(env: ContractEnv) -> dict[str, Actor]:
    """An admin, an agent whose employee group is assigned ASSIGNED_GROUP, and a viewer."""
    for group in (ASSIGNED_GROUP, UNASSIGNED_GROUP):
        await env.channels.register_group(chat_id=group, name=group, channel_id=env.channel_id)
    agent = await env.actor("agent-anna", "agent")
    await env.access.add_member(group_name="support", user_name="agent-anna")
    await env.access.assign_chat(group_name="support", chat_id=ASSIGNED_GROUP)
    return {
        "admin": env.admin,
        "agent": agent,
        "viewer": await env.actor("viewer-vic", "viewer"),
    }


PERSON = "4915110000001@s.whatsapp.net"
SEND_MATRIX = [
    ("admin", PERSON, True),
    ("admin", ASSIGNED_GROUP, True),
    ("admin", UNASSIGNED_GROUP, True),
    ("agent", PERSON, True),
    ("agent", ASSIGNED_GROUP, True),
    ("agent", UNASSIGNED_GROUP, False),
    ("viewer", PERSON, False),
    ("viewer", ASSIGNED_GROUP, False),
    ("viewer", UNASSIGNED_GROUP, False),
]


@pytest.mark.parametrize(
    ("role", "chat_id", "allowed"),
    SEND_MATRIX,
    ids=[f"{r}-{'person' if '@s.' in c else c[-7:-5]}" for r, c, _ in SEND_MATRIX],
)
async def test_check_can_send_matrix(
    env: ContractEnv, actors: dict[str, Actor], role: str, chat_id: str, allowed: bool
) -> None:
    actor = actors[role]
    if allowed:
        await env.access.check_can_send(actor, chat_id)
    else:
        with pytest.raises(PermissionDenied):
            await env.access.check_can_send(actor, chat_id)


async def test_an_agent_outside_the_assigned_employee_group_may_not_send_to_it(
    env: ContractEnv, actors: dict[str, Actor]
) -> None:
    outsider = await env.actor("agent-otto", "agent")

    with pytest.raises(PermissionDenied) as caught:
        await env.access.check_can_send(outsider, ASSIGNED_GROUP)

    assert caught.value.details == {"chat_id": ASSIGNED_GROUP}


async def test_an_agent_sees_only_assigned_chats_and_admins_see_all(
    env: ContractEnv, actors: dict[str, Actor]
) -> None:
    assert await env.access.visible_chat_ids(actors["agent"]) == [ASSIGNED_GROUP]
    assert await env.access.visible_chat_ids(actors["admin"]) is None
    assert await env.access.visible_chat_ids(actors["viewer"]) is None


# --- sending: idempotency ----------------------------------------------------------------


def text_request(to: str = "+4915110000001", body: str = "hello", **extra: Any) -> SendRequest:
    return SendRequest.model_validate({"to": to, "text": {"body": body}, **extra})


async def test_send_stores_a_queued_message_with_its_event(env: ContractEnv) -> None:
    accepted = await env.messaging.send(env.admin, text_request())

    assert accepted.created is True
    stored = await env.message(accepted.message["id"])
    assert (stored["status"], stored["chat_id"], stored["content"]) == (
        "queued",
        PERSON,
        {"type": "text", "text": {"body": "hello", "preview_url": False}},
    )
    assert [e["status"] for e in await env.events(stored["id"])] == ["queued"]


async def test_same_idempotency_key_and_body_returns_the_same_message(env: ContractEnv) -> None:
    first = await env.messaging.send(env.admin, text_request(), idempotency_key="k-1")

    again = await env.messaging.send(env.admin, text_request(), idempotency_key="k-1")

    assert (again.created, again.message["id"]) == (False, first.message["id"]), (
        "a client retry must not queue a second message"
    )
    assert await env.count(messages) == 1


async def test_same_idempotency_key_with_another_body_is_a_conflict(env: ContractEnv) -> None:
    first = await env.messaging.send(env.admin, text_request(), idempotency_key="k-1")

    with pytest.raises(ConflictError) as caught:
        await env.messaging.send(env.admin, text_request(body="other"), idempotency_key="k-1")

    assert caught.value.details == {"message_id": first.message["id"]}
    assert await env.count(messages) == 1


async def test_idempotency_keys_are_scoped_per_user(env: ContractEnv) -> None:
    other = await env.actor("bob", "admin")
    mine = await env.messaging.send(env.admin, text_request(), idempotency_key="k-1")

    theirs = await env.messaging.send(other, text_request(body="other"), idempotency_key="k-1")

    assert theirs.created is True, "another user's key of the same name is another key"
    assert theirs.message["id"] != mine.message["id"]


async def test_concurrent_retries_with_one_key_store_one_message(env: ContractEnv) -> None:
    results = await asyncio.gather(
        *(env.messaging.send(env.admin, text_request(), idempotency_key="k-race") for _ in range(5))
    )

    assert sorted(r.created for r in results) == [False, False, False, False, True]
    assert len({r.message["id"] for r in results}) == 1
    assert await env.count(messages) == 1


@pytest.mark.parametrize("key", ["", "x" * 201])
async def test_an_idempotency_key_of_bad_length_is_refused(env: ContractEnv, key: str) -> None:
    with pytest.raises(ValidationError):
        await env.messaging.send(env.admin, text_request(), idempotency_key=key)


async def test_the_worker_is_woken_for_a_new_message_but_not_for_a_replay(
    env: ContractEnv,
) -> None:
    wakeups: list[None] = []
    messaging = Messaging(env.db, env.access, on_enqueued=lambda: wakeups.append(None))

    await messaging.send(env.admin, text_request(), idempotency_key="k-1")
    await messaging.send(env.admin, text_request(), idempotency_key="k-1")

    assert len(wakeups) == 1


# --- sending: templates ------------------------------------------------------------------


def template_request(
    name: str = "order_update", params: int = 2, code: str = "en_US"
) -> SendRequest:
    return SendRequest.model_validate(
        {
            "to": "+4915110000001",
            "type": "template",
            "template": {
                "name": name,
                "language": {"code": code},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": f"p{i}"} for i in range(params)],
                    }
                ],
            },
        }
    )


@pytest.fixture
async def template(env: ContractEnv) -> None:
    await env.channels.add_template(
        env.channel_id, name="order_update", language="en_US", body_parameters=2, category="utility"
    )


@pytest.mark.usefixtures("template")
async def test_a_registered_template_with_matching_parameters_is_queued(env: ContractEnv) -> None:
    accepted = await env.messaging.send(env.admin, template_request())

    assert accepted.message["template_name"] == "order_update"
    assert accepted.message["content"]["template"]["language"] == {"code": "en_US"}


@pytest.mark.usefixtures("template")
@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(template_request(name="unknown_template"), id="unknown-name"),
        pytest.param(template_request(code="de"), id="unregistered-language"),
    ],
)
async def test_an_unregistered_template_is_refused(env: ContractEnv, request_: SendRequest) -> None:
    with pytest.raises(ValidationError) as caught:
        await env.messaging.send(env.admin, request_)

    assert caught.value.details["field"] == "template.name"
    assert await env.count(messages) == 0, "nothing is stored for a refused request"


@pytest.mark.usefixtures("template")
@pytest.mark.parametrize("params", [0, 1, 3])
async def test_a_template_with_the_wrong_parameter_count_is_refused(
    env: ContractEnv, params: int
) -> None:
    with pytest.raises(ValidationError, match=f"takes 2 body parameter.*{params} given") as caught:
        await env.messaging.send(env.admin, template_request(params=params))

    assert caught.value.details["field"] == "template.components"


# --- sending: groups and channels --------------------------------------------------------


async def test_sending_to_a_readonly_group_is_refused(env: ContractEnv) -> None:
    await env.channels.register_group(
        chat_id=ASSIGNED_GROUP, name="left", channel_id=env.channel_id, readonly=True
    )

    with pytest.raises(ValidationError, match="not a participant") as caught:
        await env.messaging.send(env.admin, text_request(to=ASSIGNED_GROUP))

    assert caught.value.details["field"] == "to"


async def test_sending_to_an_unregistered_group_is_refused(env: ContractEnv) -> None:
    with pytest.raises(ValidationError, match="unknown group") as caught:
        await env.messaging.send(env.admin, text_request(to=UNASSIGNED_GROUP))

    assert caught.value.details["field"] == "to"


async def test_an_agent_sends_to_an_assigned_group(
    env: ContractEnv, actors: dict[str, Actor]
) -> None:
    accepted = await env.messaging.send(actors["agent"], text_request(to=ASSIGNED_GROUP))

    assert accepted.message["chat_id"] == ASSIGNED_GROUP


async def test_an_agent_sending_to_an_unassigned_group_stores_nothing(
    env: ContractEnv, actors: dict[str, Actor]
) -> None:
    with pytest.raises(PermissionDenied):
        await env.messaging.send(actors["agent"], text_request(to=UNASSIGNED_GROUP))

    assert await env.count(messages) == 0


async def test_an_unknown_channel_is_refused(env: ContractEnv) -> None:
    with pytest.raises(ValidationError) as caught:
        await env.messaging.send(env.admin, text_request(channel_id="ch_nope"))

    assert caught.value.details["field"] == "channel_id"


async def test_channel_id_is_required_once_there_are_two_channels(env: ContractEnv) -> None:
    await env.add_channel("second")

    with pytest.raises(ValidationError, match="channel_id is required"):
        await env.messaging.send(env.admin, text_request())


async def test_a_bad_phone_number_is_refused_naming_the_field(env: ContractEnv) -> None:
    with pytest.raises(ValidationError) as caught:
        await env.messaging.send(env.admin, text_request(to="12"))

    assert caught.value.details["field"] == "to"
