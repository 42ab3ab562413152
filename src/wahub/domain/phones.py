"""Phone numbers and WhatsApp chat ids.

A person's chat id is ``<digits>@s.whatsapp.net`` (digits = E.164 without ``+``), a
group's is ``<id>@g.us``. Users hand us phones in every shape (``+49 123 456``,
``0049...``, ``919...@c.us``); we store one canonical form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from wahub.domain.errors import ValidationError

PERSON_SUFFIX = "@s.whatsapp.net"
GROUP_SUFFIX = "@g.us"
_GROUP_RE = re.compile(r"^[0-9]{5,25}(-[0-9]{5,15})?@g\.us$")
_PERSON_SUFFIXES = ("@s.whatsapp.net", "@c.us")


def normalize_phone(raw: str, *, default_region: str | None = None, field: str = "to") -> str:
    """Return ``raw`` as E.164 (``+4915112345678``) or raise ``ValidationError``.

    The canonical form of ``phone_lookup_forms`` (the one rule for what number we accept):
    spaces, dashes, brackets, a ``00`` or ``+`` international prefix, a WhatsApp person
    id, and national numbers when ``default_region`` (ISO 3166 alpha-2) is given.
    """
    return phone_lookup_forms(raw, default_region=default_region, field=field).e164


@dataclass(frozen=True, slots=True)
class PhoneForms:
    """The forms one phone number may be stored under: ``e164`` is the canonical one
    (today's numbering plan), ``forms`` all of them, ``e164`` included."""

    e164: str
    forms: frozenset[str]


def phone_lookup_forms(
    raw: str, *, default_region: str | None = None, field: str = "phone"
) -> PhoneForms:
    """The one rule for phone numbers: whether ``raw`` is one we accept, its canonical
    E.164 form, and every form under which a provider may report it.

    Sync, send, lookup, campaigns and the compatibility routes all go through here, so a
    number one of them stores is one the others accept and find. Accepted is any
    *possible* number (its length fits its country's plan), not only a number
    libphonenumber knows as *valid*: its metadata lags real allocations, and WhatsApp
    reports members in ranges it does not know yet.

    Spellings: spaces, dashes, brackets, a ``+`` or ``00`` prefix, a WhatsApp person id
    (``<digits>@s.whatsapp.net``/``@c.us``), digits without ``+`` (international), and a
    national number (trunk ``0``) when ``default_region`` is given. With a region, digits
    without ``+`` that start with its country code are read as international when that
    reading is a valid number, or a possible one and the national reading is not valid.

    Two national quirks make one number appear under two forms:

    - Brazil added a 9 in front of 8-digit mobile numbers; WhatsApp still shows many
      older accounts without it (``+55 11 8765-4321`` = ``+55 11 98765-4321``).
    - Mexico dropped the ``1`` after ``+52`` for mobiles in 2019; WhatsApp ids still
      carry it (``+52 1 55 1234 5678`` = ``+52 55 1234 5678``).

    The forms of any returned form are the same set (they are one equivalence class).
    Raises ``ValidationError`` naming ``field`` for anything that is not a possible number,
    and saying that a country code (or ``WAHUB_DEFAULT_REGION``) is needed for a national
    number given without a region.
    """
    text = raw.strip()
    for suffix in _PERSON_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    if "@" in text:
        raise ValidationError(
            f"{field}: {raw!r} is not a phone number", details={"field": field, "value": raw}
        )
    parsed = _parse_number(text, default_region, field, original=raw)
    canonical = _settled(_current_plan(parsed))
    if (problem := _impossibility(canonical)) is not None:
        raise ValidationError(
            f"{field}: {raw!r} is not a valid phone number ({problem})",
            details={"field": field, "value": raw},
        )
    e164 = phonenumbers.format_number(canonical, phonenumbers.PhoneNumberFormat.E164)
    forms = {e164}
    national = str(canonical.national_number)
    if canonical.country_code == 55 and _is_br_nine_digit_mobile(national):
        forms.add(f"+55{national[:2]}{national[3:]}")
    elif canonical.country_code == 52 and len(national) == 10:
        forms.add(f"+521{national}")
    return PhoneForms(e164, frozenset(forms))


def _settled(number: phonenumbers.PhoneNumber) -> phonenumbers.PhoneNumber:
    """``number`` once its E.164 form reads back as itself.

    libphonenumber drops a trunk prefix written after the country code (``+49 0151`` is
    ``+49 151``), and reading the result may drop another (``+20 0 0...``): without
    settling, a number stored in its E.164 form would be looked up as a different one.
    """
    for _ in range(8):  # each round drops digits: a few rounds settle any number
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        again = _try_parse(e164)
        if again is None:
            return number
        again = _current_plan(again)
        if phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) == e164:
            return number
        number = again
    return number


