"""Inbound messages through the inbox processor: conversations, contacts, leads, the
24-hour window, opt-out and auto-replies (issue 5), on every store backend."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from sqlalchemy import select

from wahub.domain.content import SendRequest
from wahub.domain.errors import OptedOut, OutsideServiceWindow
from wahub.features.auto_replies import AutoReplies
from wahub.pipeline.inbox import InboxProcessor
from wahub.pipeline.wakeup import Wakeup
from wahub.store import inbox as inbox_q
from wahub.store.schema import (
    chats,
    contacts,
    conversations,
    leads,
    message_events,
    messages,
    notifications,
)

if TYPE_CHECKING:
    from conftest import ContractEnv

PNID = "pnid-main"  # the env channel's phone_number_id


def inbound_webhook(
    *items: dict[str, Any], name: str | None = "Kerry", wa_id: str = "4915110000001", entry="E"
) -> bytes:
    """A Meta Cloud API messages webhook (PROVIDERS.md 1.4) from ``wa_id``."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
        "messages": list(items),
    }
    if name is not None:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": entry, "changes": [{"field": "messages", "value": value}]}],
        }
    )


def text(
    wamid: str, body: str, *, sender: str = "4915110000001", at: int | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": str(at if at is not None else int(time.time())),
        "type": "text",
        "text": {"body": body},
        **extra,
    }


async def deliver(env: ContractEnv, body: bytes) -> None:
    """Store a delivery as the webhook route does and process everything pending."""
    async with env.db.transaction() as conn:
        await inbox_q.store_delivery(
            conn,
            provider="cloudapi",
            dedupe_key=hashlib.sha256(body).hexdigest(),
            headers={},
            body=body,
            now=time.time(),
        )
    await InboxProcessor(env.db, Wakeup()).process_batch()


async def rows(env: ContractEnv, table: Any, *where: Any) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        result = await conn.execute(select(table).where(*where))
        return [dict(r._mapping) for r in result]


async def conversation(env: ContractEnv, chat_id: str) -> dict[str, Any]:
    (row,) = await rows(env, conversations, conversations.c.chat_id == chat_id)
    return row


async def send(env: ContractEnv, to: str, body: str = "hello", **fields: Any) -> dict[str, Any]:
    request = SendRequest.model_validate(
        {"to": to, "type": "text", "text": {"body": body}, "channel_id": env.channel_id, **fields}
    )
    return (await env.messaging.send(env.admin, request)).message


async def enforce_window(env: ContractEnv) -> None:
    from wahub.store.schema import channels

    async with env.db.transaction() as conn:
        await conn.execute(
            channels.update()
            .where(channels.c.id == env.channel_id)
            .values(enforce_service_window=True)
        )


CHAT = "4915110000001@s.whatsapp.net"


async def test_an_inbound_text_creates_message_contact_lead_conversation_and_notification(
    env: ContractEnv,
) -> None:
    at = int(time.time()) - 60
    await deliver(env, inbound_webhook(text("wamid.in1", "Hi there", at=at)))

    (message,) = await rows(env, messages, messages.c.provider_message_id == "wamid.in1")
    assert (message["direction"], message["status"], message["chat_id"]) == ("in", "received", CHAT)
    assert (message["sender_phone"], message["sender_name"]) == ("+4915110000001", "Kerry")
    assert message["text"] == "Hi there"
    (contact,) = await rows(env, contacts)
    assert (contact["phone"], contact["name"], contact["name_source"]) == (
        "+4915110000001",
        "Kerry",
        "profile",
    )
    (lead,) = await rows(env, leads)
    assert (lead["contact_id"], lead["status"]) == (contact["id"], "new")
    conv = await conversation(env, CHAT)
    assert conv["channel_id"] == env.channel_id
    assert (conv["contact_id"], conv["lead_id"]) == (contact["id"], lead["id"])
    assert (conv["unread_count"], conv["last_message_id"]) == (1, message["id"])
    assert conv["last_message_preview"] == "Hi there"
    assert conv["service_window_until"] == at + 24 * 3600, "the window is last inbound + 24 h"
    (note,) = await rows(env, notifications)
    assert (note["conversation_id"], note["message_id"]) == (conv["id"], message["id"])
    assert "Kerry" in note["title"]
    events = await env.events(message["id"])
    assert [e["status"] for e in events] == ["received"], "the realtime feed tails this event"


