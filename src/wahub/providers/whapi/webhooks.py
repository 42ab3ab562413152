"""Whapi.Cloud webhooks: the shared secret, the dedupe key, inbound messages and statuses.

Pure functions over what the HTTP layer received (PROVIDERS.md 2.4, 2.5); no I/O.

WHAPI documents no signature. The receiver therefore checks a secret of ours that the
operator puts in the webhook URL WHAPI calls (``?secret=...``), or that a proxy adds as
an ``X-Wahub-Secret`` header (``verify_secret``).

One delivery is ``{"<family>": [...], "event": {"type", "event"}, "channel_id"}``.
``parse_delivery`` reads ``messages`` of ``messages.post`` and ``statuses`` of
``statuses.post``; every other family (chats, groups, contacts, presences, calls,
channel, users, labels, service, message edits via ``messages.patch``) parses to an
empty ``ParsedDelivery``: stored in the inbox, never an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from wahub.domain.status import Status
from wahub.providers.base import InboundMessage, ParsedDelivery, ProviderErrorInfo, StatusUpdate
from wahub.providers.spec import WebhookRequest
from wahub.providers.webhook_fields import (
    decode_object,
    derived_dedupe_key,
    group_or_none,
    invalid,
    list_at,
    object_at,
    optional_object,
    optional_text,
    person,
    required_text,
    unix_seconds,
)

__all__ = [
    "PROVIDER",
    "SECRET_HEADER",
    "SECRET_QUERY",
    "dedupe_key",
    "parse_body",
    "parse_delivery",
    "verify_request",
    "verify_secret",
]

PROVIDER: Final = "whapi"
SECRET_HEADER: Final = "X-Wahub-Secret"
SECRET_QUERY: Final = "secret"

# WHAPI's statuses and what they mean for our status machine. Not listed, so skipped:
# "pending" (WHAPI has not handed the message to WhatsApp yet: our own queued/sending
# state, nothing new) and "deleted" (the message was revoked; says nothing about
# delivery). "played" (a voice note was listened to) implies the message was seen, so it
# counts as read: a missed "read" still lands, and the machine only moves forward.
_STATUS_BY_NAME: Final[Mapping[str, Status]] = {
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "played": Status.READ,
    "failed": Status.FAILED,
}

# Fields of a type's content object that hold what a human reads, in order of preference.
_TEXT_KEYS: Final = ("body", "caption", "title", "name", "address")


def verify_secret(expected: str, query_value: str | None, header_value: str | None) -> bool:
    """Whether the request carries our shared secret (query parameter or header).

    Compared in constant time. An empty ``expected`` matches nothing: a secret anyone
    knows is no secret. Never raises.
    """
    if not expected:
        return False
    wanted = expected.encode("utf-8")
    return any(
        candidate is not None and hmac.compare_digest(candidate.encode("utf-8"), wanted)
        for candidate in (query_value, header_value)
    )


def verify_request(expected: str, request: WebhookRequest) -> bool:
    """``verify_secret`` of a received request: the query parameter or the header. Reads
    neither the body nor anything but those two."""
    return verify_secret(
        expected, request.query.get(SECRET_QUERY), request.headers.get(SECRET_HEADER)
    )


def dedupe_key(body: bytes) -> str:
    """The inbox dedupe key of a delivery.

    Named by WHAPI's own ids where the delivery carries them, so a redelivery is
    recognised even if WHAPI serialised it differently: the message ids of
    ``messages.post``, ``id:status`` pairs of statuses (WHAPI may repeat one status).
    Anything else, a body we cannot read included, is named by the hash of its bytes.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, Mapping):
        family, method = _event(payload)
        if family == "messages" and method == "post":
            ids = _ids(payload.get("messages"), lambda item: item.get("id"))
            if ids:
                return derived_dedupe_key(PROVIDER, "messages.post", ids)
        if family == "statuses":
            ids = _ids(
                payload.get("statuses"),
                lambda item: (
                    f"{item['id']}:{item['status']}"
                    if isinstance(item.get("id"), str) and isinstance(item.get("status"), str)
                    else None
                ),
            )
            if ids:
                return derived_dedupe_key(PROVIDER, "statuses", ids)
    return derived_dedupe_key(PROVIDER, "body", [hashlib.sha256(body).hexdigest()])


def _ids(raw: Any, pick: Callable[[Mapping[str, Any]], object]) -> list[str]:
    """Every item's id, or none at all when one item has no usable id (the body hash
    then names the delivery, rather than a key that forgets an item)."""
    if not isinstance(raw, list) or not raw:
        return []
    ids: list[str] = []
    for item in raw:
        value = pick(item) if isinstance(item, Mapping) else None
        if not isinstance(value, str) or not value:
            return []
        ids.append(value)
    return ids


def parse_body(body: bytes) -> ParsedDelivery:
    """``parse_delivery`` of a stored body; ``ValidationError`` when it is not JSON."""
    return parse_delivery(decode_object(body))