_IMPOSSIBLE = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
    # A number that can only be dialled within its area: not something WhatsApp can reach.
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
}


def _impossibility(number: phonenumbers.PhoneNumber) -> str | None:
    """Why ``number`` cannot be a full number of its country, or None when it can."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return f"{_IMPOSSIBLE.get(reason, 'not possible')} for +{number.country_code}"


def _acceptable(number: phonenumbers.PhoneNumber) -> bool:
    return _impossibility(_current_plan(number)) is None


def _is_br_nine_digit_mobile(national: str) -> bool:
    # Area code (2 digits), the added 9, then an 8-digit number of the old mobile
    # ranges (6-9). Numbers outside those ranges never had an 8-digit form.
    return len(national) == 11 and national[2] == "9" and national[3] in "6789"


def _current_plan(number: phonenumbers.PhoneNumber) -> phonenumbers.PhoneNumber:
    """The number as today's numbering plan writes it (see ``phone_lookup_forms``)."""
    national = str(number.national_number)
    if number.country_code == 55 and len(national) == 10 and national[2] in "6789":
        national = national[:2] + "9" + national[2:]
    elif number.country_code == 52 and len(national) == 11 and national[0] == "1":
        national = national[1:]
    else:
        return number
    return phonenumbers.PhoneNumber(country_code=number.country_code, national_number=int(national))


def _parse_number(
    raw: str, default_region: str | None, field: str, *, original: str | None = None
) -> phonenumbers.PhoneNumber:
    """Parse without judging whether the number is possible (see ``phone_lookup_forms``
    for how digits without ``+`` are read)."""
    shown = raw if original is None else original
    text = raw.strip()
    if not text:
        raise ValidationError(f"{field}: phone number is empty", details={"field": field})
    national_text = text
    if text.startswith("00"):
        text = "+" + text[2:]
    region = default_region.upper() if default_region is not None else None
    digits = re.sub(r"\D", "", text)
    try:
        if text.startswith("+"):
            international = _try_parse(text)
            if international is None and region is not None and national_text != text:
                # "00" is not the international prefix everywhere: Tajikistan writes
                # +992 00 000 0000 nationally as "00 000 0000".
                return phonenumbers.parse(national_text, region)
            return phonenumbers.parse(text, None)
        if region is None:
            return _international_without_plus(text, digits, shown, field)
        code = str(phonenumbers.country_code_for_region(region))
        if digits.startswith(code) and not digits.startswith("0"):
            international = _try_parse("+" + digits)
            if international is not None and phonenumbers.is_valid_number(
                _current_plan(international)
            ):
                return international
            national = phonenumbers.parse(text, region)
            # Both readings are often possible (German numbers have many lengths): a
            # valid national number beats a merely possible international one.
            if (
                international is not None
                and _acceptable(international)
                and not phonenumbers.is_valid_number(_current_plan(national))
            ):
                return international
            return national
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            f"{field}: {shown!r} is not a phone number ({exc._msg})",
            details={"field": field, "value": shown},
        ) from exc


