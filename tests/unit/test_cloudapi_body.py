"""build_send_body: our stored message becomes the Cloud API send body (PROVIDERS.md 1.1)."""

from __future__ import annotations

from typing import Any

import pytest

from wahub.domain.errors import PermanentProviderError
from wahub.providers.base import OutboundMessage
from wahub.providers.cloudapi.adapter import MAX_TRACKING_ID_CHARS, build_send_body

CONTENT_BY_TYPE: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "hi", "preview_url": False}},
    "template": {
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "#123"}]}],
        },
    },
    "image": {"type": "image", "image": {"link": "https://x.test/a.jpg", "caption": "look"}},
    "document": {
        "type": "document",
        "document": {"link": "https://x.test/a.pdf", "caption": "invoice", "filename": "a.pdf"},
    },
    "audio": {"type": "audio", "audio": {"id": "1013859600285441"}},
    "video": {"type": "video", "video": {"link": "https://x.test/a.mp4", "caption": "clip"}},
    "sticker": {"type": "sticker", "sticker": {"id": "798882015472548"}},
    "interactive": {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Confirm?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                ]
            },
        },
    },
    "location": {
        "type": "location",
        "location": {"latitude": 48.85, "longitude": 2.35, "name": "Paris", "address": "FR"},
    },
    "reaction": {"type": "reaction", "reaction": {"message_id": "wamid.HBgL", "emoji": "👍"}},
    "contacts": {
        "type": "contacts",
        "contacts": [{"name": {"formatted_name": "Kerry"}}],
    },
}


def _message(content: dict[str, Any], **overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "tracking_id": "msg_01",
        "recipient": "16505551234",
        "is_group": False,
        "content": content,
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


@pytest.mark.parametrize("message_type", list(CONTENT_BY_TYPE))
def test_every_type_is_sent_with_the_envelope_and_its_type_object(message_type: str) -> None:
    content = CONTENT_BY_TYPE[message_type]

    body = build_send_body(_message(content))

    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": message_type,
        message_type: content[message_type],
        "biz_opaque_callback_data": "msg_01",
    }


def test_reply_adds_context_with_the_quoted_wamid() -> None:
    body = build_send_body(_message(CONTENT_BY_TYPE["text"], reply_to="wamid.QUOTED"))

    assert body["context"] == {"message_id": "wamid.QUOTED"}


def test_no_context_without_reply() -> None:
    assert "context" not in build_send_body(_message(CONTENT_BY_TYPE["text"]))


def test_group_message_uses_group_recipient_type() -> None:
    body = build_send_body(
        _message(CONTENT_BY_TYPE["text"], recipient="120363271212442249", is_group=True)
    )

    assert body["recipient_type"] == "group"
    assert body["to"] == "120363271212442249"


def test_tracking_id_at_the_limit_is_sent() -> None:
    tracking_id = "x" * MAX_TRACKING_ID_CHARS

    body = build_send_body(_message(CONTENT_BY_TYPE["text"], tracking_id=tracking_id))

    assert body["biz_opaque_callback_data"] == tracking_id


def test_tracking_id_over_512_chars_is_a_permanent_error() -> None:
    message = _message(CONTENT_BY_TYPE["text"], tracking_id="x" * (MAX_TRACKING_ID_CHARS + 1))

    with pytest.raises(PermanentProviderError, match="513 characters"):
        build_send_body(message)


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"type": "carrier_pigeon", "carrier_pigeon": {}},
        # A type named like an envelope key must not overwrite it.
        {"type": "to", "to": {"x": 1}},
        {"type": 7},
    ],
    ids=["no-type", "unknown-type", "envelope-key", "non-string"],
)
def test_unsupported_content_type_is_a_permanent_error(content: dict[str, Any]) -> None:
    with pytest.raises(PermanentProviderError, match="not one the Cloud API sends"):
        build_send_body(_message(content))


def test_missing_type_object_is_a_permanent_error() -> None:
    with pytest.raises(PermanentProviderError, match="has no 'image' object"):
        build_send_body(_message({"type": "image"}))


@pytest.mark.parametrize("type_object", ["hi", None, {}, []], ids=["str", "null", "{}", "[]"])
def test_type_object_that_is_not_a_json_object_is_a_permanent_error(type_object: Any) -> None:
    with pytest.raises(PermanentProviderError, match="has no 'text' object"):
        build_send_body(_message({"type": "text", "text": type_object}))


def test_body_is_a_copy_that_does_not_alias_the_message_content() -> None:
    content: dict[str, Any] = {"type": "text", "text": {"body": "hi"}}
    message = _message(content)

    build_send_body(message)["text"]["body"] = "changed"

    assert content["text"]["body"] == "hi"


def test_extra_content_keys_are_not_sent() -> None:
    content = {"type": "text", "text": {"body": "hi"}, "to": "19999999999"}

    body = build_send_body(_message(content))

    assert body["to"] == "16505551234"
