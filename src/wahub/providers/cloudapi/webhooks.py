"""Meta Cloud API webhooks: the verification handshake, the signature, inbound messages
and status updates.

Pure functions over what the HTTP layer received; no I/O. The HTTP layer answers the
handshake, rejects unsigned POSTs and stores the body; the inbox processor hands the
stored bytes to ``parse_body`` (or decoded JSON to ``parse_delivery``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

import orjson

from wahub.domain.errors import ValidationError
from wahub.domain.phones import PERSON_SUFFIX, e164_digits, phone_lookup_forms
from wahub.domain.status import Status
from wahub.providers.base import InboundMessage, ParsedDelivery, ProviderErrorInfo, StatusUpdate
from wahub.providers.spec import WebhookRequest

__all__ = [
    "SIGNATURE_HEADER",
    "dedupe_key",
    "parse_body",
    "parse_delivery",
    "parse_statuses",
    "verify_handshake",
    "verify_request",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"

_SIGNATURE_PREFIX: Final = "sha256="

# Statuses we track. Others Meta sends ("played" for voice notes, "deleted", "warning")
# say nothing about delivery, so they are skipped rather than rejected.
_STATUS_BY_NAME: Final[Mapping[str, Status]] = {
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "failed": Status.FAILED,
}


def verify_signature(app_secret: str, raw_body: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` (``X-Hub-Signature-256``) signs ``raw_body`` with the app secret.

    The header must be ``sha256=<hex HMAC-SHA256 of the raw body>``; hex case is ignored.
    Computed over the bytes as received (re-serialised JSON would differ) and compared
    in constant time. A missing header, another prefix, or an empty ``app_secret`` (a
    signature anyone could compute) gives ``False``. Never raises.
    """
    if not app_secret or header_value is None:
        return False
    value = header_value.strip()
    if not value.startswith(_SIGNATURE_PREFIX):
        return False
    received = value[len(_SIGNATURE_PREFIX) :].lower().encode("utf-8")
    expected = hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), received)


def verify_request(app_secret: str, request: WebhookRequest) -> bool:
    """``verify_signature`` of a received request (its body and signature header)."""
    return verify_signature(app_secret, request.body, request.headers.get(SIGNATURE_HEADER))


def dedupe_key(body: bytes) -> str:
    """The inbox dedupe key: the hash of the bytes. Meta redelivers the same bytes, and a
    delivery can carry many statuses and messages, so no single id names it."""
    return hashlib.sha256(body).hexdigest()


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The challenge to echo (as a plain-text 200) if Meta's GET handshake is valid.

    Valid means ``hub.mode == "subscribe"``, ``hub.verify_token`` equal to
    ``verify_token`` (compared in constant time) and a non-empty ``hub.challenge``.
    Anything else gives ``None``: the caller answers 403. An empty ``verify_token``
    never matches.
    """
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token")
    challenge = params.get("hub.challenge")
    if token is None or not challenge:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge


def parse_statuses(payload: Mapping[str, Any]) -> list[StatusUpdate]:
    """Every delivery status in a webhook POST, in payload order (see ``parse_delivery``)."""
    return list(parse_delivery(payload).statuses)


def parse_body(body: bytes) -> ParsedDelivery:
    """``parse_delivery`` over a stored raw body. Raises ``ValidationError`` when the body
    is not a JSON object or has the wrong shape."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise ValidationError("body is not a JSON object")
    return parse_delivery(payload)