def _international_without_plus(
    text: str, digits: str, shown: str, field: str
) -> phonenumbers.PhoneNumber:
    """Digits written without ``+`` and no default region: international, or a national
    number we cannot place (say so rather than libphonenumber's "after plus-sign")."""
    if not digits:
        return phonenumbers.parse(text, None)  # raises: nothing that reads as a number
    international = None if digits.startswith("0") else _try_parse("+" + digits)
    if international is None or not _acceptable(international):
        raise ValidationError(
            f"{field}: {shown!r} has no country code: write it in international form "
            "(+<country code> <number>, e.g. +49 151 23456789), or set WAHUB_DEFAULT_REGION "
            "to read national numbers",
            details={"field": field, "value": shown},
        )
    return international


def _try_parse(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None


def member_phone(raw: str | None) -> str | None:
    """A participant's phone as sync stores it: ``+digits`` as the provider reported it,
    or None when ``phone_lookup_forms`` would not accept it (so everything stored is
    findable by lookup). Deliberately not rewritten to today's numbering plan: WhatsApp
    reports old Brazilian and Mexican forms, and the lookup matches those; a report
    that is not one of the number's forms (``+49 (0) 151...``) is stored canonical."""
    digits = e164_digits(raw)
    if digits is None:
        return None
    try:
        forms = phone_lookup_forms("+" + digits)
    except ValidationError:
        return None
    reported = "+" + digits
    return reported if reported in forms.forms else forms.e164


def e164_digits(raw: str | None) -> str | None:
    """The digits of ``raw`` (``+``/spaces/dashes/brackets/dots and a WhatsApp person
    suffix dropped) when they have the shape of an E.164 number (7-15 digits, no
    leading 0), else None. A shape check only: ``phone_lookup_forms`` is the rule."""
    if raw is None:
        return None
    text = raw.strip()
    for suffix in _PERSON_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    digits = re.sub(r"[\s()+.-]", "", text)
    if not digits.isascii() or not digits.isdigit() or not 7 <= len(digits) <= 15:
        return None
    if digits.startswith("0"):
        return None
    return digits


def is_group_chat(chat_id: str) -> bool:
    return chat_id.endswith(GROUP_SUFFIX)


LID_SUFFIX = "@lid"


def is_lid(chat_id: str) -> bool:
    """Whether ``chat_id`` is a linked id (``<digits>@lid``): a person WhatsApp shows
    without their number."""
    return chat_id.endswith(LID_SUFFIX)


def canonical_chat_id(raw: str, *, default_region: str | None = None, field: str = "to") -> str:
    """Turn a phone number or any provider chat id into our canonical chat id.

    Groups keep their JID (``120363...@g.us``); people become ``<E.164 digits>@s.whatsapp.net``.
    """
    text = raw.strip()
    if text.endswith(GROUP_SUFFIX):
        if not _GROUP_RE.match(text):
            raise ValidationError(
                f"{field}: {raw!r} is not a WhatsApp group id (expected digits@g.us)",
                details={"field": field, "value": raw},
            )
        return text
    for suffix in _PERSON_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    if "@" in text:
        raise ValidationError(
            f"{field}: {raw!r} is neither a phone number nor a chat id",
            details={"field": field, "value": raw},
        )
    e164 = normalize_phone(text, default_region=default_region, field=field)
    return e164[1:] + PERSON_SUFFIX


def group_chat_id(raw: str, *, field: str = "group_id") -> str:
    """A group's JID from its id with or without ``@g.us`` (CRMs often store it bare).

    Raises ``ValidationError`` naming ``field`` for anything else.
    """
    text = raw.strip()
    if text and "@" not in text:
        text += GROUP_SUFFIX
    if not text.endswith(GROUP_SUFFIX):
        raise ValidationError(
            f"{field}: {raw!r} is not a WhatsApp group id (expected digits, optionally @g.us)",
            details={"field": field, "value": raw},
        )
    return canonical_chat_id(text, field=field)


def bare_group_id(chat_id: str) -> str:
    """``120363...@g.us`` -> ``120363...`` (the shape the seed systems stored)."""
    return chat_id.removesuffix(GROUP_SUFFIX)


def chat_recipient(chat_id: str) -> str:
    """The ``to`` a provider expects: wa_id digits for people, the JID for groups."""
    if chat_id.endswith(PERSON_SUFFIX):
        return chat_id[: -len(PERSON_SUFFIX)]
    return chat_id
