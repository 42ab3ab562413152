"""Session events as inbox rows: what a web session reports is stored in the inbox
(with a dedupe key, under provider ``web``) before it counts, exactly like a webhook,
and the inbox processor applies it through the parser here.

``encode`` turns a data event (a message, receipts, a group change, an LID/phone link)
into ``(dedupe_key, body)``; ``parse_body`` turns a stored body back into a
``ParsedDelivery``. The body is versioned JSON of the event's own fields, so a row
stored by one wahub version is read by the next. State events (QR, connected,
keep-alives...) are not inbox rows: they update the channel's session state.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.providers.base import (
    GroupChange,
    GroupParticipant,
    IdentityLink,
    InboundMessage,
    ParsedDelivery,
    ProviderErrorInfo,
    StatusUpdate,
)
from wahub.providers.web.session import (
    GroupChanged,
    IdentityLinked,
    MessageReceived,
    ReceiptReceived,
)

PROVIDER = "web"
VERSION = 1

DataEvent = MessageReceived | ReceiptReceived | GroupChanged | IdentityLinked
# The events that go to the inbox; the others change the session's state.
DATA_EVENTS = (MessageReceived, ReceiptReceived, GroupChanged, IdentityLinked)


def _digest(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _participant(p: GroupParticipant) -> dict[str, Any]:
    return {"phone": p.phone, "lid": p.lid, "rank": p.rank}


def _status(u: StatusUpdate) -> dict[str, Any]:
    return {
        "id": u.provider_message_id,
        "status": u.status.value,
        "timestamp": u.timestamp,
        "tracking_id": u.tracking_id,
        "recipient": u.recipient,
        "errors": [{"code": e.code, "title": e.title, "detail": e.detail} for e in u.errors],
    }


def _message(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.provider_message_id,
        "chat_id": m.chat_id,
        "timestamp": m.timestamp,
        "type": m.type,
        "content": m.content,
        "sender_phone": m.sender_phone,
        "sender_name": m.sender_name,
        "text": m.text,
        "reply_to": m.reply_to_provider_id,
        "reaction_to": m.reaction_to_provider_id,
        "from_me": m.from_me,
        "chat_name": m.chat_name,
    }


def encode(channel_id: str, event: DataEvent) -> tuple[str, bytes]:
    """The inbox dedupe key and body of a data event of ``channel_id``'s session.

    The key names what the event is about (a message id, the receipts' ids and status,
    the group change's content), so an event the engine repeats after a reconnect is
    stored once.
    """
    body: dict[str, Any] = {"v": VERSION, "channel_id": channel_id}
    if isinstance(event, MessageReceived):
        body.update(type="message", message=_message(event.message), sender_lid=event.sender_lid)
        key = f"msg:{event.message.provider_message_id}"
    elif isinstance(event, ReceiptReceived):
        statuses = [_status(u) for u in event.statuses]
        body.update(type="receipt", statuses=statuses)
        key = f"receipt:{_digest(statuses)}"
    elif isinstance(event, GroupChanged):
        change = {
            "chat_id": event.chat_id,
            "timestamp": event.timestamp,
            "name": event.name,
            "joined": [_participant(p) for p in event.joined],
            "left": [_participant(p) for p in event.left],
        }
        body.update(type="group", group=change)
        key = f"group:{event.chat_id}:{_digest(change)}"
    else:
        body.update(type="identity", lid=event.lid, phone=event.phone)
        key = f"lid:{event.lid}:{event.phone}"
    # The inbox's keys are at most 64 characters: the channel and what the event is
    # about, hashed (the kind stays readable for whoever looks at the inbox).
    kind, _, about = key.partition(":")
    digest = hashlib.sha256(f"{channel_id}\n{about}".encode()).hexdigest()[:48]
    body["key"] = f"web:{kind}:{digest}"
    return body["key"], orjson.dumps(body)


def _participants(raw: Any) -> tuple[GroupParticipant, ...]:
    return tuple(
        GroupParticipant(phone=p.get("phone"), lid=p.get("lid"), rank=p.get("rank") or "member")
        for p in raw or ()
    )


def parse_body(body: bytes) -> ParsedDelivery:
    """A stored session event as a ``ParsedDelivery``. Raises ValidationError for a body
    that is not one (it becomes a dead letter saying so)."""
    try:
        data = orjson.loads(body)
        kind = data["type"]
        channel_id = str(data["channel_id"])
        if kind == "message":
            m = data["message"]
            content = dict(m["content"])
            if data.get("sender_lid"):
                # Kept with the message: the inbox resolves a LID-only sender by it.
                content.setdefault("sender_lid", data["sender_lid"])
            message = InboundMessage(
                provider=PROVIDER,
                provider_message_id=str(m["id"]),
                chat_id=str(m["chat_id"]),
                timestamp=int(m["timestamp"]),
                type=str(m["type"]).lower(),
                content=content,
                sender_phone=m.get("sender_phone"),
                sender_name=m.get("sender_name"),
                text=m.get("text"),
                reply_to_provider_id=m.get("reply_to"),
                reaction_to_provider_id=m.get("reaction_to"),
                from_me=bool(m.get("from_me")),
                channel_ref=channel_id,
                chat_name=m.get("chat_name"),
            )
            lid, phone = data.get("sender_lid"), m.get("sender_phone")
            identities = (IdentityLink(lid, phone),) if lid and phone else ()
            return ParsedDelivery(messages=(message,), identities=identities)
        if kind == "receipt":
            statuses = tuple(
                StatusUpdate(
                    provider_message_id=str(u["id"]),
                    status=Status(u["status"]),
                    timestamp=int(u["timestamp"]),
                    tracking_id=u.get("tracking_id"),
                    recipient=u.get("recipient"),
                    errors=tuple(
                        ProviderErrorInfo(e.get("code"), str(e.get("title")), e.get("detail"))
                        for e in u.get("errors") or ()
                    ),
                )
                for u in data["statuses"]
            )
            return ParsedDelivery(statuses=statuses)
        if kind == "group":
            g = data["group"]
            change = GroupChange(
                channel_ref=channel_id,
                chat_id=str(g["chat_id"]),
                timestamp=int(g["timestamp"]),
                name=g.get("name"),
                joined=_participants(g.get("joined")),
                left=_participants(g.get("left")),
            )
            return ParsedDelivery(group_changes=(change,))
        if kind == "identity":
            return ParsedDelivery(identities=(IdentityLink(str(data["lid"]), str(data["phone"])),))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"not a web session event: {exc!r}") from exc
    raise ValidationError(f"not a web session event: unknown type {kind!r}")
