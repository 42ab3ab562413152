"""Periskope webhooks: the signature scheme and ``message.created`` (PROVIDERS.md 3.3)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import orjson
import pytest

from wahub.domain.errors import ValidationError
from wahub.providers.periskope.webhooks import (
    dedupe_key,
    parse_body,
    parse_delivery,
    signature,
    verify_signature,
)

KEY = "periskope-signing-key"
LEAD = "919004312345"
GROUP = "120363417563833505@g.us"
ORG_PHONE = "918527184400@c.us"


def created(**data: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": f"false_{LEAD}@c.us_3EB0C767D26A1B2C_{LEAD}@c.us",
        "unique_id": "3EB0C767D26A1B2C",
        "id": {
            "id": "3EB0C767D26A1B2C",
            "fromMe": False,
            "remote": f"{LEAD}@c.us",
            "_serialized": f"false_{LEAD}@c.us_3EB0C767D26A1B2C",
        },
        "org_id": "org-1",
        "chat_id": f"{LEAD}@c.us",
        "org_phone": ORG_PHONE,
        "body": "Is the flat still available?",
        "message_type": "chat",
        "has_media": False,
        "from_me": False,
        "from": f"{LEAD}@c.us",
        "to": ORG_PHONE,
        "sender_phone": f"{LEAD}@c.us",
        "ack": "1",
        "timestamp": "2024-05-13 11:19:34+00",
    }
    message.update(data)
    return {
        "event": "message.created",
        "data": message,
        "org_id": "org-1",
        "timestamp": "2024-05-13T11:19:35.000Z",
    }


# --- parsing -----------------------------------------------------------------------------


def test_a_received_text_message() -> None:
    payload = created()

    parsed = parse_delivery(payload)

    assert parsed.statuses == ()
    (got,) = parsed.messages
    assert got.provider == "periskope"
    assert got.provider_message_id == payload["data"]["message_id"]
    assert got.chat_id == f"{LEAD}@s.whatsapp.net"
    assert got.timestamp == 1715599174  # 2024-05-13 11:19:34 UTC
    assert got.type == "text"
    assert got.text == "Is the flat still available?"
    assert got.sender_phone == f"+{LEAD}"
    assert got.from_me is False
    assert got.channel_ref == "918527184400"
    assert got.content == payload["data"]


def test_an_iso_timestamp_is_read_too() -> None:
    (got,) = parse_delivery(created(timestamp="2024-05-13T11:19:34.500Z")).messages

    assert got.timestamp == 1715599174


def test_a_group_message_names_its_author() -> None:
    member = "4915112345678"
    payload = created(
        chat_id=GROUP, author=f"{member}@c.us", sender_phone=member, **{"from": GROUP}
    )
    payload["data"]["chat_name"] = "Marketing Team"

    (got,) = parse_delivery(payload).messages

    assert got.chat_id == GROUP
    assert got.sender_phone == f"+{member}"
    assert got.chat_name == "Marketing Team"


def test_without_sender_phone_the_author_is_the_sender_in_a_group() -> None:
    member = "4915112345678"
    payload = created(chat_id=GROUP, author=f"{member}@c.us", sender_phone=None, **{"from": GROUP})

    (got,) = parse_delivery(payload).messages

    assert got.sender_phone == f"+{member}"


def test_a_sent_message_is_marked_from_me() -> None:
    (got,) = parse_delivery(created(from_me=True)).messages

    assert got.from_me is True


@pytest.mark.parametrize(
    ("message_type", "expected"),
    [
        ("chat", "text"),
        ("image", "image"),
        ("video", "video"),
        ("audio", "audio"),
        ("document", "document"),
        ("ptt", "ptt"),
        ("Sticker", "sticker"),
        ("vcard", "vcard"),
    ],
)
def test_types_keep_their_names_except_chat_which_is_text(message_type: str, expected: str) -> None:
    (got,) = parse_delivery(created(message_type=message_type)).messages

    assert got.type == expected


def test_media_carries_the_caption_as_text() -> None:
    media = {"path": "/media/x.jpg", "size": 1024, "filename": "x.jpg", "mimetype": "image/jpeg"}

    (got,) = parse_delivery(
        created(message_type="image", has_media=True, media=media, body="the kitchen")
    ).messages

    assert (got.type, got.text) == ("image", "the kitchen")
    assert got.content["media"] == media


def test_a_reply_links_to_the_quoted_message() -> None:
    (got,) = parse_delivery(created(quoted_message_id="true_x@c.us_ABC_y@c.us")).messages

    assert got.reply_to_provider_id == "true_x@c.us_ABC_y@c.us"


def test_a_status_broadcast_is_skipped() -> None:
    assert parse_delivery(created(chat_id="status@broadcast")).messages == ()


@pytest.mark.parametrize(
    "event",
    [
        "message.flagged",
        "chat.created",
        "ticket.created",
        "ticket.deleted",
        "chat.notification.created",
        "message.updated",
        "reaction.created",
        "brand.new",
    ],
)
def test_other_events_parse_to_nothing(event: str) -> None:
    payload = {"event": event, "data": {"anything": True}, "org_id": "org-1"}

    parsed = parse_delivery(payload)

    assert (parsed.messages, parsed.statuses) == ((), ())


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"data": {}}, "payload.event"),
        ({"event": "message.created"}, "data"),
        ({"event": "message.created", "data": {"chat_id": f"{LEAD}@c.us"}}, "data.message_id"),
        ({"event": "message.created", "data": {"message_id": "m"}}, "data.chat_id"),
        (
            {
                "event": "message.created",
                "data": {"message_id": "m", "chat_id": f"{LEAD}@c.us", "timestamp": "soon"},
            },
            "data.timestamp",
        ),
    ],
)
def test_wrong_shapes_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_delivery(payload)

    assert raised.value.details["field"] == field


def test_parse_body_refuses_what_is_not_json() -> None:
    with pytest.raises(ValidationError):
        parse_body(b"not json")
    assert parse_body(orjson.dumps(created())).messages


# --- signature ---------------------------------------------------------------------------


def hex_hmac(body: bytes, key: str = KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def test_signature_is_hex_hmac_sha256_of_the_body() -> None:
    body = orjson.dumps(created())

    assert signature(KEY, body) == hex_hmac(body)
    assert verify_signature(KEY, body, hex_hmac(body))
    assert verify_signature(KEY, body, hex_hmac(body).upper())


def test_a_signature_of_the_stringified_body_is_accepted_too() -> None:
    # Periskope's sample verifier hashes JSON.stringify(parsedBody): compact, keys in order.
    payload = created(body="Olá, ainda está disponível?")
    spaced = json.dumps(payload, indent=2, ensure_ascii=True).encode()
    stringified = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    assert verify_signature(KEY, spaced, hex_hmac(stringified))


def test_a_sha256_prefix_is_tolerated() -> None:
    body = orjson.dumps(created())

    assert verify_signature(KEY, body, "sha256=" + hex_hmac(body))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "0" * 64,
        hex_hmac(b"{}"),
        hex_hmac(orjson.dumps(created()), "other-key"),
        "zz\u00e9",
    ],
    ids=["missing", "empty", "zeros", "other body", "other key", "junk"],
)
def test_bad_signatures_fail(header: str | None) -> None:
    assert not verify_signature(KEY, orjson.dumps(created()), header)


def test_an_empty_signing_key_never_verifies() -> None:
    body = b"{}"

    assert not verify_signature("", body, hex_hmac(body, ""))


def test_a_body_that_is_not_json_is_checked_raw_only() -> None:
    body = b"\xff\xfe not json"

    assert verify_signature(KEY, body, hex_hmac(body))
    assert not verify_signature(KEY, body, hex_hmac(b"other"))


# --- dedupe key --------------------------------------------------------------------------


def test_dedupe_key_is_the_message_id_however_serialised() -> None:
    payload = created()
    again = {**payload, "timestamp": "2024-05-13T11:20:00.000Z"}  # a retry, re-stamped

    assert dedupe_key(orjson.dumps(payload)) == dedupe_key(orjson.dumps(again))
    assert dedupe_key(orjson.dumps(payload)) != dedupe_key(
        orjson.dumps(created(message_id="another"))
    )
    assert len(dedupe_key(orjson.dumps(payload))) == 64


def test_dedupe_key_of_other_events_is_the_body_hash() -> None:
    ticket = orjson.dumps({"event": "ticket.created", "data": {"ticket_id": "t1"}})

    assert dedupe_key(ticket) == dedupe_key(ticket)
    assert dedupe_key(ticket) != dedupe_key(ticket + b" ")
    assert dedupe_key(b"garbage") != hashlib.sha256(b"garbage").hexdigest()
