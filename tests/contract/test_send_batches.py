"""Sends that arrive together are checked one by one and stored as one batch (one
transaction, set-wise statements): each gets exactly what it would have got alone."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from wahub.domain.content import SendRequest
from wahub.domain.errors import OptedOut, ValidationError
from wahub.features.messaging import Accepted
from wahub.store import conversations as conv_q
from wahub.store.schema import conversations, leads, message_events, messages

if TYPE_CHECKING:
    from conftest import ContractEnv


async def rows(env: ContractEnv, table: Any, *where: Any) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(table).where(*where))]


async def add_contact(env: ContractEnv, n: int, *, opted_out: bool = False) -> None:
    """A contact for ``phone(n)`` with a ``new`` lead, as a first inbound message leaves."""

    def write(conn: Any) -> None:
        contact = conv_q.upsert_contact_sync(
            conn, phone=env.phone(n), wa_id=None, profile_name=f"p{n}", now=1.0
        )
        conv_q.upsert_lead_on_inbound_sync(
            conn, contact["id"], at=1.0, we_wrote_first=False, now=1.0
        )
        if opted_out:
            conv_q.set_opt_out_sync(conn, contact["id"], opted_out_at=1.0, reason="STOP", now=1.0)

    async with env.db.transaction() as conn:
        await conn.run_sync(write)


def text(env: ContractEnv, n: int, body: str, **fields: Any) -> SendRequest:
    return SendRequest.model_validate(
        {"to": env.phone(n), "text": {"body": body}, "channel_id": env.channel_id, **fields}
    )


async def test_concurrent_sends_are_each_checked_stored_and_folded_like_single_ones(
    env: ContractEnv,
) -> None:
    await add_contact(env, 1)  # a lead that our message moves to contacted
    await add_contact(env, 2, opted_out=True)
    requests = [text(env, n, f"m{n}.{i}") for i in range(4) for n in (1, 2, 3)]
    requests.append(text(env, 4, "x", channel_id="ch_nope"))
    outcomes = await asyncio.gather(
        *(env.messaging.send(env.admin, r) for r in requests), return_exceptions=True
    )

    refused = [o for o, r in zip(outcomes, requests, strict=True) if r.to == env.phone(2)]
    assert all(isinstance(o, OptedOut) for o in refused), "the opted-out recipient is refused"
    assert isinstance(outcomes[-1], ValidationError), "an unknown channel is refused"
    assert "ch_nope" in outcomes[-1].message
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert len(accepted) == 8
    assert all(a.created and a.message["status"] == "queued" for a in accepted)

    stored = await rows(env, messages)
    assert sorted(m["id"] for m in stored) == sorted(a.message["id"] for a in accepted)
    assert {m["chat_id"] for m in stored} == {env.person_chat(1), env.person_chat(3)}
    events = await rows(env, message_events)
    assert sorted(e["message_id"] for e in events) == sorted(m["id"] for m in stored)
    assert {e["status"] for e in events} == {"queued"}

    for n in (1, 3):
        (conv,) = await rows(env, conversations, conversations.c.chat_id == env.person_chat(n))
        latest = max(
            (m for m in stored if m["chat_id"] == env.person_chat(n)),
            key=lambda m: (m["created_at"], m["seq"]),
        )
        assert conv["last_message_at"] == latest["created_at"]
        assert conv["last_message_direction"] == "out"
        assert conv["unread_count"] == 0, "our own sends are not unread"
    (conv1,) = await rows(env, conversations, conversations.c.chat_id == env.person_chat(1))
    (lead,) = [row for row in await rows(env, leads) if row["id"] == conv1["lead_id"]]
    assert lead["status"] == "contacted", "the contact's new lead was contacted"
    assert conv1["contact_id"] == lead["contact_id"]
    assert await rows(env, conversations, conversations.c.chat_id == env.person_chat(2)) == []


@pytest.mark.parametrize("same_body", [True, False])
async def test_one_idempotency_key_sent_twice_at_once_stores_one_message(
    env: ContractEnv, same_body: bool
) -> None:
    first = text(env, 1, "once")
    second = first if same_body else text(env, 1, "other")
    outcomes = await asyncio.gather(
        env.messaging.send(env.admin, first, idempotency_key="k1"),
        env.messaging.send(env.admin, second, idempotency_key="k1"),
        return_exceptions=True,
    )
    assert len(await rows(env, messages)) == 1
    winner, loser = sorted(outcomes, key=lambda o: not (isinstance(o, Accepted) and o.created))
    assert isinstance(winner, Accepted)
    assert winner.created
    if same_body:
        assert isinstance(loser, Accepted), "a retry gets the same message back"
        assert loser.message["id"] == winner.message["id"]
        assert not loser.created
    else:
        assert isinstance(loser, Exception), "the same key with another body is a conflict"
        assert getattr(loser, "code", None) == "conflict"