def parse_delivery(payload: Mapping[str, Any]) -> ParsedDelivery:
    """Inbound messages and statuses of one WHAPI delivery.

    Raises ``ValidationError`` naming the offending path when a message or status has
    the wrong shape (no id, no chat id, no timestamp). Messages in chats that are not a
    person or a group (``status@broadcast`` stories, newsletters, a linked id ``@lid``
    we cannot turn into a phone) are skipped: they are not conversations.
    """
    root = object_at(payload, "payload")
    family, method = _event(root)
    channel_ref = optional_text(root.get("channel_id"))
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    if family in ("messages", None) and method in ("post", None):
        for index, raw in enumerate(list_at(root, "messages", "payload")):
            message = _message(object_at(raw, f"messages[{index}]"), index, channel_ref)
            if message is not None:
                messages.append(message)
    if family in ("statuses", None):
        for index, raw in enumerate(list_at(root, "statuses", "payload")):
            update = _status(object_at(raw, f"statuses[{index}]"), f"statuses[{index}]")
            if update is not None:
                statuses.append(update)
    return ParsedDelivery(messages=tuple(messages), statuses=tuple(statuses))


def _event(root: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(event.type, event.event)``. The OpenAPI calls the second ``method``, the doc
    payloads ``event``: either is read. Absent means "infer from the arrays"."""
    event = root.get("event")
    if not isinstance(event, Mapping):
        return None, None
    family = event.get("type")
    method = event.get("event", event.get("method"))
    return (
        family.lower() if isinstance(family, str) else None,
        method.lower() if isinstance(method, str) else None,
    )


def _message(item: Mapping[str, Any], index: int, channel_ref: str | None) -> InboundMessage | None:
    path = f"messages[{index}]"
    message_id = required_text(item, "id", path)
    raw_type = required_text(item, "type", path).lower()
    raw_chat = required_text(item, "chat_id", path)
    chat_id = group_or_none(raw_chat)
    if chat_id is None:
        found = person(raw_chat)
        if found is None:
            return None
        chat_id = found[0]
    # ``from`` is the sender's digits (in a group, the member who wrote); it may be a
    # linked id that only looks like digits, and then it is no valid number: no phone.
    sender = person(optional_text(item.get("from")))
    from_me = item.get("from_me") is True
    context = optional_object(item, "context", path)
    message_type = raw_type
    text = _text(item, raw_type, path)
    reaction_to: str | None = None
    if raw_type == "action":
        action = optional_object(item, "action", path)
        if action.get("type") == "reaction":
            # The same thing as Cloud API's "reaction", so one name downstream; an empty
            # emoji means the reaction was removed.
            message_type = "reaction"
            reaction_to = optional_text(action.get("target"))
            text = optional_text(action.get("emoji"))
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=message_id,
        chat_id=chat_id,
        timestamp=unix_seconds(item.get("timestamp"), f"{path}.timestamp"),
        type=message_type,
        content=dict(item),
        sender_phone=sender[1] if sender is not None else None,
        sender_name=optional_text(item.get("from_name")),
        text=text,
        reply_to_provider_id=optional_text(context.get("quoted_id")),
        reaction_to_provider_id=reaction_to,
        from_me=from_me,
        channel_ref=channel_ref,
        chat_name=optional_text(item.get("chat_name")),
    )


def _text(item: Mapping[str, Any], message_type: str, path: str) -> str | None:
    """What a human reads: the body, a caption, a button or list title, a poll question,
    a contact's or place's name. ``None`` when the type has none (audio, sticker)."""
    content = item.get(message_type)
    if not isinstance(content, Mapping):
        return None
    if message_type == "reply":
        # {"type": "buttons_reply", "buttons_reply": {"id", "title"}} or list_reply.
        for key in ("buttons_reply", "list_reply"):
            choice = content.get(key)
            if isinstance(choice, Mapping) and (title := optional_text(choice.get("title"))):
                return title
        return None
    for key in _TEXT_KEYS:
        value = content.get(key)
        if isinstance(value, Mapping):  # interactive: {"body": {"text": ...}}
            value = value.get("text")
        if text := optional_text(value):
            return text
    return None


def _status(item: Mapping[str, Any], path: str) -> StatusUpdate | None:
    name = item.get("status")
    if not isinstance(name, str):
        raise invalid(f"{path}.status", "must be a string")
    status = _STATUS_BY_NAME.get(name.lower())
    if status is None:
        return None
    errors: tuple[ProviderErrorInfo, ...] = ()
    if status is Status.FAILED:
        # WHAPI's ``code`` is the numeric form of the status, not an error code, so it
        # is not reported as one. No failure reason is documented; read one if present.
        reason = optional_text(item.get("error")) or optional_text(item.get("reason"))
        errors = (
            ProviderErrorInfo(code=None, title="WHAPI reported the message failed", detail=reason),
        )
    return StatusUpdate(
        provider_message_id=required_text(item, "id", path),
        status=status,
        timestamp=unix_seconds(item.get("timestamp"), f"{path}.timestamp"),
        tracking_id=None,  # WHAPI echoes nothing of ours back
        recipient=optional_text(item.get("recipient_id")),
        errors=errors,
    )
