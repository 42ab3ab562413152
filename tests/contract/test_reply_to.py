"""``reply_to`` naming one of our messages: refused at send time when there is nothing
to quote, held in the queue while the quoted message has not been sent yet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wahub.domain.content import SendRequest
from wahub.domain.errors import ValidationError
from wahub.domain.ids import new_id
from wahub.store import messages as q
from wahub.store.schema import messages

if TYPE_CHECKING:
    from conftest import ContractEnv


async def reply(env: ContractEnv, to: str, reply_to: str, **fields: Any) -> dict[str, Any]:
    request = SendRequest.model_validate(
        {"to": to, "text": {"body": "re"}, "reply_to": reply_to, **fields}
    )
    return (await env.messaging.send(env.admin, request)).message


async def refusal(env: ContractEnv, to: str, reply_to: str, **fields: Any) -> ValidationError:
    before = await env.count(messages)
    with pytest.raises(ValidationError) as caught:
        await reply(env, to, reply_to, **fields)
    assert caught.value.details["field"] == "reply_to"
    assert await env.count(messages) == before, "a refused reply stores nothing"
    return caught.value


async def test_a_reply_to_a_message_id_we_never_had_is_refused(env: ContractEnv) -> None:
    unknown = new_id("msg")

    refused = await refusal(env, env.phone(1), unknown)

    assert refused.message == f"reply_to: no message {unknown}"


async def test_a_reply_quoting_a_message_of_another_chat_is_refused(env: ContractEnv) -> None:
    quoted = await env.send_text(env.phone(1))

    refused = await refusal(env, env.phone(2), quoted["id"])

    assert "is not in this chat on this channel" in refused.message


async def test_a_reply_quoting_a_message_of_another_channel_is_refused(env: ContractEnv) -> None:
    quoted = await env.send_text(env.phone(1))
    other = await env.add_channel("second")

    refused = await refusal(env, env.phone(1), quoted["id"], channel_id=other)

    assert "is not in this chat on this channel" in refused.message


async def test_a_reply_to_a_message_that_failed_unsent_is_refused(env: ContractEnv) -> None:
    quoted = await env.send_text(env.phone(1))
    [claimed] = await env.claim()
    await env.record(q.SendOutcome(claimed["id"], 1, "failed", error_code="131026"))

    refused = await refusal(env, env.phone(1), quoted["id"])

    assert refused.message.startswith(f"reply_to: message {quoted['id']} was never sent (failed)")


async def test_a_reply_to_a_sent_message_is_accepted(env: ContractEnv) -> None:
    quoted = await env.send_text(env.phone(1))
    await env.claim()
    await env.mark_sent(quoted["id"], "wamid.quoted")

    stored = await reply(env, env.phone(1), quoted["id"])

    assert (stored["status"], stored["reply_to"]) == ("queued", quoted["id"])


async def test_a_reply_to_a_provider_id_is_passed_on_as_given(env: ContractEnv) -> None:
    stored = await reply(env, env.phone(1), "wamid.from-before-wahub")

    assert stored["reply_to"] == "wamid.from-before-wahub"


async def test_a_reply_to_a_queued_message_waits_until_it_is_sent(env: ContractEnv) -> None:
    quoted = await env.send_text(env.phone(1))
    held = await reply(env, env.phone(1), quoted["id"], priority=10)

    first = await env.claim()
    assert [m["id"] for m in first] == [quoted["id"]], "the reply waits, whatever its priority"
    assert await env.claim() == [], "still waiting while the quoted message is in flight"

    await env.mark_sent(quoted["id"], "wamid.quoted")
    second = await env.claim()

    assert [m["id"] for m in second] == [held["id"]]
    assert (await env.message(quoted["id"]))["provider_message_id"] == "wamid.quoted"
