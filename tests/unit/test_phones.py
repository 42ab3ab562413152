"""Phone numbers and chat ids: every shape users hand us, one canonical form."""

from __future__ import annotations

import pytest

from wahub.domain.errors import ValidationError
from wahub.domain.phones import (
    canonical_chat_id,
    chat_recipient,
    is_group_chat,
    normalize_phone,
)

DE_MOBILE = "+4915123456789"


@pytest.mark.parametrize(
    "raw",
    [
        "+4915123456789",
        "+49 151 23456789",
        "+49-151-234-567-89",
        "+49 (151) 234 567 89",
        "0049 151 23456789",
        "004915123456789",
        "4915123456789",
        "  +49 151 23456789  ",
        "+49 (0) 151 23456789",
    ],
)
def test_international_shapes_normalize_to_e164(raw: str) -> None:
    assert normalize_phone(raw) == DE_MOBILE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("14155552671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+91 99843 51847", "+919984351847"),
    ],
)
def test_numbers_of_other_countries_normalize_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["0151 23456789", "0151-234 567 89", "(0151) 23456789"])
def test_national_numbers_use_the_default_region(raw: str) -> None:
    assert normalize_phone(raw, default_region="DE") == DE_MOBILE


def test_an_international_number_ignores_the_default_region() -> None:
    assert normalize_phone("+1 415 555 2671", default_region="DE") == "+14155552671"


def test_a_national_number_without_a_default_region_is_refused() -> None:
    with pytest.raises(ValidationError):
        normalize_phone("0151 23456789")


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "hello", "12", "+49", "+0 123 456", "+49 151", "0151 23456789 0000 0000 1234"],
)
def test_garbage_is_a_validation_error_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phone(raw, field="recipient")

    assert caught.value.details["field"] == "recipient"
    assert caught.value.message.startswith("recipient: "), caught.value.message


def test_the_field_defaults_to_to() -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phone("hello")

    assert caught.value.details["field"] == "to"


def test_an_unknown_default_region_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        normalize_phone("0151 23456789", default_region="XX")


# --- chat ids ----------------------------------------------------------------------------

PERSON = "4915123456789@s.whatsapp.net"


@pytest.mark.parametrize(
    "raw",
    [
        "+49 151 23456789",
        "0049-151-23456789",
        "4915123456789@c.us",
        "4915123456789@s.whatsapp.net",
        " 4915123456789@s.whatsapp.net ",
        "+4915123456789@c.us",
    ],
)
def test_a_person_in_any_shape_becomes_digits_at_s_whatsapp_net(raw: str) -> None:
    assert canonical_chat_id(raw) == PERSON


def test_a_national_number_chat_id_uses_the_default_region() -> None:
    assert canonical_chat_id("0151 23456789", default_region="DE") == PERSON


@pytest.mark.parametrize(
    "jid",
    [
        "120363271212442249@g.us",
        "12036@g.us",
        "491511234567-1612345678@g.us",  # legacy creator-timestamp group id
    ],
)
def test_a_group_jid_is_kept_as_it_is(jid: str) -> None:
    assert canonical_chat_id(jid) == jid
    assert is_group_chat(jid)


def test_a_group_jid_is_stripped_of_surrounding_space() -> None:
    assert canonical_chat_id(" 120363271212442249@g.us ") == "120363271212442249@g.us"


@pytest.mark.parametrize(
    "jid",
    [
        "1234@g.us",  # too short
        "abc@g.us",
        "@g.us",
        "120363271212442249-12@g.us",  # suffix too short
        "12036327121244224912036327121@g.us",  # too long
        "120363 271212442249@g.us",
    ],
)
def test_a_malformed_group_jid_is_refused_naming_the_field(jid: str) -> None:
    with pytest.raises(ValidationError, match="group id") as caught:
        canonical_chat_id(jid, field="chat_id")

    assert caught.value.details == {"field": "chat_id", "value": jid}


@pytest.mark.parametrize("raw", ["someone@example.com", "4915123456789@lid", "a@b@c.us"])
def test_an_unknown_chat_id_suffix_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="neither a phone number nor a chat id") as caught:
        canonical_chat_id(raw)

    assert caught.value.details["field"] == "to"


@pytest.mark.parametrize("raw", ["", "hello@c.us", "12@s.whatsapp.net"])
def test_a_bad_person_chat_id_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        canonical_chat_id(raw, field="chat")

    assert caught.value.details["field"] == "chat"


def test_a_person_is_not_a_group() -> None:
    assert not is_group_chat(PERSON)


@pytest.mark.parametrize(
    ("chat_id", "recipient"),
    [(PERSON, "4915123456789"), ("120363271212442249@g.us", "120363271212442249@g.us")],
)
def test_chat_recipient_is_wa_id_digits_for_people_and_the_jid_for_groups(
    chat_id: str, recipient: str
) -> None:
    assert chat_recipient(chat_id) == recipient