async def test_the_same_message_in_two_deliveries_is_stored_and_counted_once(
    env: ContractEnv,
) -> None:
    item = text("wamid.dup", "once")
    await deliver(env, inbound_webhook(item, entry="first"))
    await deliver(env, inbound_webhook(item, entry="redelivered"))

    assert len(await rows(env, messages, messages.c.provider_message_id == "wamid.dup")) == 1
    assert (await conversation(env, CHAT))["unread_count"] == 1
    assert len(await rows(env, notifications)) == 1
    assert await env.count(message_events) == 1


async def test_unread_counts_every_message_and_reading_resets_it(env: ContractEnv) -> None:
    await deliver(env, inbound_webhook(text("wamid.a", "one"), text("wamid.b", "two")))
    await deliver(env, inbound_webhook(text("wamid.c", "three")))
    conv = await conversation(env, CHAT)
    assert conv["unread_count"] == 3
    assert conv["last_message_preview"] == "three"

    await env.db.write(lambda conn: _read(conn, conv["id"]))

    assert (await conversation(env, CHAT))["unread_count"] == 0
    assert all(n["read_at"] is not None for n in await rows(env, notifications))


def _read(conn: Any, conversation_id: str) -> bool:
    from wahub.store.conversations import mark_conversation_read_sync

    return mark_conversation_read_sync(conn, conversation_id, time.time())


async def test_a_late_older_message_does_not_become_the_last_message(env: ContractEnv) -> None:
    now = int(time.time())
    await deliver(env, inbound_webhook(text("wamid.new", "newer", at=now)))
    await deliver(env, inbound_webhook(text("wamid.old", "older", at=now - 600)))

    conv = await conversation(env, CHAT)
    assert conv["last_message_preview"] == "newer"
    assert conv["service_window_until"] == now + 24 * 3600
    assert conv["unread_count"] == 2


async def test_a_profile_rename_updates_the_contact_but_an_operator_name_stays(
    env: ContractEnv,
) -> None:
    await deliver(env, inbound_webhook(text("wamid.1", "hi"), name="Kerry"))
    await deliver(env, inbound_webhook(text("wamid.2", "hi"), name="Kerry M."))
    (contact,) = await rows(env, contacts)
    assert contact["name"] == "Kerry M."

    async with env.db.transaction() as conn:
        await conn.execute(contacts.update().values(name="Kerry (VIP)", name_source="api"))
    await deliver(env, inbound_webhook(text("wamid.3", "hi"), name="K"))
    (contact,) = await rows(env, contacts)
    assert contact["name"] == "Kerry (VIP)"


async def test_the_chat_name_cache_learns_the_senders_profile_name_without_a_provider_call(
    env: ContractEnv,
) -> None:
    await deliver(env, inbound_webhook(text("wamid.1", "hi"), name="Kerry"))
    (chat,) = await rows(env, chats, chats.c.chat_id == "4915110000001@s.whatsapp.net")
    assert (chat["name"], chat["name_source"], chat["kind"]) == ("Kerry", "profile", "person")

    # An admin's name outranks a profile name; the next webhook does not undo it.
    async with env.db.transaction() as conn:
        await conn.execute(chats.update().values(name="Kerry (VIP)", name_source="api"))
    await deliver(env, inbound_webhook(text("wamid.2", "hi"), name="K"))
    (chat,) = await rows(env, chats, chats.c.chat_id == "4915110000001@s.whatsapp.net")
    assert chat["name"] == "Kerry (VIP)"