def parse_delivery(payload: Mapping[str, Any]) -> ParsedDelivery:
    """Every inbound message and delivery status in a webhook POST, in payload order.

    Walks ``entry[].changes[].value`` (one POST may batch several entries and changes).
    Messages carry the sender's profile name (``contacts[].profile.name``), the quoted
    message (``context.id``), the reacted-to message (``reaction.message_id``) and our
    channel (``metadata.phone_number_id``). Every message type is kept, an unknown one
    under its own name. Statuses other than sent/delivered/read/failed are skipped.
    Optional fields (``biz_opaque_callback_data``, ``recipient_id``, ``errors``,
    pricing, ``contacts``) may be absent.

    Raises ``ValidationError`` naming the offending path (e.g. ``entry[0].changes``) when
    the payload has the wrong shape: ``entry`` missing or not a list, a list item not an
    object, a status or message without a string ``id`` or a unix-seconds ``timestamp``,
    a message without a phone number in ``from``.
    """
    root = _object(payload, "payload")
    entries = root.get("entry")
    if not isinstance(entries, list):
        raise _invalid("entry", f"must be a list, got {type(entries).__name__}")
    updates: list[StatusUpdate] = []
    inbound: list[InboundMessage] = []
    for i, raw_entry in enumerate(entries):
        entry_path = f"entry[{i}]"
        entry = _object(raw_entry, entry_path)
        for j, raw_change in enumerate(_list(entry, "changes", entry_path)):
            change_path = f"{entry_path}.changes[{j}]"
            change = _object(raw_change, change_path)
            if change.get("value") is None:
                continue
            value_path = f"{change_path}.value"
            value = _object(change["value"], value_path)
            for k, raw_status in enumerate(_list(value, "statuses", value_path)):
                update = _status_update(raw_status, f"{value_path}.statuses[{k}]")
                if update is not None:
                    updates.append(update)
            raw_messages = _list(value, "messages", value_path)
            if raw_messages:
                names = _profile_names(value, value_path)
                metadata = value.get("metadata")
                channel_ref = (
                    _optional_text(metadata.get("phone_number_id"))
                    if isinstance(metadata, Mapping)
                    else None
                )
                for k, raw_message in enumerate(raw_messages):
                    path = f"{value_path}.messages[{k}]"
                    inbound.append(_inbound_message(raw_message, path, names, channel_ref))
    return ParsedDelivery(messages=tuple(inbound), statuses=tuple(updates))


def _profile_names(value: Mapping[str, Any], value_path: str) -> dict[str, str]:
    """wa_id -> profile name, from ``value.contacts``; a contact without one is skipped."""
    names: dict[str, str] = {}
    for n, raw_contact in enumerate(_list(value, "contacts", value_path)):
        contact = _object(raw_contact, f"{value_path}.contacts[{n}]")
        profile = contact.get("profile")
        name = _optional_text(profile.get("name")) if isinstance(profile, Mapping) else None
        wa_id = _optional_text(contact.get("wa_id"))
        if wa_id is not None and name is not None:
            names[wa_id] = name
    return names


def _inbound_message(
    raw: Any, path: str, names: Mapping[str, str], channel_ref: str | None
) -> InboundMessage:
    item = _object(raw, path)
    provider_message_id = item.get("id")
    if not isinstance(provider_message_id, str) or not provider_message_id:
        raise _invalid(f"{path}.id", "must be a non-empty string (the wamid)")
    sender = item.get("from")
    sender_phone = _sender_phone(sender)
    if sender_phone is None:
        raise _invalid(f"{path}.from", f"must be the sender's wa_id (digits), got {sender!r}")
    raw_type = item.get("type")
    kind = raw_type.lower() if isinstance(raw_type, str) and raw_type else "unknown"
    body = item.get(kind)
    typed: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    context = item.get("context")
    reply_to = _optional_text(context.get("id")) if isinstance(context, Mapping) else None
    reaction_to = _optional_text(typed.get("message_id")) if kind == "reaction" else None
    name = names.get(str(sender)) or (next(iter(names.values())) if len(names) == 1 else None)
    return InboundMessage(
        provider="cloudapi",
        provider_message_id=provider_message_id,
        chat_id=sender_phone[1:] + PERSON_SUFFIX,
        timestamp=_timestamp(item.get("timestamp"), f"{path}.timestamp"),
        type=kind,
        content=dict(item),
        sender_phone=sender_phone,
        sender_name=name,
        text=_shared_contact_names(body) if kind == "contacts" else _readable_text(kind, typed),
        reply_to_provider_id=reply_to,
        reaction_to_provider_id=reaction_to,
        from_me=False,
        channel_ref=channel_ref,
        chat_name=name,
    )


def _sender_phone(raw: Any) -> str | None:
    """The sender as E.164 in today's numbering plan (so a Brazilian wa_id without the
    ninth digit lands in the same chat as our sends to the nine-digit number); the digits
    as given when the number is not valid in today's plan."""
    if not isinstance(raw, str):
        return None
    try:
        return phone_lookup_forms("+" + raw.lstrip("+"), field="from").e164
    except ValidationError:
        digits = e164_digits(raw)
        return None if digits is None else "+" + digits


