"""Conversations, contacts and leads: what inbound messages (and our sends) do to them.

``record_inbound_sync`` is the inbox processor's step for messages. It runs in the
transaction that marks the webhook delivery processed, so a message is stored, counted
and answered exactly once however often the provider redelivers it: the message row's
unique provider id decides, and a duplicate changes nothing else.

``Conversations`` is the read side behind ``/v1/conversations``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.config import Settings
from wahub.domain.actors import Actor
from wahub.domain.errors import NotFound, OptedOut, OutsideServiceWindow, ValidationError
from wahub.domain.ids import new_id
from wahub.domain.inbound import (
    CONVERSATIONAL_EXCLUDED,
    DEFAULT_OPT_IN_KEYWORDS,
    DEFAULT_OPT_OUT_KEYWORDS,
    RECEIVED,
    is_whole_message_keyword,
    keyword_set,
    parse_keyword_list,
)
from wahub.domain.phones import PERSON_SUFFIX, is_group_chat, is_lid
from wahub.features.access import AccessControl
from wahub.features.auto_replies import queue_auto_reply_sync
from wahub.features.outbound import ordering_key
from wahub.providers.base import InboundMessage
from wahub.store import conversations as q
from wahub.store.chat_names import learn_chat_name_sync
from wahub.store.database import Database

MAX_PAGE = 200
PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """Settings the processing of inbound messages reads (``WAHUB_OPT_OUT_KEYWORDS``,
    ``WAHUB_OPT_IN_KEYWORDS``, ``WAHUB_AUTO_REPLY_MAX_PER_CHAT_PER_HOUR``)."""

    opt_out_keywords: frozenset[str] = field(
        default_factory=lambda: keyword_set(DEFAULT_OPT_OUT_KEYWORDS)
    )
    opt_in_keywords: frozenset[str] = field(
        default_factory=lambda: keyword_set(DEFAULT_OPT_IN_KEYWORDS)
    )
    max_auto_replies_per_chat_per_hour: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> InboundPolicy:
        return cls(
            opt_out_keywords=keyword_set(parse_keyword_list(settings.opt_out_keywords)),
            opt_in_keywords=keyword_set(parse_keyword_list(settings.opt_in_keywords)),
            max_auto_replies_per_chat_per_hour=settings.auto_reply_max_per_chat_per_hour,
        )


@dataclass(frozen=True, slots=True)
class RecordedInbound:
    """One newly stored message (a duplicate yields none)."""

    message_id: str
    conversation_id: str
    chat_id: str
    auto_reply_id: str | None


def resolve_channels_sync(
    conn: SyncConnection, provider: str, messages: Sequence[InboundMessage]
) -> dict[str | None, dict[str, Any]]:
    """The channel of each ``channel_ref`` among ``messages``.

    Raises ValidationError (the delivery becomes a dead letter, replayable once the
    channel exists) when a ref matches no channel of ``provider``: storing a message
    under a guessed channel would put it in the wrong inbox, and dropping it would lose it.
    """
    return resolve_channel_refs_sync(conn, provider, [m.channel_ref for m in messages])


def resolve_channel_refs_sync(
    conn: SyncConnection, provider: str, refs: Sequence[str | None]
) -> dict[str | None, dict[str, Any]]:
    """The channel of each of ``refs``; raises ValidationError like
    ``resolve_channels_sync``."""
    found: dict[str | None, dict[str, Any]] = {}
    for ref in set(refs):
        channel = q.find_channel_sync(conn, provider, ref)
        if channel is None:
            what = f"channel_ref {ref!r}" if ref is not None else "no channel_ref"
            raise ValidationError(
                f"inbound message for an unknown channel: {what} matches no single {provider} "
                "channel; add the channel (for Cloud API its phone_number_id), then replay "
                "this dead letter",
                details={"field": "channel_ref", "value": ref},
            )
        found[ref] = channel
    return found


def preview(kind: str, text: str | None) -> str:
    """A conversation's one-line preview of a message."""
    if text:
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
    return f"[{kind}]"


