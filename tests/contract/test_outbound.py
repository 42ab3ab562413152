"""One way to make an outbound message, on every store backend: every entry point (API
sends, campaigns, auto-replies, messages our number sent from a device) puts a chat's
messages in one ordering lane, and sends and campaigns share one channel choice and one
template check."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, select

from wahub.domain.content import SendRequest
from wahub.domain.errors import ValidationError
from wahub.features.auto_replies import AutoReplies
from wahub.features.campaigns import CampaignCreate, Campaigns
from wahub.features.conversations import InboundPolicy, record_inbound_sync
from wahub.providers.base import InboundMessage
from wahub.store.channels import get_channel_sync
from wahub.store.schema import messages, templates

if TYPE_CHECKING:
    from conftest import ContractEnv

PHONE = "+4915110000001"
CHAT = "4915110000001@s.whatsapp.net"
OTHER_CHAT = "4915110000002@s.whatsapp.net"
TEMPLATE = {"name": "promo", "language": "en", "parameters": ["first_name"]}


def inbound(wamid: str, *, chat_id: str = CHAT, from_me: bool = False) -> InboundMessage:
    return InboundMessage(
        provider="cloudapi",
        provider_message_id=wamid,
        chat_id=chat_id,
        timestamp=int(time.time()),
        type="text",
        content={"type": "text", "text": {"body": "hello"}},
        text="hello",
        sender_phone=None if from_me else PHONE,
        from_me=from_me,
    )


async def record(env: ContractEnv, message: InboundMessage) -> None:
    def write(conn: SyncConnection) -> None:
        channel = get_channel_sync(conn, env.channel_id)
        assert channel is not None
        record_inbound_sync(conn, message, channel, InboundPolicy(), time.time())

    await env.db.write(write)


async def add_template(env: ContractEnv) -> None:
    await env.channels.add_template(
        env.channel_id, name="promo", language="en", body_parameters=1, category="marketing"
    )


async def create_campaign(env: ContractEnv, **fields: Any) -> tuple[Campaigns, str]:
    campaigns = Campaigns(env.db)
    created = await campaigns.create(
        env.admin,
        CampaignCreate(name="spring", templates=[TEMPLATE], **fields),
        f"phone,first_name\n{PHONE},Kerry\n",
    )
    return campaigns, str(created.campaign["id"])


def template_send(name: str = "promo", params: int = 1) -> SendRequest:
    components = [{"type": "body", "parameters": [{"type": "text", "text": "x"}] * params}]
    return SendRequest.model_validate(
        {
            "to": PHONE,
            "type": "template",
            "template": {"name": name, "language": {"code": "en"}, "components": components},
        }
    )


async def stored_messages(env: ContractEnv) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        rows = await conn.execute(select(messages).order_by(messages.c.seq))
        return [dict(r._mapping) for r in rows]


# --- ordering ------------------------------------------------------------------------------


async def test_every_entry_point_puts_a_chat_s_messages_in_one_lane(env: ContractEnv) -> None:
    await add_template(env)
    await AutoReplies(env.db).create(
        {"name": "all", "match_kind": "regex", "pattern": ".", "reply_text": "Thanks!"}
    )
    await env.send_text(PHONE)  # an API send
    await record(env, inbound("wamid.in"))  # answered by the auto-reply rule
    await record(env, inbound("wamid.device", from_me=True))  # sent from our phone
    campaigns, campaign_id = await create_campaign(env)
    await campaigns.act(env.admin, campaign_id, "start")
    await campaigns.dispatch_chunk(campaign_id)
    await env.send_text(OTHER_CHAT.removesuffix("@s.whatsapp.net"))

    by_origin = {
        (m["direction"], m["source"], m["campaign_id"] is not None): m["ordering_key"]
        for m in await stored_messages(env)
        if m["chat_id"] == CHAT
    }
    lane = f"{env.channel_id}:{CHAT}"  # the rule: one lane per chat on a channel

    assert by_origin == {
        ("out", None, False): lane,  # API send
        ("in", None, False): lane,
        ("out", "auto_reply", False): lane,
        ("out", "device", False): lane,
        ("out", None, True): lane,  # campaign
    }
    [other] = [m for m in await stored_messages(env) if m["chat_id"] == OTHER_CHAT]
    assert other["ordering_key"] == f"{env.channel_id}:{OTHER_CHAT}", "another chat, another lane"


async def test_queued_rows_of_every_entry_point_have_the_same_shape(env: ContractEnv) -> None:
    await add_template(env)
    await AutoReplies(env.db).create(
        {"name": "all", "match_kind": "regex", "pattern": ".", "reply_text": "Thanks!"}
    )
    sent = await env.send_text(PHONE, "hi there")
    await record(env, inbound("wamid.in"))
    campaigns, campaign_id = await create_campaign(env)
    await campaigns.act(env.admin, campaign_id, "start")
    await campaigns.dispatch_chunk(campaign_id)

    queued = {
        ("auto_reply" if m["source"] else "campaign" if m["campaign_id"] else "api"): m
        for m in await stored_messages(env)
        if m["status"] == "queued"
    }

    assert set(queued) == {"api", "auto_reply", "campaign"}
    for origin, row in queued.items():
        assert (row["direction"], row["attempts"]) == ("out", 0), origin
        assert row["next_attempt_at"] == row["created_at"], f"{origin}: due when stored"
    assert (queued["api"]["id"], queued["api"]["text"]) == (sent["id"], "hi there")
    assert queued["auto_reply"]["text"] == "Thanks!", "the readable text of a text message"
    assert queued["campaign"]["text"] is None, "a template has no readable text"
    assert queued["campaign"]["priority"] < queued["api"]["priority"], "campaigns yield"


# --- template check --------------------------------------------------------------------------


async def test_sends_and_campaigns_refuse_an_unregistered_template_in_the_same_words(
    env: ContractEnv,
) -> None:
    with pytest.raises(ValidationError) as by_send:
        await env.messaging.send(env.admin, template_send())
    with pytest.raises(ValidationError) as by_campaign:
        await create_campaign(env)

    assert by_send.value.details == {"field": "template.name", "value": "promo"}
    assert by_campaign.value.details == {"field": "templates[0]", "value": "promo"}
    assert by_send.value.message.removeprefix("template.name: ") == (
        by_campaign.value.message.removeprefix("templates[0]: ")
    )
    assert await stored_messages(env) == []


async def test_sends_and_campaigns_refuse_a_wrong_parameter_count_in_the_same_words(
    env: ContractEnv,
) -> None:
    await env.channels.add_template(
        env.channel_id, name="promo", language="en", body_parameters=2, category="marketing"
    )

    with pytest.raises(ValidationError) as by_send:
        await env.messaging.send(env.admin, template_send(params=1))
    with pytest.raises(ValidationError) as by_campaign:
        await create_campaign(env)

    assert by_send.value.details == {"field": "template.components"}
    assert by_campaign.value.details == {"field": "templates[0].parameters"}
    assert by_send.value.message.removeprefix("template.components: ") == (
        by_campaign.value.message.removeprefix("templates[0].parameters: ")
    )
    assert "takes 2 body parameter(s), 1 given" in by_send.value.message


async def test_starting_a_campaign_whose_template_was_removed_is_refused(
    env: ContractEnv,
) -> None:
    await add_template(env)
    campaigns, campaign_id = await create_campaign(env)
    async with env.db.transaction() as conn:
        await conn.execute(delete(templates))

    with pytest.raises(ValidationError, match="is not registered") as caught:
        await campaigns.act(env.admin, campaign_id, "start")

    assert caught.value.details["field"] == "templates[0]"
    assert (await campaigns.get(campaign_id))["status"] == "scheduled"


# --- channel choice ----------------------------------------------------------------------------


async def test_sends_and_campaigns_choose_the_channel_by_one_rule(env: ContractEnv) -> None:
    await add_template(env)
    second = await env.add_channel("second")

    with pytest.raises(ValidationError) as by_send:
        await env.messaging.send(env.admin, template_send())
    with pytest.raises(ValidationError) as by_campaign:
        await create_campaign(env)
    with pytest.raises(ValidationError) as unknown:
        await create_campaign(env, channel_id="ch_nope")

    assert by_send.value.message == by_campaign.value.message
    assert by_send.value.message.startswith("channel_id is required")
    assert sorted(by_campaign.value.details["choices"]) == sorted([env.channel_id, second])
    assert unknown.value.details == {"field": "channel_id", "value": "ch_nope"}
    campaigns, campaign_id = await create_campaign(env, channel_id=env.channel_id)
    assert (await campaigns.get(campaign_id))["channel_id"] == env.channel_id, "the one asked"