async def test_lead_moves_new_contacted_replied_and_never_back(env: ContractEnv) -> None:
    await deliver(env, inbound_webhook(text("wamid.1", "interested")))
    assert [lead["status"] for lead in await rows(env, leads)] == ["new"]

    await send(env, "+4915110000001", "Here are our prices")
    assert [lead["status"] for lead in await rows(env, leads)] == ["contacted"]
    conv = await conversation(env, CHAT)
    assert (conv["last_message_direction"], conv["last_message_preview"]) == (
        "out",
        "Here are our prices",
    )
    assert conv["unread_count"] == 1, "our own send is not unread"

    await deliver(env, inbound_webhook(text("wamid.2", "thanks")))
    assert [lead["status"] for lead in await rows(env, leads)] == ["replied"]

    await send(env, "+4915110000001", "more")
    assert [lead["status"] for lead in await rows(env, leads)] == ["replied"]


async def test_a_first_inbound_after_our_message_creates_a_replied_lead(env: ContractEnv) -> None:
    await send(env, "+4915110000001", "campaign")
    await deliver(env, inbound_webhook(text("wamid.1", "tell me more")))

    assert [lead["status"] for lead in await rows(env, leads)] == ["replied"]
    conv = await conversation(env, CHAT)
    (lead,) = await rows(env, leads)
    assert conv["lead_id"] == lead["id"]


async def test_a_reply_links_to_the_message_it_quotes_and_a_reaction_to_its_target(
    env: ContractEnv,
) -> None:
    ours = await send(env, "+4915110000001", "Do you want a demo?")
    await env.claim()
    await env.mark_sent(ours["id"], "wamid.ours")

    reply = text("wamid.r", "Yes please", context={"from": "15550783881", "id": "wamid.ours"})
    reaction = {
        "from": "4915110000001",
        "id": "wamid.x",
        "timestamp": str(int(time.time())),
        "type": "reaction",
        "reaction": {"message_id": "wamid.ours", "emoji": "👍"},
    }
    await deliver(env, inbound_webhook(reply, reaction))

    (stored_reply,) = await rows(env, messages, messages.c.provider_message_id == "wamid.r")
    assert (stored_reply["reply_to"], stored_reply["quoted_message_id"]) == (
        "wamid.ours",
        ours["id"],
    )
    (stored_reaction,) = await rows(env, messages, messages.c.provider_message_id == "wamid.x")
    assert (stored_reaction["type"], stored_reaction["text"]) == ("reaction", "👍")
    assert stored_reaction["quoted_message_id"] == ours["id"]
    assert (await conversation(env, CHAT))["unread_count"] == 1, "a reaction is not unread"


async def test_a_reply_delivered_before_the_message_it_quotes_is_linked_when_it_arrives(
    env: ContractEnv,
) -> None:
    quoting = text("wamid.second", "yes, that one", context={"from": "x", "id": "wamid.first"})
    await deliver(env, inbound_webhook(quoting))
    (early,) = await rows(env, messages, messages.c.provider_message_id == "wamid.second")
    assert (early["reply_to"], early["quoted_message_id"]) == ("wamid.first", None)

    await deliver(env, inbound_webhook(text("wamid.first", "which plan is cheaper?")))

    (first,) = await rows(env, messages, messages.c.provider_message_id == "wamid.first")
    (linked,) = await rows(env, messages, messages.c.provider_message_id == "wamid.second")
    assert linked["quoted_message_id"] == first["id"]


async def test_a_reply_is_linked_when_our_message_learns_its_provider_id_later(
    env: ContractEnv,
) -> None:
    ours = await send(env, "+4915110000001", "Shall we call tomorrow?")
    await env.claim()
    reply = text("wamid.r2", "Sure", context={"from": "15550783881", "id": "wamid.late"})
    await deliver(env, inbound_webhook(reply))
    (waiting,) = await rows(env, messages, messages.c.provider_message_id == "wamid.r2")
    assert waiting["quoted_message_id"] is None, "our send's result is not recorded yet"

    await env.mark_sent(ours["id"], "wamid.late")

    (linked,) = await rows(env, messages, messages.c.provider_message_id == "wamid.r2")
    assert linked["quoted_message_id"] == ours["id"]
    (untouched,) = await rows(env, messages, messages.c.id == ours["id"])
    assert untouched["quoted_message_id"] is None


