"""Cloud API inbound messages (PROVIDERS.md 1.4): every documented type parses into one
``InboundMessage`` shape; unknown types are kept; bad shapes name the path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from wahub.domain.errors import ValidationError
from wahub.providers.base import InboundMessage
from wahub.providers.cloudapi.webhooks import parse_body, parse_delivery


def payload(*messages: dict[str, Any], contacts: list[dict[str, Any]] | None = None) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16315551234"}]
        if contacts is None
        else contacts,
        "messages": list(messages),
    }
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
        }
    )


def message(kind: str, body: Any, **extra: Any) -> dict[str, Any]:
    return {
        "from": "16315551234",
        "id": f"wamid.{kind}",
        "timestamp": "1712995245",
        "type": kind,
        kind: body,
        **extra,
    }


def only(body: bytes) -> InboundMessage:
    (parsed,) = parse_body(body).messages
    return parsed


MEDIA = {"id": "MEDIA_ID", "mime_type": "image/jpeg", "sha256": "abc"}


@pytest.mark.parametrize(
    ("kind", "body", "text"),
    [
        ("text", {"body": "Hello"}, "Hello"),
        ("image", {**MEDIA, "caption": "my photo"}, "my photo"),
        ("video", MEDIA, None),
        ("audio", {**MEDIA, "voice": True}, None),
        ("document", {**MEDIA, "filename": "offer.pdf"}, "offer.pdf"),
        ("sticker", {**MEDIA, "animated": False}, None),
        ("location", {"latitude": 52.5, "longitude": 13.4, "name": "Office"}, "Office"),
        ("contacts", [{"name": {"formatted_name": "Ann Lee"}, "phones": []}], "Ann Lee"),
        (
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "y", "title": "Yes"}},
            "Yes",
        ),
        ("interactive", {"type": "list_reply", "list_reply": {"id": "2", "title": "Tue"}}, "Tue"),
        ("button", {"payload": "STOP_PROMOS", "text": "Stop promotions"}, "Stop promotions"),
        ("order", {"catalog_id": "c", "text": "two please", "product_items": []}, "two please"),
        (
            "system",
            {"body": "User A changed from 1 to 2", "type": "user_changed_number"},
            "User A changed from 1 to 2",
        ),
        ("unsupported", None, None),
        ("hologram", {"x": 1}, None),
    ],
)
def test_every_documented_type_is_one_shape(kind: str, body: Any, text: str | None) -> None:
    parsed = only(payload(message(kind, body)))

    assert parsed.type == kind
    assert parsed.text == text
    assert parsed.provider == "cloudapi"
    assert parsed.chat_id == "16315551234@s.whatsapp.net"
    assert parsed.sender_phone == "+16315551234"
    assert parsed.sender_name == "Kerry"
    assert parsed.channel_ref == "106540352242922"
    assert parsed.timestamp == 1712995245
    assert parsed.content["id"] == f"wamid.{kind}"
    assert parsed.from_me is False


def test_a_reply_names_the_quoted_message_and_a_reaction_its_target() -> None:
    reply = message("text", {"body": "yes"}, context={"from": "15550783881", "id": "wamid.Q"})
    reaction = message("reaction", {"message_id": "wamid.T", "emoji": "❤️"})
    reaction["id"] = "wamid.R"

    first, second = parse_body(payload(reply, reaction)).messages

    assert (first.reply_to_provider_id, first.reaction_to_provider_id) == ("wamid.Q", None)
    assert (second.reaction_to_provider_id, second.text) == ("wamid.T", "❤️")


def test_without_contacts_the_sender_has_no_name() -> None:
    assert only(payload(message("text", {"body": "x"}), contacts=[])).sender_name is None


def test_statuses_and_messages_in_one_delivery_are_both_returned() -> None:
    raw = orjson.loads(payload(message("text", {"body": "x"})))
    raw["entry"][0]["changes"][0]["value"]["statuses"] = [
        {"id": "wamid.S", "status": "read", "timestamp": "1712995246"}
    ]

    parsed = parse_delivery(raw)

    assert [m.provider_message_id for m in parsed.messages] == ["wamid.text"]
    assert [s.provider_message_id for s in parsed.statuses] == ["wamid.S"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"id": None}, "messages[0].id"),
        ({"from": None}, "messages[0].from"),
        ({"from": "not-a-number"}, "messages[0].from"),
        ({"timestamp": "yesterday"}, "messages[0].timestamp"),
    ],
)
def test_a_message_of_the_wrong_shape_names_the_path(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_body(payload({**message("text", {"body": "x"}), **change}))

    assert caught.value.details["field"].endswith(path)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="not JSON"):
        parse_body(b"{nope")