def record_inbound_sync(
    conn: SyncConnection,
    message: InboundMessage,
    channel: dict[str, Any],
    policy: InboundPolicy,
    now: float,
) -> RecordedInbound | None:
    """Store one inbound message and fold it into its contact, lead and conversation.

    None when the provider id is stored already (nothing else happens then). Messages
    our own number sent from another device (``from_me``) are stored as outbound
    ``sent`` messages: they update the conversation but are not unread, open no window
    and are never auto-answered.
    """
    at = float(message.timestamp)
    person = not is_group_chat(message.chat_id)
    links = q.message_ids_by_provider_ids_sync(
        conn,
        [p for p in (message.reply_to_provider_id, message.reaction_to_provider_id) if p],
    )
    quoted_provider_id = message.reaction_to_provider_id or message.reply_to_provider_id
    message_id = new_id("msg")
    inserted = q.insert_inbound_message_sync(
        conn,
        {
            "id": message_id,
            "channel_id": channel["id"],
            "chat_id": message.chat_id,
            "direction": "out" if message.from_me else "in",
            "type": message.type,
            "content": message.content,
            "status": "sent" if message.from_me else RECEIVED,
            "provider_message_id": message.provider_message_id,
            # A LID-only sender's "phone" is its LID (merged once the phone is known).
            "wa_id": (
                message.sender_phone[1:]
                if message.sender_phone and message.sender_phone.startswith("+")
                else None
            ),
            "reply_to": quoted_provider_id,
            "quoted_message_id": links.get(quoted_provider_id or ""),
            "sender_phone": message.sender_phone,
            "sender_name": message.sender_name,
            "text": message.text,
            "source": "device" if message.from_me else None,
            "ordering_key": ordering_key(channel["id"], message.chat_id),
            "priority": 0,
            "attempts": 0,
            "next_attempt_at": now,
            "sent_at": at,
            "created_at": now,
            "updated_at": now,
        },
        event_status="sent" if message.from_me else RECEIVED,
        event_source="device" if message.from_me else "webhook",
        at=message.timestamp,
    )
    if not inserted:
        return None
    conversational = message.type not in CONVERSATIONAL_EXCLUDED
    inbound = not message.from_me
    # Webhooks carry names (the sender's profile name; some providers a group's subject):
    # the chat-name cache learns them here, in this transaction, instead of asking the
    # provider later. Names from admins and group syncs still outrank them.
    name = message.chat_name or (message.sender_name if person and inbound else None)
    if name:
        learn_chat_name_sync(
            conn,
            chat_id=message.chat_id,
            name=name,
            source="profile",
            now=now,
            kind="person" if person else "group",
        )
    conversation, created = q.ensure_conversation_sync(conn, channel["id"], message.chat_id, now)
    contact: dict[str, Any] | None = None
    lead_id: str | None = None
    # A sender known only by its linked id (WhatsApp Web hides some numbers) has no
    # phone for a contact or lead yet: its chat is stored under the LID and merged into
    # the phone's once the phone is learned (features/identities.py).
    if person and not is_lid(message.chat_id):
        contact = q.upsert_contact_sync(
            conn,
            phone="+" + message.chat_id.removesuffix(PERSON_SUFFIX),
            wa_id=message.chat_id.removesuffix(PERSON_SUFFIX),
            profile_name=message.sender_name if inbound else None,
            now=now,
        )
        if conversational and inbound:
            we_wrote_first = q.get_lead_by_contact_sync(conn, contact["id"]) is None and (
                q.has_outbound_sync(conn, channel["id"], message.chat_id)
            )
            lead_id = q.upsert_lead_on_inbound_sync(
                conn, contact["id"], at=at, we_wrote_first=we_wrote_first, now=now
            )
        elif conversational and conversation["lead_id"] is not None:
            q.mark_lead_contacted_sync(conn, conversation["lead_id"], at=at)
    q.record_conversation_message_sync(
        conn,
        conversation["id"],
        q.MessageSummary(
            message_id, at, preview(message.type, message.text), "in" if inbound else "out"
        ),
        inbound=inbound,
        unread=inbound and conversational,
        opens_window=inbound and conversational,
        contact_id=contact["id"] if contact else None,
        lead_id=lead_id,
        now=now,
    )
    if not inbound:
        return RecordedInbound(message_id, conversation["id"], message.chat_id, None)
    opted_out = contact is not None and contact["opted_out_at"] is not None
    if contact is not None and conversational:
        if is_whole_message_keyword(message.text, policy.opt_out_keywords):
            q.set_opt_out_sync(
                conn,
                contact["id"],
                opted_out_at=at,
                reason=f"sent {message.text!r}",
                now=now,
            )
            opted_out = True
        elif opted_out and is_whole_message_keyword(message.text, policy.opt_in_keywords):
            q.set_opt_out_sync(conn, contact["id"], opted_out_at=None, reason=None, now=now)
            opted_out = False
    q.insert_notification_sync(
        conn,
        {
            "kind": "message.reaction" if message.type == "reaction" else "message.received",
            "conversation_id": conversation["id"],
            "message_id": message_id,
            "user_id": conversation["assigned_user_id"],
            "title": f"New message from {_sender_label(message, contact)}",
            "body": preview(message.type, message.text),
            "created_at": now,
        },
    )
    reply: dict[str, Any] | None = None
    if person and conversational and not opted_out:
        reply = queue_auto_reply_sync(
            conn,
            channel_id=channel["id"],
            chat_id=message.chat_id,
            text=message.text,
            at=at,
            first_message=created,
            max_per_chat_per_hour=policy.max_auto_replies_per_chat_per_hour,
            now=now,
        )
    if reply is not None:
        record_outbound_sync(
            conn,
            channel_id=channel["id"],
            chat_id=message.chat_id,
            message_id=reply["id"],
            kind="text",
            text=reply["text"],
            now=now,
            moves_lead=False,
        )
    return RecordedInbound(
        message_id, conversation["id"], message.chat_id, reply["id"] if reply else None
    )