async def test_an_unknown_type_is_stored_as_given(env: ContractEnv) -> None:
    odd = {
        "from": "4915110000001",
        "id": "wamid.odd",
        "timestamp": str(int(time.time())),
        "type": "hologram",
        "hologram": {"x": 1},
    }
    await deliver(env, inbound_webhook(odd))

    (stored,) = await rows(env, messages, messages.c.provider_message_id == "wamid.odd")
    assert (stored["type"], stored["content"]["hologram"]) == ("hologram", {"x": 1})
    assert (await conversation(env, CHAT))["last_message_preview"] == "[hologram]"


async def test_a_message_for_an_unknown_channel_is_a_dead_letter_naming_it(
    env: ContractEnv,
) -> None:
    body = inbound_webhook(text("wamid.1", "hi")).replace(PNID.encode(), b"999999")

    await deliver(env, body)

    async with env.db.read() as conn:
        (delivery,) = await inbox_q.list_deliveries(conn, status=None, limit=10)
    assert delivery["status"] == "dead"
    assert "999999" in delivery["error"]
    assert "unknown channel" in delivery["error"]
    assert await env.count(messages) == 0


# -- the sender's rules ----------------------------------------------------------------


async def test_free_form_outside_the_window_is_refused_with_a_clear_error(
    env: ContractEnv,
) -> None:
    await enforce_window(env)

    with pytest.raises(OutsideServiceWindow) as never_wrote:
        await send(env, "+4915110000001")
    assert "24-hour" in never_wrote.value.message
    assert "template" in never_wrote.value.message
    assert never_wrote.value.code == "outside_service_window"

    old = int(time.time()) - 25 * 3600
    await deliver(env, inbound_webhook(text("wamid.old", "hi", at=old)))
    with pytest.raises(OutsideServiceWindow):
        await send(env, "+4915110000001")
    assert await env.count(messages) == 1, "nothing but the inbound message is stored"


async def test_free_form_inside_the_window_and_templates_outside_it_are_accepted(
    env: ContractEnv,
) -> None:
    await enforce_window(env)
    await env.channels.add_template(
        env.channel_id, name="welcome", language="en_US", body_parameters=0, category="utility"
    )
    template = SendRequest.model_validate(
        {
            "to": "+4915110000002",
            "type": "template",
            "template": {"name": "welcome", "language": {"code": "en_US"}},
            "channel_id": env.channel_id,
        }
    )
    assert (await env.messaging.send(env.admin, template)).created

    await deliver(env, inbound_webhook(text("wamid.1", "hello")))
    assert (await send(env, "+4915110000001", "welcome back"))["status"] == "queued"


async def test_an_opt_out_keyword_refuses_later_sends_until_start(env: ContractEnv) -> None:
    await deliver(env, inbound_webhook(text("wamid.1", " Arrêt! ")))
    (contact,) = await rows(env, contacts)
    assert contact["opted_out_at"] is not None

    with pytest.raises(OptedOut) as refused:
        await send(env, "+4915110000001")
    assert refused.value.code == "opted_out"
    assert "+4915110000001" in refused.value.message

    await deliver(env, inbound_webhook(text("wamid.2", "START")))
    assert (await send(env, "+4915110000001"))["status"] == "queued"


async def test_stop_inside_a_sentence_is_not_an_opt_out(env: ContractEnv) -> None:
    await deliver(env, inbound_webhook(text("wamid.1", "please don't stop the offers")))

    (contact,) = await rows(env, contacts)
    assert contact["opted_out_at"] is None


# -- auto-replies ----------------------------------------------------------------------


async def auto_replies(env: ContractEnv) -> list[dict[str, Any]]:
    return await rows(env, messages, messages.c.source == "auto_reply")


async def test_a_keyword_rule_answers_once_per_cooldown_and_the_reply_is_queued(
    env: ContractEnv,
) -> None:
    await AutoReplies(env.db).create(
        {
            "name": "prices",
            "match_kind": "keyword",
            "pattern": "price, cost",
            "reply_text": "Our prices: example.com/prices",
        }
    )

    await deliver(env, inbound_webhook(text("wamid.1", "What's the PRICE?")))
    await deliver(env, inbound_webhook(text("wamid.2", "price again?")))
    await deliver(env, inbound_webhook(text("wamid.3", "priceless")))

    (reply,) = await auto_replies(env)
    assert (reply["direction"], reply["status"], reply["chat_id"]) == ("out", "queued", CHAT)
    assert reply["content"] == {
        "type": "text",
        "text": {"body": "Our prices: example.com/prices"},
    }
    claimed = await env.claim()
    assert [m["id"] for m in claimed] == [reply["id"]], "the outbox sends it like any message"
    assert [lead["status"] for lead in await rows(env, leads)] == ["new"], "a bot is not a person"


