"""The sandbox's simulated inbound traffic over real HTTP: ``POST /_sandbox/inbound``
emits what it says, in each provider's shape, signed the provider's way, retried while
the receiver is down; the trickle knob emits on its own. Every emitted body is read
back with our own parsers, so shapes and parsers agree."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from wahub.providers.cloudapi import webhooks as cloudapi_webhooks
from wahub.providers.periskope import webhooks as periskope_webhooks
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.providers.whapi import webhooks as whapi_webhooks
from webhook_catcher import Received
from webhook_catcher import WebhookCatcher as Receiver

APP_SECRET = "test-app-secret"
WHAPI_SECRET = "test-whapi-secret"
PERISKOPE_KEY = "test-periskope-key"
PHONE_NUMBER_ID = "106540352242922"


StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    yield receiver
    if receiver.runner is not None:
        await receiver.runner.cleanup()


@pytest.fixture
async def sandbox(receiver: Receiver) -> AsyncIterator[tuple[Sandbox, str]]:
    hook = await receiver.start()
    config = SandboxConfig(
        app_secret=APP_SECRET,
        webhook_url=f"{hook}/cloudapi",
        whapi_webhook_url=f"{hook}/whapi",
        whapi_webhook_secret=WHAPI_SECRET,
        periskope_webhook_url=f"{hook}/periskope",
        periskope_signing_key=PERISKOPE_KEY,
        webhook_backoff_initial_s=0.01,
        webhook_delay_ms=1,
        seed=7,
    )
    box = Sandbox(config)
    url = await box.start()
    yield box, url
    await box.stop()


async def inbound(
    http: aiohttp.ClientSession, url: str, status: int = 200, **body: Any
) -> dict[str, Any]:
    """POST /_sandbox/inbound; ``from_`` is sent as ``from``."""
    if "from_" in body:
        body["from"] = body.pop("from_")
    async with http.post(url + "/_sandbox/inbound", json=body) as response:
        payload: dict[str, Any] = await response.json()
        assert response.status == status, payload
        return payload


def is_inbound_message(post: Received) -> bool:
    """A Cloud API POST carrying messages (not the statuses of our sends)."""
    value = orjson.loads(post.body)["entry"][0]["changes"][0]["value"]
    return "messages" in value


async def cloudapi_send(http: aiohttp.ClientSession, url: str, to: str) -> str:
    body = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}
    async with http.post(f"{url}/v21.0/{PHONE_NUMBER_ID}/messages", json=body) as response:
        assert response.status == 200
        wamid: str = (await response.json())["messages"][0]["id"]
        return wamid


# --- Cloud API ---------------------------------------------------------------------------


async def test_cloudapi_messages_of_every_kind_are_signed_and_parse(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    wamid = await cloudapi_send(http, url, "4915112345678")
    kinds = [
        "text", "reply", "image", "document", "reaction", "location", "interactive", "unsupported",
    ]  # fmt: skip

    answer = await inbound(http, url, provider="cloudapi", count=len(kinds), kinds=kinds)
    await box.wait_webhooks_idle(5)

    assert answer["count"] == len(kinds)
    posts = receiver.on("/cloudapi")
    inbound_posts = [p for p in posts if is_inbound_message(p)]
    assert len(inbound_posts) == len(kinds)
    by_id = {}
    for post in inbound_posts:
        signature = post.headers["X-Hub-Signature-256"]
        assert cloudapi_webhooks.verify_signature(APP_SECRET, post.body, signature)
        payload = orjson.loads(post.body)
        value = payload["entry"][0]["changes"][0]["value"]
        assert value["metadata"]["phone_number_id"] == PHONE_NUMBER_ID
        (message,) = value["messages"]
        assert value["contacts"][0]["wa_id"] == message["from"]
        by_id[message["id"]] = message
    emitted = answer["emitted"]
    assert [e["kind"] for e in emitted] == kinds
    for record in emitted:
        message = by_id[record["message_id"]]
        if record["kind"] in ("reply", "reaction", "interactive"):
            assert message["from"] == "4915112345678"  # the lead we wrote to answers
        else:
            assert message["from"] != "4915112345678"  # a new lead writes first
    types = [by_id[e["message_id"]]["type"] for e in emitted]
    assert types == [
        "text", "text", "image", "document", "reaction", "location", "interactive", "unsupported",
    ]  # fmt: skip
    reply = by_id[emitted[1]["message_id"]]
    assert reply["context"]["id"] == wamid
    reaction = by_id[emitted[4]["message_id"]]
    assert reaction["reaction"]["message_id"] == wamid
    assert by_id[emitted[2]["message_id"]]["image"]["caption"]
    assert by_id[emitted[7]["message_id"]]["errors"][0]["code"] == 131051


async def test_new_leads_write_first_from_random_numbers(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox

    answer = await inbound(http, url, provider="cloudapi", count=5, from_="random")
    await box.wait_webhooks_idle(5)

    senders = {e["sender"] for e in answer["emitted"]}
    assert len(senders) > 1
    assert all(s.startswith("1415") and len(s) == 11 for s in senders)
    assert len(receiver.on("/cloudapi")) == 5


async def test_given_senders_and_reply_to_are_used(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox

    answer = await inbound(
        http,
        url,
        provider="cloudapi",
        count=4,
        kinds=["reply"],
        reply_to="wamid.OURS",
        channel=PHONE_NUMBER_ID,
        from_=["+4915100000001", "4915100000002"],
    )
    await box.wait_webhooks_idle(5)

    assert [e["sender"] for e in answer["emitted"]] == ["4915100000001", "4915100000002"] * 2
    assert {e["reply_to"] for e in answer["emitted"]} == {"wamid.OURS"}


async def test_answers_without_anything_to_answer_are_refused(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    _, url = sandbox

    answer = await inbound(http, url, status=409, provider="cloudapi", kinds=["reply"])

    assert "nothing to answer" in answer["error"]["message"]
    assert receiver.received == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"provider": "telegram"}, "provider"),
        ({"count": 0}, "count"),
        ({"kinds": ["fax"]}, "kinds"),
        ({"provider": "periskope", "kinds": ["reaction"]}, "kinds"),
        ({"from_": ["not a phone"]}, "from"),
        ({"chat_id": "4915112345678@s.whatsapp.net", "provider": "whapi"}, "chat_id"),
        ({"chat_id": "120363000000000001@g.us"}, "group"),
        ({"colour": "blue"}, "unknown"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], body: dict[str, Any], fragment: str
) -> None:
    _, url = sandbox

    answer = await inbound(http, url, status=400, **body)

    assert fragment in answer["error"]["message"]


async def test_a_provider_without_a_webhook_url_is_409(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str]
) -> None:
    box, url = sandbox
    box.config.whapi_webhook_url = None

    answer = await inbound(http, url, status=409, provider="whapi")

    assert "whapi_webhook_url" in answer["error"]["message"]


async def test_inbound_webhooks_are_retried_until_the_hub_takes_them(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    receiver.fail_first = 3

    await inbound(http, url, provider="cloudapi", count=2)
    await box.wait_webhooks_idle(5)

    assert len(receiver.received) == 2
    stats = box.stats()
    assert stats["inbound_emitted"] == 2
    assert stats["inbound_delivered"] == 2
    assert stats["inbound_attempts_failed"] == 3
    assert stats["webhooks_delivered"] == 0  # status webhooks are counted apart


# --- WHAPI -------------------------------------------------------------------------------


async def test_whapi_messages_carry_the_secret_and_parse(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    kinds = ["text", "reply", "image", "document", "reaction", "location", "interactive"]

    answer = await inbound(
        http, url, provider="whapi", count=len(kinds), kinds=kinds, reply_to="p.ours-1"
    )
    await box.wait_webhooks_idle(5)

    posts = receiver.on("/whapi")
    assert len(posts) == len(kinds)
    assert all(p.query == {"secret": WHAPI_SECRET} for p in posts)
    parsed = {
        m.provider_message_id: m for p in posts for m in whapi_webhooks.parse_body(p.body).messages
    }
    types = [parsed[e["message_id"]].type for e in answer["emitted"]]
    assert types == ["text", "text", "image", "document", "reaction", "location", "reply"]
    for record in answer["emitted"]:
        message = parsed[record["message_id"]]
        assert message.channel_ref == "SANDBOX-WHAPI"
        assert message.sender_phone == "+" + record["sender"]
        if message.type == "reaction":
            assert message.reaction_to_provider_id == "p.ours-1"
        else:
            assert message.reply_to_provider_id == "p.ours-1"


async def test_whapi_group_messages_come_from_members_of_the_group(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    group = "120363271212442249@g.us"

    await inbound(http, url, provider="whapi", count=3, chat_id=group, from_="random")
    await box.wait_webhooks_idle(5)

    messages = [
        m for p in receiver.on("/whapi") for m in whapi_webhooks.parse_body(p.body).messages
    ]
    assert len(messages) == 3
    assert {m.chat_id for m in messages} == {group}
    assert all(m.sender_phone for m in messages)


# --- Periskope ---------------------------------------------------------------------------


async def test_periskope_messages_are_signed_and_parse(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox

    answer = await inbound(
        http, url, provider="periskope", count=3, kinds=["text", "image", "document"]
    )
    await box.wait_webhooks_idle(5)

    posts = receiver.on("/periskope")
    assert len(posts) == 3
    people = {c["chat_id"] for c in box.periskope.chats if c["chat_id"].endswith("@c.us")}
    for post in posts:
        signature = post.headers["x-periskope-signature"]
        expected = hmac.new(PERISKOPE_KEY.encode(), post.body, hashlib.sha256).hexdigest()
        assert signature == expected
        assert periskope_webhooks.verify_signature(PERISKOPE_KEY, post.body, signature)
        (message,) = periskope_webhooks.parse_body(post.body).messages
        assert message.channel_ref == box.config.periskope_org_phone
        assert message.chat_id.replace("@s.whatsapp.net", "@c.us") in people
    assert [e["kind"] for e in answer["emitted"]] == ["text", "image", "document"]


async def test_periskope_group_reply(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    group = "120363417563833505@g.us"

    await inbound(
        http, url, provider="periskope", kinds=["reply"], chat_id=group, reply_to="true_x_ABC_y"
    )
    await box.wait_webhooks_idle(5)

    (post,) = receiver.on("/periskope")
    (message,) = periskope_webhooks.parse_body(post.body).messages
    assert message.chat_id == group
    assert message.reply_to_provider_id == "true_x_ABC_y"
    assert message.sender_phone is not None


# --- log, reset, trickle -----------------------------------------------------------------


async def test_the_log_lists_what_was_emitted_until_reset(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str]
) -> None:
    box, url = sandbox
    await inbound(http, url, provider="cloudapi", count=2)
    await inbound(http, url, provider="whapi")
    await box.wait_webhooks_idle(5)

    async with http.get(url + "/_sandbox/inbound") as response:
        log = await response.json()
    assert log["count"] == 3
    assert [e["provider"] for e in log["inbound"]] == ["cloudapi", "cloudapi", "whapi"]

    async with http.post(url + "/_sandbox/reset"):
        pass
    async with http.get(url + "/_sandbox/inbound") as response:
        assert (await response.json())["count"] == 0


async def test_inbound_knobs_are_set_through_the_config_endpoint_and_secrets_masked(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str]
) -> None:
    box, url = sandbox
    changes = {
        "whapi_webhook_url": "http://hub.test/v1/webhooks/whapi",
        "whapi_webhook_secret": "new-secret",
        "periskope_webhook_url": "http://hub.test/periskopewebhook",
        "periskope_signing_key": "new-key",
        "inbound_trickle_per_minute": 30,
        "inbound_trickle_providers": ["whapi", "periskope"],
        "inbound_trickle_kinds": ["text", "reply"],
    }

    async with http.post(url + "/_sandbox/config", json=changes) as response:
        config = (await response.json())["config"]

    assert response.status == 200
    assert config["whapi_webhook_secret"] == "***"
    assert config["periskope_signing_key"] == "***"
    assert config["inbound_trickle_providers"] == ["whapi", "periskope"]
    assert box.config.whapi_webhook_secret == "new-secret"
    async with http.post(
        url + "/_sandbox/config", json={"inbound_trickle_kinds": ["fax"]}
    ) as response:
        assert response.status == 400


async def test_the_trickle_answers_recent_sends_on_its_own(
    http: aiohttp.ClientSession, sandbox: tuple[Sandbox, str], receiver: Receiver
) -> None:
    box, url = sandbox
    wamid = await cloudapi_send(http, url, "4915112345678")
    box.config.statuses = ()  # only inbound traffic reaches the receiver

    box.config.inbound_trickle_per_minute = 1200.0  # ~20 a second
    for _ in range(100):
        if len(box.inbound.log) >= 3:
            break
        await asyncio.sleep(0.05)
    box.config.inbound_trickle_per_minute = 0.0
    await box.wait_webhooks_idle(5)

    assert len(box.inbound.log) >= 3
    assert {r.reply_to for r in box.inbound.log} == {wamid}
    assert {r.sender for r in box.inbound.log} == {"4915112345678"}
    answers = [p for p in receiver.on("/cloudapi") if is_inbound_message(p)]
    assert len(answers) == len(box.inbound.log)
