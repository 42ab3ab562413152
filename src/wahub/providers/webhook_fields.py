"""Reading fields out of decoded webhook JSON, for the WHAPI and Periskope parsers.

Pure helpers, no I/O. A field of the wrong type raises ``ValidationError`` naming its
path (``messages[2].timestamp``), which the inbox processor stores as the dead letter's
reason; optional fields that are absent or null read as ``None`` or empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from wahub.domain.errors import ValidationError
from wahub.domain.phones import (
    GROUP_SUFFIX,
    PERSON_SUFFIX,
    canonical_chat_id,
    e164_digits,
    phone_lookup_forms,
)

__all__ = [
    "decode_object",
    "derived_dedupe_key",
    "group_or_none",
    "invalid",
    "list_at",
    "object_at",
    "optional_object",
    "optional_text",
    "person",
    "required_text",
    "unix_seconds",
]

# Unix seconds must fit the BIGINT column (and any real clock) to be stored at all.
_MAX_TIMESTAMP: Final = 2**62

# The suffixes providers put on a person's id: Baileys/WHAPI and whatsapp-web.js/Periskope.
_PERSON_SUFFIXES: Final = (PERSON_SUFFIX, "@c.us")


def decode_object(body: bytes) -> Mapping[str, Any]:
    """The stored body as a JSON object; ``ValidationError`` for anything else."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"webhook body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise invalid("payload", f"must be an object, got {type(payload).__name__}")
    return payload


def derived_dedupe_key(provider: str, kind: str, ids: Sequence[str]) -> str:
    """A 64-character inbox dedupe key naming a delivery by the provider's own ids.

    Hashed because the column holds 64 characters and a batch can name many ids; the
    provider and event kind are part of the hash, so the same id under another event
    (an edit of a message, a status of it) or another provider is another delivery.
    """
    digest = hashlib.sha256()
    for part in (provider, kind, *ids):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")  # separator: ("ab", "c") and ("a", "bc") must differ
    return digest.hexdigest()


def object_at(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise invalid(path, f"must be an object, got {type(raw).__name__}")
    return raw


def optional_object(parent: Mapping[str, Any], key: str, parent_path: str) -> Mapping[str, Any]:
    """``parent[key]`` as an object; absent or null reads as an empty one."""
    value = parent.get(key)
    if value is None:
        return {}
    return object_at(value, f"{parent_path}.{key}")


def list_at(parent: Mapping[str, Any], key: str, parent_path: str) -> list[Any]:
    """``parent[key]`` as a list; absent or null counts as empty."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{parent_path}.{key}", f"must be a list, got {type(value).__name__}")
    return value


def optional_text(raw: Any) -> str | None:
    """A non-empty string, else ``None`` (providers send ``""`` and ``null`` alike)."""
    return raw if isinstance(raw, str) and raw else None


def required_text(parent: Mapping[str, Any], key: str, parent_path: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise invalid(f"{parent_path}.{key}", "must be a non-empty string")
    return value


def unix_seconds(raw: Any, path: str) -> int:
    """Unix seconds from an integer, a float, a digit string or an ISO 8601 string.

    WHAPI sends integers for messages and strings for statuses; Periskope sends
    ``"2024-05-13 11:19:34+00"`` or ISO 8601 (PROVIDERS.md 2.4, 3.3). A time without an
    offset is read as UTC, which is what both providers mean.
    """
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw == raw:  # NaN is not a time
        value = int(raw) if abs(raw) < _MAX_TIMESTAMP else None
    elif isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit() and len(text) <= 19:
            value = int(text)
        elif text:
            value = _iso_seconds(text)
    if value is None or not 0 <= value < _MAX_TIMESTAMP:
        raise invalid(path, f"must be a time (unix seconds or ISO 8601), got {raw!r}")
    return value


def _iso_seconds(text: str) -> int | None:
    # fromisoformat (3.11) reads "2024-05-13 11:19:34+00", "...T...Z" and fractions.
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def person(raw: str | None) -> tuple[str, str] | None:
    """A person's ``(canonical chat id, E.164 phone)`` from any provider form of their
    number (``919984351847``, ``919984351847@s.whatsapp.net``, ``...@c.us``, ``+91...``).

    The number is read in today's numbering plan, like the Cloud API parser does, so a
    Brazilian id without the ninth digit lands in the chat our sends to the nine-digit
    number use. ``None`` for what is not a phone: a linked id (``...@lid``), a group, a
    broadcast list or newsletter, or junk. A number our phone library does not know as
    valid (WhatsApp is sometimes ahead of it) is kept as the digits it came with when it
    has the shape of an E.164 number, because dropping a lead's message is worse than an
    unusual id.
    """
    if raw is None:
        return None
    text = raw.strip()
    for suffix in _PERSON_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    if not text or "@" in text:
        return None
    try:
        e164 = phone_lookup_forms("+" + text.lstrip("+")).e164
    except ValidationError:
        digits = e164_digits(text)
        if digits is None:
            return None
        e164 = "+" + digits
    return e164[1:] + PERSON_SUFFIX, e164


def group_or_none(raw: str) -> str | None:
    """The canonical id of a group chat id, ``None`` for anything that is not one."""
    if not raw.strip().endswith(GROUP_SUFFIX):
        return None
    try:
        return canonical_chat_id(raw)
    except ValidationError:
        return None


def invalid(path: str, problem: str) -> ValidationError:
    return ValidationError(f"webhook payload: {path} {problem}", details={"field": path})
