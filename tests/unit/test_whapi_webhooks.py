"""WHAPI webhooks, parsed from the documented payload shapes (PROVIDERS.md 2.4, 2.5)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.providers.base import InboundMessage
from wahub.providers.whapi.webhooks import (
    dedupe_key,
    parse_body,
    parse_delivery,
    verify_secret,
)

CHANNEL = "MANTIS-M72HC"
LEAD = "919984351847"
GROUP = "120363271212442249@g.us"


def delivery(
    *messages: dict[str, Any], family: str = "messages", method: str = "post"
) -> dict[str, Any]:
    return {
        "messages": list(messages),
        "event": {"type": family, "event": method},
        "channel_id": CHANNEL,
    }


def message(type_: str, content: Any = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"p.{type_}-1",
        "from_me": False,
        "type": type_,
        "chat_id": f"{LEAD}@s.whatsapp.net",
        "timestamp": 1712995245,
        "source": "mobile",
        "from": LEAD,
        "from_name": "Gerald",
    }
    if content is not None:
        item[type_] = content
    item.update(extra)
    return item


def only(payload: dict[str, Any]) -> InboundMessage:
    parsed = parse_delivery(payload)
    assert parsed.statuses == ()
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def test_documented_text_message() -> None:
    payload: dict[str, Any] = {
        "messages": [
            {
                "id": "p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw",
                "from_me": False,
                "type": "text",
                "chat_id": "919984351847@s.whatsapp.net",
                "timestamp": 1712995245,
                "source": "mobile",
                "text": {"body": "Hello world"},
                "from": "919984351847",
                "from_name": "Gerald",
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "MANTIS-M72HC",
    }

    got = only(payload)

    assert got == InboundMessage(
        provider="whapi",
        provider_message_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw",
        chat_id="919984351847@s.whatsapp.net",
        timestamp=1712995245,
        type="text",
        content=payload["messages"][0],
        sender_phone="+919984351847",
        sender_name="Gerald",
        text="Hello world",
        channel_ref="MANTIS-M72HC",
    )


@pytest.mark.parametrize(
    ("type_", "content", "text"),
    [
        ("image", {"id": "m1", "mime_type": "image/jpeg", "caption": "the flat"}, "the flat"),
        ("video", {"id": "m2", "mime_type": "video/mp4", "caption": "tour"}, "tour"),
        ("gif", {"id": "m3", "mime_type": "video/mp4"}, None),
        ("audio", {"id": "m4", "mime_type": "audio/ogg"}, None),
        ("voice", {"id": "m5", "mime_type": "audio/ogg; codecs=opus", "seconds": 4}, None),
        (
            "document",
            {"id": "m6", "mime_type": "application/pdf", "file_name": "a.pdf", "caption": "cv"},
            "cv",
        ),
        ("sticker", {"id": "m7", "mime_type": "image/webp", "animated": False}, None),
        (
            "location",
            {"latitude": 52.52, "longitude": 13.4, "name": "Office", "address": "Berlin"},
            "Office",
        ),
        ("location", {"latitude": 52.52, "longitude": 13.4}, None),
        ("contact", {"name": "Ann", "vcard": "BEGIN:VCARD\nEND:VCARD"}, "Ann"),
        ("poll", {"title": "Which day?", "options": ["Mon", "Tue"]}, "Which day?"),
        ("hsm", {"body": "Your order shipped", "footer": "Shop"}, "Your order shipped"),
        ("system", {"body": "Gerald changed the group name"}, "Gerald changed the group name"),
        (
            "link_preview",
            {"body": "see https://x.test", "url": "https://x.test"},
            "see https://x.test",
        ),
        ("interactive", {"body": {"text": "Pick one"}}, "Pick one"),
    ],
)
def test_every_documented_type_keeps_its_name_content_and_readable_text(
    type_: str, content: dict[str, Any], text: str | None
) -> None:
    raw = message(type_, content)

    got = only(delivery(raw))

    assert got.type == type_
    assert got.text == text
    assert got.content == raw


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (
            {"type": "buttons_reply", "buttons_reply": {"id": "ButtonsV3:yes", "title": "Yes"}},
            "Yes",
        ),
        (
            {
                "type": "list_reply",
                "list_reply": {"id": "row-2", "title": "Tuesday", "description": "pm"},
            },
            "Tuesday",
        ),
        ({"type": "buttons_reply"}, None),
    ],
    ids=["button", "list", "no choice"],
)
def test_button_and_list_replies_read_as_the_chosen_title(
    reply: dict[str, Any], text: str | None
) -> None:
    got = only(delivery(message("reply", reply, context={"quoted_id": "p.ours-1"})))

    assert (got.type, got.text, got.reply_to_provider_id) == ("reply", text, "p.ours-1")


def test_a_reply_links_to_the_quoted_message() -> None:
    raw = message(
        "text",
        {"body": "yes please"},
        context={"quoted_id": "p.ours-7", "quoted_author": "14155550100", "quoted_type": "text"},
    )

    assert only(delivery(raw)).reply_to_provider_id == "p.ours-7"


def test_a_reaction_action_is_a_reaction_to_its_target() -> None:
    raw = message("action", {"target": "p.ours-7", "type": "reaction", "emoji": "\U0001f44d"})

    got = only(delivery(raw))

    assert got.type == "reaction"
    assert got.reaction_to_provider_id == "p.ours-7"
    assert got.text == "\U0001f44d"
    assert got.content == raw


def test_a_removed_reaction_has_no_text() -> None:
    raw = message("action", {"target": "p.ours-7", "type": "reaction", "emoji": ""})

    got = only(delivery(raw))

    assert (got.type, got.reaction_to_provider_id, got.text) == ("reaction", "p.ours-7", None)


@pytest.mark.parametrize(
    "action",
    [
        {"target": "p.x", "type": "edit", "edited_type": "text", "edited_content": {"body": "b"}},
        {"target": "p.x", "type": "delete"},
        {"target": "p.poll", "type": "vote", "votes": ["Mon"]},
    ],
    ids=["edit", "delete", "vote"],
)
def test_other_actions_stay_actions_with_their_content(action: dict[str, Any]) -> None:
    got = only(delivery(message("action", action)))

    assert (got.type, got.reaction_to_provider_id) == ("action", None)
    assert got.content["action"] == action


def test_an_unknown_type_is_kept_as_it_came() -> None:
    raw = message("Hologram", {"body": "from the future"})

    got = only(delivery(raw))

    assert got.type == "hologram"
    assert got.text is None  # the content sits under "Hologram", as sent
    assert got.content == raw


def test_a_group_message_keeps_the_group_and_names_the_member() -> None:
    raw = message("text", {"body": "hi all"}, chat_id=GROUP, **{"from": "4915112345678"})
    raw["chat_name"] = "Marketing Team"

    got = only(delivery(raw))

    assert got.chat_id == GROUP
    assert got.sender_phone == "+4915112345678"
    assert got.chat_name == "Marketing Team"


def test_a_message_from_our_own_number_is_marked_from_me() -> None:
    raw = message("text", {"body": "sent from the phone"}, from_me=True, **{"from": "14155550100"})

    got = only(delivery(raw))

    assert got.from_me is True
    assert got.chat_id == f"{LEAD}@s.whatsapp.net"


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        ("919984351847@s.whatsapp.net", "919984351847@s.whatsapp.net"),
        ("919984351847@c.us", "919984351847@s.whatsapp.net"),
        ("120363271212442249@g.us", "120363271212442249@g.us"),
        ("15551234567-1600000000@g.us", "15551234567-1600000000@g.us"),
    ],
)
def test_chat_id_suffixes_become_canonical(chat: str, expected: str) -> None:
    assert only(delivery(message("text", {"body": "x"}, chat_id=chat))).chat_id == expected


@pytest.mark.parametrize(
    "chat", ["status@broadcast", "120363000000000001@newsletter", "76699677012110@lid"]
)
def test_messages_outside_a_person_or_group_chat_are_skipped(chat: str) -> None:
    kept = message("text", {"body": "kept"})
    skipped = message("text", {"body": "story"}, chat_id=chat, id="p.skip")

    parsed = parse_delivery(delivery(skipped, kept))

    assert [m.provider_message_id for m in parsed.messages] == [kept["id"]]


def test_a_brazilian_id_without_the_ninth_digit_lands_in_todays_chat() -> None:
    # WhatsApp still names many older Brazilian accounts without the added 9; our sends
    # go to the nine-digit number, so the reply must land in that chat.
    raw = message(
        "text", {"body": "oi"}, chat_id="551187654321@s.whatsapp.net", **{"from": "551187654321"}
    )

    got = only(delivery(raw))

    assert got.chat_id == "5511987654321@s.whatsapp.net"
    assert got.sender_phone == "+5511987654321"


def test_a_sender_that_is_no_phone_number_has_no_phone() -> None:
    # A linked id without its suffix looks like digits but is no valid number.
    raw = message("text", {"body": "x"}, chat_id=GROUP, **{"from": "00012"})

    assert only(delivery(raw)).sender_phone is None


def test_timestamps_may_be_floats_or_strings() -> None:
    floats = message("text", {"body": "x"}, timestamp=1712995245.9)
    strings = message("text", {"body": "x"}, timestamp="1712995245")

    assert only(delivery(floats)).timestamp == 1712995245
    assert only(delivery(strings)).timestamp == 1712995245


def test_statuses_map_to_ours_and_skip_pending_and_deleted() -> None:
    names = ["failed", "pending", "sent", "delivered", "read", "played", "deleted"]
    payload = {
        "statuses": [
            {
                "id": f"p.s{i}",
                "code": i,
                "status": name,
                "recipient_id": LEAD,
                "timestamp": "1712995300",
            }
            for i, name in enumerate(names)
        ],
        "event": {"type": "statuses", "event": "post"},
        "channel_id": CHANNEL,
    }

    parsed = parse_delivery(payload)

    assert parsed.messages == ()
    assert [(s.provider_message_id, s.status) for s in parsed.statuses] == [
        ("p.s0", Status.FAILED),
        ("p.s2", Status.SENT),
        ("p.s3", Status.DELIVERED),
        ("p.s4", Status.READ),
        ("p.s5", Status.READ),
    ]
    first = parsed.statuses[0]
    assert first.timestamp == 1712995300
    assert first.recipient == LEAD
    assert first.tracking_id is None
    assert len(first.errors) == 1
    assert first.errors[0].code is None


@pytest.mark.parametrize(
    "family",
    ["chats", "contacts", "groups", "presences", "calls", "channel", "users", "labels", "service"],
)
def test_other_event_families_parse_to_nothing(family: str) -> None:
    payload = {
        family: [{"id": "x"}],
        "event": {"type": family, "event": "post"},
        "channel_id": CHANNEL,
    }

    parsed = parse_delivery(payload)

    assert (parsed.messages, parsed.statuses) == ((), ())


def test_message_updates_are_not_new_messages() -> None:
    payload = delivery(message("text", {"body": "edited"}), method="patch")

    assert parse_delivery(payload).messages == ()


def test_the_method_may_be_called_method_as_in_the_openapi() -> None:
    payload = {
        "messages": [message("text", {"body": "x"})],
        "event": {"type": "messages", "method": "post"},
    }

    assert len(parse_delivery(payload).messages) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"messages": "nope"}, "payload.messages"),
        ({"messages": [42]}, "messages[0]"),
        ({"messages": [{**message("text", {"body": "x"}), "id": ""}]}, "messages[0].id"),
        (
            {"messages": [{**message("text", {"body": "x"}), "chat_id": None}]},
            "messages[0].chat_id",
        ),
        (
            {"messages": [{**message("text", {"body": "x"}), "timestamp": "soon"}]},
            "messages[0].timestamp",
        ),
        ({"statuses": [{"id": "p.1", "status": 3}]}, "statuses[0].status"),
        ({"statuses": [{"status": "read", "timestamp": 1}]}, "statuses[0].id"),
    ],
)
def test_wrong_shapes_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_delivery(payload)

    assert raised.value.details["field"] == field


def test_parse_body_refuses_what_is_not_a_json_object() -> None:
    with pytest.raises(ValidationError):
        parse_body(b"{not json")
    with pytest.raises(ValidationError):
        parse_body(b"[1, 2]")
    assert parse_body(orjson.dumps(delivery(message("text", {"body": "x"})))).messages


# --- secret ------------------------------------------------------------------------------


def test_the_secret_may_come_as_query_parameter_or_header() -> None:
    assert verify_secret("s3cret", "s3cret", None)
    assert verify_secret("s3cret", None, "s3cret")
    assert verify_secret("s3cret", "wrong", "s3cret")


@pytest.mark.parametrize(
    ("expected", "query", "header"),
    [
        ("s3cret", None, None),
        ("s3cret", "wrong", None),
        ("s3cret", "s3cre", "S3CRET"),
        ("", "", ""),
    ],
)
def test_a_missing_or_wrong_secret_fails(
    expected: str, query: str | None, header: str | None
) -> None:
    assert not verify_secret(expected, query, header)


# --- dedupe key --------------------------------------------------------------------------


def test_dedupe_key_names_a_message_by_its_id_however_serialised() -> None:
    raw = message("text", {"body": "x"})
    compact = orjson.dumps(delivery(raw))
    spaced = orjson.dumps(delivery(raw), option=orjson.OPT_INDENT_2)

    assert dedupe_key(compact) == dedupe_key(spaced)
    assert len(dedupe_key(compact)) == 64
    other = orjson.dumps(delivery({**raw, "id": "p.other"}))
    assert dedupe_key(other) != dedupe_key(compact)


def test_dedupe_key_of_statuses_includes_the_status() -> None:
    def status(name: str) -> bytes:
        return orjson.dumps(
            {
                "statuses": [{"id": "p.1", "status": name, "timestamp": "1"}],
                "event": {"type": "statuses", "event": "post"},
            }
        )

    assert dedupe_key(status("read")) != dedupe_key(status("delivered"))
    assert dedupe_key(status("read")) == dedupe_key(status("read").replace(b'"1"', b'"2"'))


def test_dedupe_key_of_anything_else_is_the_body_hash_namespaced() -> None:
    body = b"{not json"

    key = dedupe_key(body)

    assert key == dedupe_key(body)
    assert key != hashlib.sha256(body).hexdigest()  # never collides with a Cloud API key
    assert dedupe_key(b"{}") != key
