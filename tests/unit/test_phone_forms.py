"""The forms a phone number may be stored under, for lookups by phone."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phone_spellings import documented_spellings, reported_phones, spaced
from wahub.domain.errors import ValidationError
from wahub.domain.phones import member_phone, phone_lookup_forms

BR_MOBILE = frozenset({"+5511987654321", "+551187654321"})
MX_MOBILE = frozenset({"+525512345678", "+5215512345678"})


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+55 11 98765-4321", None),
        ("+55 (11) 98765 4321", None),
        ("0055 11 98765-4321", None),
        ("+55 11 8765-4321", None),  # the form before the ninth digit
        ("551187654321", None),
        ("(11) 98765-4321", "BR"),
        ("11 8765 4321", "BR"),
        ("5511987654321@s.whatsapp.net", None),
    ],
)
def test_a_brazilian_mobile_has_its_forms_with_and_without_the_ninth_digit(
    raw: str, region: str | None
) -> None:
    found = phone_lookup_forms(raw, default_region=region)

    assert found.forms == BR_MOBILE
    assert found.e164 == "+5511987654321", "today's plan (with the 9) is the canonical form"


def test_a_brazilian_landline_has_one_form() -> None:
    assert phone_lookup_forms("+55 11 3234-5678").forms == {"+551132345678"}


@pytest.mark.parametrize(
    "raw", ["+52 55 1234 5678", "+52 1 55 1234 5678", "0052 1 55-1234-5678", "5215512345678"]
)
def test_a_mexican_number_has_its_forms_with_and_without_the_1(raw: str) -> None:
    found = phone_lookup_forms(raw)

    assert found.forms == MX_MOBILE
    assert found.e164 == "+525512345678"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+49 151 23456789", None),
        ("0049 (151) 234-567-89", None),
        ("0151 23456789", "DE"),  # national trunk 0
        ("015123456789", "de"),
        ("151 23456789", "DE"),  # national, without the trunk 0
        ("4915123456789", "DE"),  # international without the +
        ("4915123456789", None),
        ("+49 (0) 151 23456789", None),
    ],
)
def test_a_german_mobile_in_any_shape_has_one_form(raw: str, region: str | None) -> None:
    assert phone_lookup_forms(raw, default_region=region).forms == {"+4915123456789"}


def test_an_international_number_ignores_the_default_region() -> None:
    assert phone_lookup_forms("+1 415 555 2671", default_region="DE").forms == {"+14155552671"}


@pytest.mark.parametrize(
    "raw", ["", "  ", "hello", "12", "+49", "+49 151", "0151 23456789", "4915123456789@lid"]
)
def test_what_is_not_a_phone_is_a_validation_error_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        phone_lookup_forms(raw)

    assert caught.value.details["field"] == "phone"
    assert caught.value.message.startswith("phone: "), caught.value.message


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("+4915123456789", "+4915123456789"),
        ("4915123456789", "+4915123456789"),
        ("551187654321@s.whatsapp.net", "+551187654321"),
        ("+52 1 55 1234 5678", "+5215512345678"),
        (None, None),
        ("", None),
        ("12345", None),
        ("76699677012110@lid", None),
        ("0151234567", None),
    ],
)
def test_member_phones_are_stored_as_the_provider_reported_them(
    raw: str | None, stored: str | None
) -> None:
    assert member_phone(raw) == stored


# --- properties --------------------------------------------------------------------------

REGIONS = ["DE", "BR", "MX", "US", "GB", "IN", "FR", "ES", "IT", "AR", "NG", "ID"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of a region: its example number with the last digits redrawn."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES)))
    assume(example is not None)
    national = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    candidate = phonenumbers.parse("+" + str(example.country_code) + national[:-4] + tail, None)
    assume(phonenumbers.is_valid_number(candidate))
    return region, candidate


def presentations(region: str, number: phonenumbers.PhoneNumber) -> list[tuple[str, str | None]]:
    fmt = phonenumbers.PhoneNumberFormat
    e164 = phonenumbers.format_number(number, fmt.E164)
    international = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    return [
        (e164, None),
        (international, None),
        ("00" + e164[1:], None),
        (international.replace(" ", "-"), "DE"),
        (phonenumbers.format_number(number, fmt.NATIONAL), region),
        (e164[1:] + "@s.whatsapp.net", None),
    ]


@settings(max_examples=300, deadline=None)
@given(valid_numbers())
def test_every_form_has_the_same_forms(drawn: tuple[str, phonenumbers.PhoneNumber]) -> None:
    _, number = drawn
    found = phone_lookup_forms(phonenumbers.format_number(number, 0))

    assert found.e164 in found.forms
    for form in found.forms:
        assert phone_lookup_forms(form).forms == found.forms, form


@settings(max_examples=300, deadline=None)
@given(valid_numbers())
def test_every_way_of_writing_a_number_has_the_same_forms(
    drawn: tuple[str, phonenumbers.PhoneNumber],
) -> None:
    region, number = drawn
    expected = phone_lookup_forms(phonenumbers.format_number(number, 0)).forms

    for raw, default_region in presentations(region, number):
        assert phone_lookup_forms(raw, default_region=default_region).forms == expected, raw


@settings(max_examples=300, deadline=None)
@given(valid_numbers())
def test_every_form_is_stored_as_itself(drawn: tuple[str, phonenumbers.PhoneNumber]) -> None:
    _, number = drawn
    for form in phone_lookup_forms(phonenumbers.format_number(number, 0)).forms:
        assert member_phone(form) == form


# --- the one rule: what sync stores, lookup finds ---------------------------------------


@settings(max_examples=500, deadline=None)
@given(reported_phones(), st.data())
def test_every_member_phone_sync_stores_is_found_in_every_documented_spelling(
    reported: str, data: st.DataObject
) -> None:
    stored = member_phone(reported)
    assume(stored is not None)
    assert stored is not None

    for raw, region in documented_spellings(stored, data.draw(spaced(stored))):
        found = phone_lookup_forms(raw, default_region=region)
        assert stored in found.forms, (raw, region, found)


def test_a_number_newer_than_the_phone_library_is_stored_and_found() -> None:
    # +49 123... is not allocated in libphonenumber's metadata (is_valid_number is False)
    # but has the length of a German number: WhatsApp reports such members.
    assert not phonenumbers.is_valid_number(phonenumbers.parse("+491234567890"))

    assert member_phone("491234567890@s.whatsapp.net") == "+491234567890"
    assert phone_lookup_forms("+49 1234 567890").forms == {"+491234567890"}
    assert phone_lookup_forms("01234 567890", default_region="DE").forms == {"+491234567890"}


@pytest.mark.parametrize("raw", ["12345678", "+49 151", "+1 415 555", "+999 1234567"])
def test_a_number_the_lookup_refuses_is_not_stored_by_sync(raw: str) -> None:
    with pytest.raises(ValidationError):
        phone_lookup_forms(raw)
    assert member_phone(raw) is None


@pytest.mark.parametrize("raw", ["0151 2345 6789", "(0151) 23456789", "030 1234567"])
def test_a_national_number_without_a_region_asks_for_a_country_code(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        phone_lookup_forms(raw)

    message = caught.value.message
    assert "country code" in message, message
    assert "WAHUB_DEFAULT_REGION" in message, message
    assert "plus-sign" not in message, message
    assert caught.value.details == {"field": "phone", "value": raw}


def test_a_number_too_short_for_its_country_says_so() -> None:
    with pytest.raises(ValidationError, match=r"too short for \+1"):
        phone_lookup_forms("+1 415 555")


def test_a_national_number_that_starts_with_00_is_read_in_its_region() -> None:
    # Tajikistan's international prefix is 810, so "00 000 0000" there is a national
    # number (+992 000000000), not "00" followed by a country code (found by hypothesis).
    assert phone_lookup_forms("00 000 0000", default_region="TJ").e164 == "+992000000000"
    assert phone_lookup_forms("0049 151 23456789", default_region="TJ").e164 == "+4915123456789"
    with pytest.raises(ValidationError):
        phone_lookup_forms("00 000 0000")