def _shared_contact_names(raw: Any) -> str | None:
    """The names on shared contact cards (``contacts: [{name: {formatted_name}}]``)."""
    cards = raw if isinstance(raw, list) else []
    names = [
        card["name"].get("formatted_name")
        for card in cards
        if isinstance(card, Mapping) and isinstance(card.get("name"), Mapping)
    ]
    return ", ".join(n for n in names if isinstance(n, str) and n) or None


def _readable_text(kind: str, typed: Mapping[str, Any]) -> str | None:
    """What a person reads in the message: for keywords, previews and search."""
    if kind == "text":
        return _optional_text(typed.get("body"))
    if kind in ("image", "video", "document", "audio", "sticker"):
        return _optional_text(typed.get("caption")) or _optional_text(typed.get("filename"))
    if kind == "location":
        parts = [_optional_text(typed.get("name")), _optional_text(typed.get("address"))]
        return " ".join(p for p in parts if p) or None
    if kind == "interactive":
        for reply_kind in ("button_reply", "list_reply"):
            reply = typed.get(reply_kind)
            if isinstance(reply, Mapping):
                return _optional_text(reply.get("title"))
        return None
    if kind == "button":
        return _optional_text(typed.get("text")) or _optional_text(typed.get("payload"))
    if kind == "reaction":
        return _optional_text(typed.get("emoji"))
    if kind in ("order", "system"):
        return _optional_text(typed.get("text")) or _optional_text(typed.get("body"))
    return None


def _status_update(raw: Any, path: str) -> StatusUpdate | None:
    item = _object(raw, path)
    name = item.get("status")
    if not isinstance(name, str):
        raise _invalid(f"{path}.status", "must be a string")
    status = _STATUS_BY_NAME.get(name)
    if status is None:
        return None
    provider_message_id = item.get("id")
    if not isinstance(provider_message_id, str) or not provider_message_id:
        raise _invalid(f"{path}.id", "must be a non-empty string (the wamid)")
    errors = tuple(
        _error_info(raw_error, f"{path}.errors[{n}]")
        for n, raw_error in enumerate(_list(item, "errors", path))
    )
    return StatusUpdate(
        provider_message_id=provider_message_id,
        status=status,
        timestamp=_timestamp(item.get("timestamp"), f"{path}.timestamp"),
        tracking_id=_optional_text(item.get("biz_opaque_callback_data")),
        recipient=_optional_text(item.get("recipient_id")),
        errors=errors,
    )


def _error_info(raw: Any, path: str) -> ProviderErrorInfo:
    error = _object(raw, path)
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int | str) and not isinstance(raw_code, bool) else None
    message = _optional_text(error.get("message"))
    title = _optional_text(error.get("title")) or message or "unknown error"
    error_data = error.get("error_data")
    # error_data is documented as {"details": ...} but is sometimes a bare string.
    if isinstance(error_data, Mapping):
        detail = _optional_text(error_data.get("details"))
    else:
        detail = _optional_text(error_data)
    return ProviderErrorInfo(code=code, title=title, detail=detail or message)


# Unix seconds must fit the BIGINT column (and any real clock) to be stored at all.
_MAX_TIMESTAMP = 2**62


def _timestamp(raw: Any, path: str) -> int:
    # Meta sends unix seconds as a string; accept a JSON integer too.
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    if value is None or not 0 <= value < _MAX_TIMESTAMP:
        raise _invalid(path, f"must be unix seconds, got {raw!r}")
    return value


def _object(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _invalid(path, f"must be an object, got {type(raw).__name__}")
    return raw


def _list(parent: Mapping[str, Any], key: str, parent_path: str) -> list[Any]:
    """``parent[key]`` as a list; absent or null counts as empty."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"{parent_path}.{key}", f"must be a list, got {type(value).__name__}")
    return value


def _optional_text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def _invalid(path: str, problem: str) -> ValidationError:
    return ValidationError(f"webhook payload: {path} {problem}", details={"field": path})
