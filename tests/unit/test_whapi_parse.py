"""The WHAPI adapter's pure parts: participants and groups, the text body, error
classification (PROVIDERS.md 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wahub.domain.errors import (
    PermanentProviderError,
    RetryableProviderError,
)
from wahub.providers.base import GroupParticipant, OutboundMessage
from wahub.providers.whapi.adapter import (
    build_text_body,
    classify_error,
    parse_group,
    parse_participant,
)

OWN = "14155550100"


@pytest.mark.parametrize(
    ("ident", "phone", "lid"),
    [
        ("4915112345678", "+4915112345678", None),
        ("+4915112345678", "+4915112345678", None),
        ("4915112345678@s.whatsapp.net", "+4915112345678", None),
        ("919537851844@c.us", "+919537851844", None),
        ("4915112345678:12@s.whatsapp.net", "+4915112345678", None),  # device suffix
        (4915112345678, "+4915112345678", None),  # a number, not a string
        ("76699677012110@lid", None, "76699677012110@lid"),
        ("1234567", "+1234567", None),  # 7 digits: the shortest ContactID
    ],
)
def test_participant_id_forms(ident: Any, phone: str | None, lid: str | None) -> None:
    participant = parse_participant({"id": ident, "rank": "member"})
    assert participant == GroupParticipant(phone=phone, lid=lid, rank="member")


@pytest.mark.parametrize(
    "ident",
    ["", "123456", "1234567890123456", "abc", "12a45678", "x@lid", "@lid", None, True, "٣٤٥٦٧٨٩٠"],
)
def test_participant_without_a_phone_or_lid_is_dropped(ident: Any) -> None:
    assert parse_participant({"id": ident, "rank": "admin"}) is None


@pytest.mark.parametrize(
    ("rank", "expected"),
    [
        ("creator", "creator"),
        ("admin", "admin"),
        ("member", "member"),
        ("ADMIN", "admin"),
        ("superadmin", "creator"),
        ("moderator", "member"),
        (None, "member"),
        (3, "member"),
    ],
)
def test_rank_is_normalised(rank: Any, expected: str) -> None:
    participant = parse_participant({"id": "4915112345678", "rank": rank})
    assert participant is not None
    assert participant.rank == expected


def group(participants: list[Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": "120363271212442249@g.us",
        "name": "Artist Team",
        "type": "group",
        "participants": participants,
        **fields,
    }


def test_group_with_our_number_and_a_lid_member() -> None:
    info = parse_group(
        group(
            [
                {"id": "4915112345678", "rank": "creator"},
                {"id": OWN, "rank": "admin"},
                {"id": "76699677012110@lid", "rank": "member"},
            ]
        ),
        own_phone="+1 (415) 555-0100",
    )
    assert info.chat_id == "120363271212442249@g.us"
    assert info.name == "Artist Team"
    assert info.we_are_member is True
    assert info.participants == (
        GroupParticipant("+4915112345678", None, "creator"),
        GroupParticipant("+14155550100", None, "admin"),
        GroupParticipant(None, "76699677012110@lid", "member"),
    )


def test_group_without_our_number_is_one_we_left() -> None:
    info = parse_group(group([{"id": "4915112345678", "rank": "creator"}]), own_phone=OWN)
    assert info.we_are_member is False


def test_without_our_number_known_membership_is_assumed() -> None:
    info = parse_group(group([{"id": "4915112345678", "rank": "creator"}]), own_phone=None)
    assert info.we_are_member is True


def test_group_drops_repeats_and_unusable_members_and_blank_names() -> None:
    info = parse_group(
        group(
            [
                {"id": "4915112345678", "rank": "creator"},
                {"id": "4915112345678@s.whatsapp.net", "rank": "member"},
                {"id": "not-a-phone", "rank": "member"},
                "garbage",
            ],
            name="   ",
        )
    )
    assert info.name is None
    assert info.participants == (GroupParticipant("+4915112345678", None, "creator"),)


def test_group_without_participants_has_none() -> None:
    raw = group([])
    del raw["participants"]
    assert parse_group(raw).participants == ()


@pytest.mark.parametrize(
    "raw",
    [None, [], {"name": "x"}, {"id": "4915112345678@s.whatsapp.net"}, {"id": 120363}],
)
def test_not_a_group_raises_value_error(raw: Any) -> None:
    with pytest.raises(ValueError, match="group"):
        parse_group(raw)


def outbound(content: dict[str, Any], **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "tracking_id": "msg_01",
        "recipient": "4915112345678",
        "is_group": False,
        "content": content,
    }
    values.update(fields)
    return OutboundMessage(**values)


def test_text_body_for_a_person_without_link_preview() -> None:
    body = build_text_body(outbound({"type": "text", "text": {"body": "hi"}}))
    assert body == {"to": "4915112345678", "body": "hi", "no_link_preview": True}


def test_text_body_for_a_group_reply_with_preview() -> None:
    body = build_text_body(
        outbound(
            {"type": "text", "text": {"body": "see https://x.test", "preview_url": True}},
            recipient="120363271212442249@g.us",
            is_group=True,
            reply_to="PsqXn5SAD5v7HRA-wO4NXBPk1ddgHAXAw",
        )
    )
    assert body == {
        "to": "120363271212442249@g.us",
        "body": "see https://x.test",
        "quoted": "PsqXn5SAD5v7HRA-wO4NXBPk1ddgHAXAw",
    }


def test_text_body_strips_a_plus() -> None:
    body = build_text_body(outbound({"type": "text", "text": {"body": "hi"}}, recipient="+491"))
    assert body["to"] == "491"


@pytest.mark.parametrize(
    "content",
    [
        {"type": "image", "image": {"link": "https://x.test/a.png"}},
        {"type": "template", "template": {"name": "welcome", "language": {"code": "en"}}},
        {"type": "text", "text": {"body": ""}},
        {"type": "text"},
        {},
    ],
)
def test_content_a_whapi_channel_cannot_send_is_permanent(content: dict[str, Any]) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        build_text_body(outbound(content))
    assert caught.value.details["field"].startswith("content")


def whapi_error(code: int, message: str, details: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def test_429_is_retryable_with_retry_after() -> None:
    error = classify_error(429, whapi_error(429, "Too many requests"), {"Retry-After": "7"})
    assert isinstance(error, RetryableProviderError)
    assert error.retry_after == 7.0
    assert error.http_status == 429
    assert error.provider_code == 429


def test_429_without_retry_after_has_none() -> None:
    error = classify_error(429, whapi_error(429, "Too many requests"))
    assert isinstance(error, RetryableProviderError)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable_whatever_the_body(status: int) -> None:
    error = classify_error(status, b"<html>Bad Gateway</html>")
    assert isinstance(error, RetryableProviderError)
    assert error.http_status == status
    assert "Bad Gateway" in error.message


@pytest.mark.parametrize(
    ("status", "hint"),
    [(400, None), (401, "token"), (402, "trial"), (403, "participant"), (404, None), (413, None)],
)
def test_other_refusals_are_permanent(status: int, hint: str | None) -> None:
    error = classify_error(
        status, whapi_error(status, "Refused", "because"), {}, what="POST /messages/text"
    )
    assert isinstance(error, PermanentProviderError)
    assert error.provider_code == status
    assert error.details == {"details": "because"}
    assert "POST /messages/text" in error.message
    assert "Refused (because)" in error.message
    if hint is not None:
        assert hint in error.message


def test_an_empty_error_body_is_described() -> None:
    error = classify_error(401, None)
    assert isinstance(error, PermanentProviderError)
    assert "no body" in error.message