async def test_no_auto_reply_to_our_own_number_or_to_a_non_matching_message(
    env: ContractEnv,
) -> None:
    await AutoReplies(env.db).create(
        {"name": "all", "match_kind": "regex", "pattern": ".", "reply_text": "Thanks!"}
    )
    from wahub.features.conversations import InboundPolicy, record_inbound_sync
    from wahub.providers.base import InboundMessage
    from wahub.store.channels import get_channel_sync

    own = InboundMessage(
        provider="cloudapi",
        provider_message_id="wamid.me",
        chat_id=CHAT,
        timestamp=int(time.time()),
        type="text",
        content={},
        text="sent from the phone",
        from_me=True,
    )

    def record(conn: Any) -> Any:
        channel = get_channel_sync(conn, env.channel_id)
        assert channel is not None
        return record_inbound_sync(conn, own, channel, InboundPolicy(), time.time())

    recorded = await env.db.write(record)

    assert recorded is not None
    assert recorded.auto_reply_id is None
    assert await auto_replies(env) == []
    (stored,) = await rows(env, messages, messages.c.provider_message_id == "wamid.me")
    assert (stored["direction"], stored["status"]) == ("out", "sent")
    assert (await conversation(env, CHAT))["unread_count"] == 0


async def test_first_message_rule_answers_only_the_message_that_opened_the_conversation(
    env: ContractEnv,
) -> None:
    await AutoReplies(env.db).create(
        {
            "name": "hello",
            "match_kind": "first_message",
            "reply_text": "Welcome!",
            "cooldown_seconds": 60,
        }
    )

    await deliver(env, inbound_webhook(text("wamid.1", "hi")))
    await deliver(env, inbound_webhook(text("wamid.2", "hi again")))

    assert len(await auto_replies(env)) == 1


async def test_outside_hours_rule_follows_the_rules_time_zone(env: ContractEnv) -> None:
    # Open every day 00:00-00:01 in Kiritimati (UTC+14): practically always closed.
    await AutoReplies(env.db).create(
        {
            "name": "closed",
            "match_kind": "outside_hours",
            "reply_text": "We are closed",
            "business_hours": {
                "timezone": "Pacific/Kiritimati",
                "days": [0, 1, 2, 3, 4, 5, 6],
                "start": "00:00",
                "end": "00:01",
            },
        }
    )
    # A message sent at 00:00:30 Kiritimati time is inside business hours.
    inside = 1_767_175_200 + 30  # 2026-01-01 00:00:30 +14:00 = 2025-12-31 10:00:30 UTC

    from wahub.domain.inbound import rule_matches

    rule = (await AutoReplies(env.db).list_all())[0]
    assert rule_matches(rule, text="x", at=inside, first_message=False) is False
    assert rule_matches(rule, text="x", at=inside + 3600, first_message=False) is True


async def test_the_hourly_cap_stops_replies_across_rules(env: ContractEnv) -> None:
    service = AutoReplies(env.db)
    for n in range(5):
        await service.create(
            {"name": f"r{n}", "match_kind": "keyword", "pattern": f"w{n}", "reply_text": f"a{n}"}
        )

    for n in range(5):
        await deliver(env, inbound_webhook(text(f"wamid.{n}", f"w{n}")))

    assert len(await auto_replies(env)) == 3, "WAHUB_AUTO_REPLY_MAX_PER_CHAT_PER_HOUR=3"


async def test_no_auto_reply_to_an_opted_out_contact(env: ContractEnv) -> None:
    await AutoReplies(env.db).create(
        {"name": "any", "match_kind": "regex", "pattern": ".", "reply_text": "Hi!"}
    )

    await deliver(env, inbound_webhook(text("wamid.1", "STOP")))

    assert await auto_replies(env) == []
