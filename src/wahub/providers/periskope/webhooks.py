"""Periskope webhooks: the signature, the dedupe key, ``message.created`` as inbound messages.

Pure functions over what the HTTP layer received (PROVIDERS.md 3.3); no I/O.

A delivery is ``{"event": "<type>", "data": {...}, "org_id", "previous_attributes",
"timestamp"}``. Only ``message.created`` carries a message; it fires for messages
received *and* sent from our number (``from_me``). Every other event (``message.flagged``,
``chat.created``, ``ticket.*``, ``chat.notification.created``, and the unconfirmed
``message.updated``/``message.deleted``/``reaction.*``) parses to an empty
``ParsedDelivery``: stored in the inbox as received, so a later parser can replay it,
and never an error. Periskope's delivery acks are not turned into statuses: we do not
send through Periskope, so there is no message of ours for them to move.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

import orjson

from wahub.providers.base import InboundMessage, ParsedDelivery
from wahub.providers.spec import WebhookRequest
from wahub.providers.webhook_fields import (
    decode_object,
    derived_dedupe_key,
    group_or_none,
    invalid,
    object_at,
    optional_text,
    person,
    required_text,
    unix_seconds,
)

__all__ = [
    "MESSAGE_CREATED",
    "PROVIDER",
    "SIGNATURE_HEADER",
    "dedupe_key",
    "parse_body",
    "parse_delivery",
    "signature",
    "verify_request",
    "verify_signature",
]

PROVIDER: Final = "periskope"
SIGNATURE_HEADER: Final = "x-periskope-signature"
MESSAGE_CREATED: Final = "message.created"

# whatsapp-web.js names a text message "chat", which reads like the chat itself; it is
# what every other provider calls "text", so it gets that name. Other types
# (image, video, audio, document, ptt, ...) keep Periskope's names.
_TYPE_NAMES: Final[Mapping[str, str]] = {"chat": "text"}


def signature(signing_key: str, body: bytes) -> str:
    """The ``x-periskope-signature`` value: hex HMAC-SHA256 of the body with the key."""
    return hmac.new(signing_key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(signing_key: str, raw_body: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` signs the body with Periskope's signing key.

    The documented scheme is hex HMAC-SHA256 of the body. Which bytes is only partially
    confirmed (PROVIDERS.md 3.3): integrators verify the raw body, while Periskope's own
    sample hashes ``JSON.stringify`` of the parsed body. So the raw bytes are tried
    first, then the compact re-serialisation ``JSON.stringify`` produces (same key
    order, no spaces, non-ASCII kept; it differs only for numbers like ``1.0`` that
    JavaScript prints as ``1``). Hex case is ignored and a ``sha256=`` prefix tolerated
    (undocumented, harmless). A missing header or an empty key (a signature anyone
    could compute) gives ``False``. Compared in constant time; never raises.
    """
    if not signing_key or header_value is None:
        return False
    received = header_value.strip().lower().removeprefix("sha256=").encode("ascii", "replace")
    if hmac.compare_digest(signature(signing_key, raw_body).encode("ascii"), received):
        return True
    try:
        parsed = json.loads(raw_body)
    except ValueError:  # not JSON (or not UTF-8): nothing else it could have signed
        return False
    compact = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if compact == raw_body:
        return False  # already compared
    return hmac.compare_digest(signature(signing_key, compact).encode("ascii"), received)


def verify_request(signing_key: str, request: WebhookRequest) -> bool:
    """``verify_signature`` of a received request (its body and signature header)."""
    return verify_signature(signing_key, request.body, request.headers.get(SIGNATURE_HEADER))


def dedupe_key(body: bytes) -> str:
    """The inbox dedupe key: the message id of a ``message.created``, so a redelivery is
    one delivery however it was serialised; the hash of the bytes for anything else."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, Mapping) and payload.get("event") == MESSAGE_CREATED:
        data = payload.get("data")
        if isinstance(data, Mapping) and (message_id := _message_id(data)):
            return derived_dedupe_key(PROVIDER, MESSAGE_CREATED, [message_id])
    return derived_dedupe_key(PROVIDER, "body", [hashlib.sha256(body).hexdigest()])


def parse_body(body: bytes) -> ParsedDelivery:
    """``parse_delivery`` of a stored body; ``ValidationError`` when it is not JSON."""
    return parse_delivery(decode_object(body))


def parse_delivery(payload: Mapping[str, Any]) -> ParsedDelivery:
    """The message of a ``message.created`` event; nothing for any other event.

    Raises ``ValidationError`` naming the path when ``event`` is not a string or a
    ``message.created`` has no ``data`` object, message id, chat id or timestamp. A
    message in a chat that is neither a person nor a group (``status@broadcast``) is
    skipped.
    """
    root = object_at(payload, "payload")
    event = required_text(root, "event", "payload")
    if event != MESSAGE_CREATED:
        return ParsedDelivery()
    data = object_at(root.get("data"), "data")
    message = _message(data, root)
    return ParsedDelivery(messages=(message,) if message is not None else ())


def _message_id(data: Mapping[str, Any]) -> str | None:
    # message_id ("true_<chat>_<wa id>_<author>") is the documented id; unique_id and
    # id._serialized are the same message under other names.
    found = optional_text(data.get("message_id")) or optional_text(data.get("unique_id"))
    if found is None and isinstance(ident := data.get("id"), Mapping):
        found = optional_text(ident.get("_serialized"))
    return found


def _message(data: Mapping[str, Any], root: Mapping[str, Any]) -> InboundMessage | None:
    message_id = _message_id(data)
    if message_id is None:
        raise invalid("data.message_id", "must be a non-empty string")
    raw_chat = required_text(data, "chat_id", "data")
    chat_id = group_or_none(raw_chat)
    if chat_id is None:
        found = person(raw_chat)
        if found is None:
            return None
        chat_id = found[0]
    from_me = data.get("from_me") is True
    if not from_me and isinstance(ident := data.get("id"), Mapping):
        from_me = ident.get("fromMe") is True
    raw_type = optional_text(data.get("message_type")) or "unknown"
    message_type = _TYPE_NAMES.get(raw_type.lower(), raw_type.lower())
    # The envelope's time is when Periskope sent the webhook: a fallback only.
    raw_time = data.get("timestamp") if data.get("timestamp") is not None else root.get("timestamp")
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=message_id,
        chat_id=chat_id,
        timestamp=unix_seconds(raw_time, "data.timestamp"),
        type=message_type,
        content=dict(data),
        sender_phone=_sender_phone(data, is_group=chat_id.endswith("@g.us")),
        sender_name=optional_text(data.get("sender_name")),
        text=optional_text(data.get("body")),  # the caption, for media
        reply_to_provider_id=optional_text(data.get("quoted_message_id")),
        from_me=from_me,
        channel_ref=_org_phone(data.get("org_phone")),
        chat_name=optional_text(data.get("chat_name")),
    )


def _sender_phone(data: Mapping[str, Any], *, is_group: bool) -> str | None:
    """``sender_phone`` (as ``...@c.us`` or bare digits), else the group's ``author``
    or the chat's ``from``. A linked id (``@lid``) is no phone: ``None``."""
    candidates = ["sender_phone", "author", "from"] if is_group else ["sender_phone", "from"]
    for key in candidates:
        found = person(optional_text(data.get(key)))
        if found is not None:
            return found[1]
    return None


def _org_phone(raw: Any) -> str | None:
    """Our channel in Periskope's terms: the org phone as the digits of the ``x-phone``
    header a Periskope channel is configured with (``918527184400``)."""
    found = person(optional_text(raw))
    return found[1][1:] if found is not None else optional_text(raw)