def _sender_label(message: InboundMessage, contact: dict[str, Any] | None) -> str:
    if contact is not None and contact["name"]:
        return str(contact["name"])
    return message.sender_name or message.sender_phone or message.chat_id


# -- outbound: what Messaging.send checks and records -------------------------------------


def check_may_send_sync(
    conn: SyncConnection,
    channel: dict[str, Any],
    chat_id: str,
    *,
    is_template: bool,
    now: float,
) -> None:
    """Raise OptedOut when the person opted out, OutsideServiceWindow when a free-form
    message would land outside their 24-hour window on a channel that enforces it.

    Groups have neither rule. A template may go to a person outside the window (that is
    what templates are for) but not to one who opted out.
    """
    if is_group_chat(chat_id):
        return
    phone = "+" + chat_id.removesuffix(PERSON_SUFFIX)
    contact = q.get_contact_by_phone_sync(conn, phone)
    if contact is not None and contact["opted_out_at"] is not None:
        raise OptedOut(
            f"to: {phone} opted out of messages ({contact['opt_out_reason'] or 'keyword'}); "
            "nothing is sent until they opt in again (e.g. by sending START)",
            details={"field": "to", "value": phone},
        )
    if is_template or channel["kind"] != "cloudapi" or not channel["enforce_service_window"]:
        return
    conversation = q.get_conversation_by_chat_sync(conn, channel["id"], chat_id)
    until = conversation["service_window_until"] if conversation else None
    if until is None or until <= now:
        last = "never wrote to this number" if until is None else "last wrote over 24 hours ago"
        raise OutsideServiceWindow(
            f"to: the 24-hour customer-service window with {phone} is closed (they {last}); "
            "WhatsApp only delivers an approved template now: send type 'template'",
            details={"field": "type", "chat_id": chat_id, "window_until": until},
        )


def record_outbound_sync(
    conn: SyncConnection,
    *,
    channel_id: str,
    chat_id: str,
    message_id: str,
    kind: str,
    text: str | None,
    now: float,
    moves_lead: bool = True,
) -> None:
    """Fold a message we queued into its conversation; a ``new`` lead becomes
    ``contacted`` (unless ``moves_lead`` is False: an auto-reply is not a person)."""
    conversation, created = q.ensure_conversation_sync(conn, channel_id, chat_id, now)
    lead_id = conversation["lead_id"]
    contact_id: str | None = None
    if created and not is_group_chat(chat_id):
        contact = q.get_contact_by_phone_sync(conn, "+" + chat_id.removesuffix(PERSON_SUFFIX))
        if contact is not None:
            contact_id = contact["id"]
            lead = q.get_lead_by_contact_sync(conn, contact_id)
            lead_id = lead["id"] if lead else None
    q.record_conversation_message_sync(
        conn,
        conversation["id"],
        q.MessageSummary(message_id, now, preview(kind, text), "out"),
        inbound=False,
        unread=False,
        opens_window=False,
        contact_id=contact_id,
        lead_id=lead_id if created else None,
        now=now,
    )
    if moves_lead and lead_id is not None:
        q.mark_lead_contacted_sync(conn, lead_id, at=now)


