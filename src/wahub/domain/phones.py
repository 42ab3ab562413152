"""Phone numbers and WhatsApp chat ids.

A person's chat id is ``<digits>@s.whatsapp.net`` (digits = E.164 without ``+``), a
group's is ``<id>@g.us``. Users hand us phones in every shape (``+49 123 456``,
``0049...``, ``919...@c.us``); we store one canonical form.
"""

from __future__ import annotations

import re

import phonenumbers

from wahub.domain.errors import ValidationError

PERSON_SUFFIX = "@s.whatsapp.net"
GROUP_SUFFIX = "@g.us"
_GROUP_RE = re.compile(r"^[0-9]{5,25}(-[0-9]{5,15})?@g\.us$")
_PERSON_SUFFIXES = ("@s.whatsapp.net", "@c.us")


def normalize_phone(raw: str, *, default_region: str | None = None, field: str = "to") -> str:
    """Return ``raw`` as E.164 (``+4915112345678``) or raise ``ValidationError``.

    Accepts spaces, dashes, brackets, a ``00`` or ``+`` international prefix, and national
    numbers when ``default_region`` (ISO 3166 alpha-2) is given.
    """
    text = raw.strip()
    if not text:
        raise ValidationError(f"{field}: phone number is empty", details={"field": field})
    if default_region is not None:
        default_region = default_region.upper()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and default_region is None:
        digits = re.sub(r"\D", "", text)
        text = "+" + digits if digits else text
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            f"{field}: {raw!r} is not a phone number ({exc._msg})",
            details={"field": field, "value": raw},
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            f"{field}: {raw!r} is not a valid phone number",
            details={"field": field, "value": raw},
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_group_chat(chat_id: str) -> bool:
    return chat_id.endswith(GROUP_SUFFIX)


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


def chat_recipient(chat_id: str) -> str:
    """The ``to`` a provider expects: wa_id digits for people, the JID for groups."""
    if chat_id.endswith(PERSON_SUFFIX):
        return chat_id[: -len(PERSON_SUFFIX)]
    return chat_id