@dataclass(frozen=True, slots=True)
class SendCheck:
    """One message about to be queued (see ``check_may_send_many_sync``)."""

    channel: dict[str, Any]
    chat_id: str
    is_template: bool
    now: float


def check_may_send_many_sync(
    conn: SyncConnection, checks: Sequence[SendCheck]
) -> list[OptedOut | OutsideServiceWindow | None]:
    """``check_may_send_sync`` for many messages with two statements: each message's
    refusal, or None when it may be sent."""
    people = [c for c in checks if not is_group_chat(c.chat_id)]
    contacts = q.get_contacts_by_phones_sync(
        conn, ["+" + c.chat_id.removesuffix(PERSON_SUFFIX) for c in people]
    )
    windowed = [
        c
        for c in people
        if not c.is_template
        and c.channel["kind"] == "cloudapi"
        and c.channel["enforce_service_window"]
    ]
    conversations = q.get_conversations_by_chats_sync(
        conn, [(c.channel["id"], c.chat_id) for c in windowed]
    )
    outcomes: list[OptedOut | OutsideServiceWindow | None] = []
    for check in checks:
        outcomes.append(None)
        if is_group_chat(check.chat_id):
            continue
        phone = "+" + check.chat_id.removesuffix(PERSON_SUFFIX)
        contact = contacts.get(phone)
        if contact is not None and contact["opted_out_at"] is not None:
            outcomes[-1] = OptedOut(
                f"to: {phone} opted out of messages ({contact['opt_out_reason'] or 'keyword'}); "
                "nothing is sent until they opt in again (e.g. by sending START)",
                details={"field": "to", "value": phone},
            )
            continue
        channel = check.channel
        if (
            check.is_template
            or channel["kind"] != "cloudapi"
            or not channel["enforce_service_window"]
        ):
            continue
        conversation = conversations.get((channel["id"], check.chat_id))
        until = conversation["service_window_until"] if conversation else None
        if until is None or until <= check.now:
            last = "never wrote to this number" if until is None else "last wrote over 24 hours ago"
            outcomes[-1] = OutsideServiceWindow(
                f"to: the 24-hour customer-service window with {phone} is closed (they {last}); "
                "WhatsApp only delivers an approved template now: send type 'template'",
                details={"field": "type", "chat_id": check.chat_id, "window_until": until},
            )
    return outcomes


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message we queued (see ``record_outbound_many_sync``)."""

    channel_id: str
    chat_id: str
    message_id: str
    kind: str
    text: str | None
    now: float


def record_outbound_many_sync(conn: SyncConnection, sent: Sequence[Outbound]) -> None:
    """``record_outbound_sync`` for many messages, in the order given, with a handful of
    statements instead of three or more per message."""
    if not sent:
        return
    by_pair, created = q.ensure_conversations_sync(
        conn, [(o.channel_id, o.chat_id) for o in sent], min(o.now for o in sent)
    )
    # A conversation this call created may belong to a contact (and a lead) already.
    new_people = [
        pair
        for pair in dict.fromkeys((o.channel_id, o.chat_id) for o in sent)
        if pair in created and not is_group_chat(pair[1])
    ]
    contacts = q.get_contacts_by_phones_sync(
        conn, ["+" + chat.removesuffix(PERSON_SUFFIX) for _, chat in new_people]
    )
    leads = q.get_leads_by_contacts_sync(conn, [c["id"] for c in contacts.values()])
    folds: list[q.OutboundFold] = []
    contacted: list[tuple[str, float]] = []
    for o in sent:
        pair = (o.channel_id, o.chat_id)
        conversation = by_pair[pair]
        lead_id = conversation["lead_id"]
        contact_id: str | None = None
        first = pair in created
        if first:
            created.discard(pair)  # the first message of the pair is the one that created it
            contact = (
                None
                if is_group_chat(o.chat_id)
                else contacts.get("+" + o.chat_id.removesuffix(PERSON_SUFFIX))
            )
            if contact is not None:
                contact_id = contact["id"]
                lead = leads.get(contact_id)
                lead_id = lead["id"] if lead else None
            conversation["lead_id"] = lead_id
        folds.append(
            q.OutboundFold(
                conversation["id"],
                q.MessageSummary(o.message_id, o.now, preview(o.kind, o.text), "out"),
                contact_id,
                lead_id if first else None,
                o.now,
            )
        )
        if lead_id is not None:
            contacted.append((lead_id, o.now))
    q.fold_outbound_sync(conn, folds)
    q.mark_leads_contacted_sync(conn, contacted)


# -- the read side -------------------------------------------------------------------------


class Conversations:
    """``/v1/conversations``: list, read, mark read. Agents see the conversations of chats
    assigned to their employee groups and the ones assigned to them."""

    def __init__(self, db: Database, access: AccessControl) -> None:
        self.db = db
        self.access = access

    async def list_page(
        self,
        actor: Actor,
        *,
        channel_id: str | None,
        unread_only: bool,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page, newest activity first, and the next page's cursor (None at the end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        before = _parse_cursor(cursor)
        visible = await self.access.visible_chat_ids(actor)
        async with self.db.read() as conn:
            rows = await q.list_conversations(
                conn,
                visible_chat_ids=visible,
                visible_user_id=None if visible is None else actor.user_id,
                channel_id=channel_id,
                unread_only=unread_only,
                before=before,
                limit=limit + 1,
                channel_ids=actor.channel_ids,
            )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = f"{last['sort_at']!r}|{last['id']}"
        return page, next_cursor

    async def get(
        self, actor: Actor, conversation_id: str, *, messages: int = 50
    ) -> dict[str, Any]:
        """The conversation with its contact, lead and newest messages. NotFound also
        when the actor may not see it."""
        async with self.db.read() as conn:
            row = await q.get_conversation(conn, conversation_id)
            if row is None:
                raise NotFound(f"no conversation {conversation_id}")
            await self._check_visible(actor, row)
            contact = await q.get_contact(conn, row["contact_id"]) if row["contact_id"] else None
            lead = await q.get_lead(conn, row["lead_id"]) if row["lead_id"] else None
            recent = await q.list_chat_messages(conn, row["channel_id"], row["chat_id"], messages)
        return {**row, "contact": contact, "lead": lead, "messages": recent}

    async def mark_read(self, actor: Actor, conversation_id: str) -> dict[str, Any]:
        """Unread to zero, notifications read. NotFound when absent or not visible."""
        async with self.db.read() as conn:
            row = await q.get_conversation(conn, conversation_id)
        if row is None:
            raise NotFound(f"no conversation {conversation_id}")
        await self._check_visible(actor, row)
        now = time.time()
        await self.db.write(lambda conn: q.mark_conversation_read_sync(conn, conversation_id, now))
        return {**row, "unread_count": 0, "updated_at": now}

    async def _check_visible(self, actor: Actor, row: dict[str, Any]) -> None:
        if not actor.may_use_channel(row["channel_id"]):
            raise NotFound(f"no conversation {row['id']}")
        if actor.sees_everything or row["assigned_user_id"] == actor.user_id:
            return
        visible = await self.access.visible_chat_ids(actor)
        if visible is not None and row["chat_id"] not in visible:
            raise NotFound(f"no conversation {row['id']}")


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    at, separator, conversation_id = cursor.partition("|")
    try:
        value: float | None = float(at)
    except ValueError:
        value = None
    # float() also reads "nan" and "inf", which no cursor of ours holds.
    if value is None or not math.isfinite(value) or not separator or not conversation_id:
        raise ValidationError(
            "cursor: not a cursor returned by this API (use next_cursor as given)",
            details={"field": "cursor"},
        )
    return value, conversation_id
