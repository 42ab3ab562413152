"""Named queries for inbound traffic: inbound messages, contacts, leads, conversations and
notifications.

Every function runs in the caller's transaction. Counters and "latest" columns are
updated with SQL expressions (``unread_count + 1``, ``CASE WHEN ... < :at``), not read,
changed and written back, so two processes applying messages of one chat at once on
PostgreSQL neither lose an increment nor move "last message" backwards.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    String,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import Connection as SyncConnection

from wahub.domain.ids import new_id
from wahub.domain.phones import PERSON_SUFFIX
from wahub.store.access import assigned_chats
from wahub.store.database import in_one_hop
from wahub.store.messages import EventRecord, record_events_sync
from wahub.store.schema import (
    channels,
    chats,
    contacts,
    conversations,
    leads,
    message_search,
    messages,
    notifications,
)
from wahub.store.sql import insert_ignore, one_of

SERVICE_WINDOW_SECONDS = 24 * 3600

# Lead statuses in order. Traffic only moves a lead forward along new -> contacted ->
# replied; qualified, won and lost are people's decisions and traffic never undoes them.
LEAD_STATUSES = ("new", "contacted", "replied", "qualified", "won", "lost")


# -- channels ------------------------------------------------------------------------------


def find_channel_sync(
    conn: SyncConnection, provider: str, ref: str | None
) -> dict[str, Any] | None:
    """The channel a provider's ``channel_ref`` names (Cloud API ``phone_number_id``, or
    the channel's own id, phone number or phone_number_id for the other providers).

    Without a ref, the provider's only channel; None when none or several match.
    """
    # A removed channel receives nothing: its deliveries become dead letters.
    stmt = select(channels).where(channels.c.kind == provider, channels.c.removed_at.is_(None))
    if ref is not None:
        digits = ref.lstrip("+").split("@", 1)[0]
        stmt = stmt.where(
            or_(
                channels.c.phone_number_id == ref,
                channels.c.id == ref,
                channels.c.phone_number == "+" + digits,
            )
        )
    rows = [dict(r._mapping) for r in conn.execute(stmt.limit(2))]
    return rows[0] if len(rows) == 1 else None


# -- messages ------------------------------------------------------------------------------


def insert_inbound_message_sync(
    conn: SyncConnection, row: dict[str, Any], *, event_status: str, event_source: str, at: int
) -> bool:
    """Store a message a provider told us about, once: False when its provider id is
    already stored (a redelivered webhook, or the echo of a message we sent).

    Records one event (``received``, or ``sent`` for our own number's messages from
    another device), so the realtime feed that tails events carries the message.
    """
    result = conn.execute(insert_ignore(conn, messages), row)
    if not result.rowcount:
        return False
    record_events_sync(
        conn, [EventRecord(row["id"], event_status, event_source, 0, at)], row["created_at"]
    )
    return True


def message_ids_by_provider_ids_sync(
    conn: SyncConnection, provider_ids: Sequence[str]
) -> dict[str, str]:
    """Our message ids for the provider ids we know (to link replies and reactions)."""
    if not provider_ids:
        return {}
    stmt = select(messages.c.provider_message_id, messages.c.id).where(
        messages.c.provider_message_id.in_(list(set(provider_ids)))
    )
    return {r.provider_message_id: r.id for r in conn.execute(stmt)}


def has_outbound_sync(conn: SyncConnection, channel_id: str, chat_id: str) -> bool:
    stmt = (
        select(messages.c.id)
        .where(
            messages.c.chat_id == chat_id,
            messages.c.channel_id == channel_id,
            messages.c.direction == "out",
        )
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


def list_chat_messages_sync(
    conn: SyncConnection, channel_id: str, chat_id: str, limit: int
) -> list[dict[str, Any]]:
    """The chat's newest messages on the channel, newest first."""
    stmt = (
        select(messages)
        .where(messages.c.chat_id == chat_id, messages.c.channel_id == channel_id)
        .order_by(messages.c.seq.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


# -- contacts ------------------------------------------------------------------------------


def get_contact_by_phone_sync(conn: SyncConnection, phone: str) -> dict[str, Any] | None:
    row = conn.execute(select(contacts).where(contacts.c.phone == phone)).first()
    return None if row is None else dict(row._mapping)


def get_contact_sync(conn: SyncConnection, contact_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
    return None if row is None else dict(row._mapping)


def upsert_contact_sync(
    conn: SyncConnection,
    *,
    phone: str,
    wa_id: str | None,
    profile_name: str | None,
    now: float,
) -> dict[str, Any]:
    """The contact with ``phone``, created on first sight. A profile name is taken when
    the contact has no name or its name came from the profile too (people rename
    themselves); a name an operator gave is never overwritten by a profile."""
    conn.execute(
        insert_ignore(conn, contacts),
        {
            "id": new_id("ct"),
            "phone": phone,
            "wa_id": wa_id,
            "name": profile_name,
            "name_source": "profile" if profile_name else None,
            "created_at": now,
            "updated_at": now,
        },
    )
    contact = get_contact_by_phone_sync(conn, phone)
    assert contact is not None
    values: dict[str, Any] = {}
    if (
        profile_name
        and contact["name"] != profile_name
        and contact["name_source"]
        in (
            None,
            "profile",
        )
    ):
        values.update(name=profile_name, name_source="profile")
    if wa_id and contact["wa_id"] != wa_id:
        values["wa_id"] = wa_id
    if values:
        values["updated_at"] = now
        conn.execute(update(contacts).where(contacts.c.id == contact["id"]).values(values))
        contact.update(values)
    return contact


def set_opt_out_sync(
    conn: SyncConnection,
    contact_id: str,
    *,
    opted_out_at: float | None,
    reason: str | None,
    now: float,
) -> None:
    """Opt a contact out (``opted_out_at`` set) or back in (None)."""
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(opted_out_at=opted_out_at, opt_out_reason=reason, updated_at=now)
    )


# -- leads ---------------------------------------------------------------------------------


def get_lead_sync(conn: SyncConnection, lead_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(leads).where(leads.c.id == lead_id)).first()
    return None if row is None else dict(row._mapping)


def get_lead_by_contact_sync(conn: SyncConnection, contact_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(leads).where(leads.c.contact_id == contact_id)).first()
    return None if row is None else dict(row._mapping)


def upsert_lead_on_inbound_sync(
    conn: SyncConnection, contact_id: str, *, at: float, we_wrote_first: bool, now: float
) -> str:
    """The contact's lead after a message from them: created ``new`` (or ``replied`` when
    we wrote to them first); ``contacted`` becomes ``replied``. Returns the lead id."""
    conn.execute(
        insert_ignore(conn, leads),
        {
            "id": new_id("lead"),
            "contact_id": contact_id,
            "status": "replied" if we_wrote_first else "new",
            "first_message_at": at,
            "last_message_at": at,
            "created_at": now,
            "updated_at": now,
        },
    )
    conn.execute(
        update(leads)
        .where(leads.c.contact_id == contact_id)
        .values(
            status=case((leads.c.status == "contacted", "replied"), else_=leads.c.status),
            last_message_at=_latest(leads.c.last_message_at, at),
            updated_at=now,
        )
    )
    lead_id = conn.execute(select(leads.c.id).where(leads.c.contact_id == contact_id)).scalar()
    return str(lead_id)


def mark_lead_contacted_sync(conn: SyncConnection, lead_id: str, *, at: float) -> None:
    """We wrote to the lead: ``new`` becomes ``contacted``; later statuses stay."""
    conn.execute(
        update(leads)
        .where(leads.c.id == lead_id)
        .values(
            status=case((leads.c.status == "new", "contacted"), else_=leads.c.status),
            last_message_at=_latest(leads.c.last_message_at, at),
            updated_at=at,
        )
    )


# -- conversations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """What a conversation shows of its latest message."""

    message_id: str
    at: float
    preview: str | None
    direction: str


def _latest(column: Any, at: float) -> ColumnElement[Any]:
    """``column`` moved forward to ``at``, never backwards (portable GREATEST)."""
    return case((or_(column.is_(None), column < at), at), else_=column)


def ensure_conversation_sync(
    conn: SyncConnection, channel_id: str, chat_id: str, now: float
) -> tuple[dict[str, Any], bool]:
    """The conversation of (channel, chat) and whether this call created it."""
    result = conn.execute(
        insert_ignore(conn, conversations),
        {
            "id": new_id("conv"),
            "channel_id": channel_id,
            "chat_id": chat_id,
            "unread_count": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    row = get_conversation_by_chat_sync(conn, channel_id, chat_id)
    assert row is not None
    return row, bool(result.rowcount)


def get_conversation_by_chat_sync(
    conn: SyncConnection, channel_id: str, chat_id: str
) -> dict[str, Any] | None:
    stmt = select(conversations).where(
        conversations.c.channel_id == channel_id, conversations.c.chat_id == chat_id
    )
    row = conn.execute(stmt).first()
    return None if row is None else dict(row._mapping)


def ensure_conversations_sync(
    conn: SyncConnection, pairs: Sequence[tuple[str, str]], now: float
) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[str, str]]]:
    """``ensure_conversation_sync`` for many (channel, chat) pairs with two statements:
    the conversations by pair, and the pairs this call created."""
    unique = list(dict.fromkeys(pairs))
    if not unique:
        return {}, set()
    stmt = insert_ignore(conn, conversations).returning(
        conversations.c.channel_id, conversations.c.chat_id
    )
    rows = [
        {
            "id": new_id("conv"),
            "channel_id": channel_id,
            "chat_id": chat_id,
            "unread_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        for channel_id, chat_id in unique
    ]
    created = {(r.channel_id, r.chat_id) for r in conn.execute(stmt, rows)}
    found = conn.execute(
        select(conversations).where(
            one_of(conn, conversations.c.chat_id, {chat for _, chat in unique}),
            one_of(conn, conversations.c.channel_id, {channel for channel, _ in unique}),
        )
    )
    wanted = set(unique)
    by_pair = {
        (r.channel_id, r.chat_id): dict(r._mapping)
        for r in found
        if (r.channel_id, r.chat_id) in wanted
    }
    return by_pair, created


def get_conversations_by_chats_sync(
    conn: SyncConnection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The existing conversations of these (channel, chat) pairs, by pair."""
    wanted = set(pairs)
    if not wanted:
        return {}
    stmt = select(conversations).where(
        one_of(conn, conversations.c.chat_id, {chat for _, chat in wanted}),
        one_of(conn, conversations.c.channel_id, {channel for channel, _ in wanted}),
    )
    return {
        (r.channel_id, r.chat_id): dict(r._mapping)
        for r in conn.execute(stmt)
        if (r.channel_id, r.chat_id) in wanted
    }


def get_contacts_by_phones_sync(
    conn: SyncConnection, phones: Sequence[str]
) -> dict[str, dict[str, Any]]:
    if not phones:
        return {}
    stmt = select(contacts).where(one_of(conn, contacts.c.phone, set(phones)))
    return {r.phone: dict(r._mapping) for r in conn.execute(stmt)}


def get_leads_by_contacts_sync(
    conn: SyncConnection, contact_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    if not contact_ids:
        return {}
    stmt = select(leads).where(one_of(conn, leads.c.contact_id, set(contact_ids)))
    return {r.contact_id: dict(r._mapping) for r in conn.execute(stmt)}


_at: BindParameter[float] = bindparam("b_at", type_=Float)
_newer = or_(conversations.c.last_message_at.is_(None), conversations.c.last_message_at <= _at)
# ``record_conversation_message_sync`` for an outbound message, as one statement with
# parameters, so many messages take one executemany.
_RECORD_OUTBOUND = (
    update(conversations)
    .where(conversations.c.id == bindparam("b_id"))
    .values(
        last_message_id=case(
            (_newer, bindparam("b_message_id", type_=String)), else_=conversations.c.last_message_id
        ),
        last_message_preview=case(
            (_newer, bindparam("b_preview", type_=Text)), else_=conversations.c.last_message_preview
        ),
        last_message_direction=case((_newer, "out"), else_=conversations.c.last_message_direction),
        last_message_at=case(
            (
                or_(
                    conversations.c.last_message_at.is_(None), conversations.c.last_message_at < _at
                ),
                _at,
            ),
            else_=conversations.c.last_message_at,
        ),
        updated_at=bindparam("b_now", type_=Float),
        contact_id=func.coalesce(
            bindparam("b_contact_id", type_=String), conversations.c.contact_id
        ),
        lead_id=func.coalesce(bindparam("b_lead_id", type_=String), conversations.c.lead_id),
    )
)
_MARK_LEAD_CONTACTED = (
    update(leads)
    .where(leads.c.id == bindparam("b_id"))
    .values(
        status=case((leads.c.status == "new", "contacted"), else_=leads.c.status),
        last_message_at=case(
            (or_(leads.c.last_message_at.is_(None), leads.c.last_message_at < _at), _at),
            else_=leads.c.last_message_at,
        ),
        updated_at=_at,
    )
)


@dataclass(frozen=True, slots=True)
class OutboundFold:
    """One queued message folded into its conversation (see ``fold_outbound_sync``)."""

    conversation_id: str
    summary: MessageSummary
    contact_id: str | None
    lead_id: str | None
    now: float


def fold_outbound_sync(conn: SyncConnection, folds: Sequence[OutboundFold]) -> None:
    """``record_conversation_message_sync`` (outbound: not unread, no window) for many
    messages with one statement, applied in the order given."""
    if folds:
        conn.execute(
            _RECORD_OUTBOUND,
            [
                {
                    "b_id": f.conversation_id,
                    "b_at": f.summary.at,
                    "b_message_id": f.summary.message_id,
                    "b_preview": f.summary.preview,
                    "b_now": f.now,
                    "b_contact_id": f.contact_id,
                    "b_lead_id": f.lead_id,
                }
                for f in folds
            ],
        )


def mark_leads_contacted_sync(conn: SyncConnection, leads_at: Sequence[tuple[str, float]]) -> None:
    """``mark_lead_contacted_sync`` for many (lead, at) with one statement."""
    if leads_at:
        conn.execute(_MARK_LEAD_CONTACTED, [{"b_id": lead, "b_at": at} for lead, at in leads_at])


def get_conversation_sync(conn: SyncConnection, conversation_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(conversations).where(conversations.c.id == conversation_id)).first()
    return None if row is None else dict(row._mapping)


def record_conversation_message_sync(
    conn: SyncConnection,
    conversation_id: str,
    summary: MessageSummary,
    *,
    inbound: bool,
    unread: bool,
    opens_window: bool,
    contact_id: str | None = None,
    lead_id: str | None = None,
    now: float,
) -> None:
    """Fold one message into its conversation: the latest message (by its own time, so
    late deliveries do not move it back), unread +1, the customer-service window."""
    newer = or_(
        conversations.c.last_message_at.is_(None), conversations.c.last_message_at <= summary.at
    )
    values: dict[str, Any] = {
        "last_message_id": case((newer, summary.message_id), else_=conversations.c.last_message_id),
        "last_message_preview": case(
            (newer, summary.preview), else_=conversations.c.last_message_preview
        ),
        "last_message_direction": case(
            (newer, summary.direction), else_=conversations.c.last_message_direction
        ),
        "last_message_at": _latest(conversations.c.last_message_at, summary.at),
        "updated_at": now,
    }
    if inbound:
        values["last_inbound_at"] = _latest(conversations.c.last_inbound_at, summary.at)
    if unread:
        values["unread_count"] = conversations.c.unread_count + 1
    if opens_window:
        values["service_window_until"] = _latest(
            conversations.c.service_window_until, summary.at + SERVICE_WINDOW_SECONDS
        )
    if contact_id is not None:
        values["contact_id"] = contact_id
    if lead_id is not None:
        values["lead_id"] = lead_id
    conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(values))


def mark_conversation_read_sync(conn: SyncConnection, conversation_id: str, now: float) -> bool:
    """Unread back to zero and the conversation's notifications read."""
    result = conn.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id)
        .values(unread_count=0, updated_at=now)
    )
    conn.execute(
        update(notifications)
        .where(
            notifications.c.conversation_id == conversation_id, notifications.c.read_at.is_(None)
        )
        .values(read_at=now)
    )
    return bool(result.rowcount)


def list_conversations_sync(
    conn: SyncConnection,
    *,
    visible_chat_ids: Sequence[str] | None,
    visible_user_id: str | None,
    channel_id: str | None,
    unread_only: bool,
    before: tuple[float, str] | None,
    limit: int,
    channel_ids: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Newest activity first, with the contact's name and phone and the lead's status.

    ``before`` is the (last_message_at, id) of the previous page's last row. With
    ``visible_chat_ids``, only those chats and the conversations assigned to
    ``visible_user_id``.
    """
    at = func.coalesce(conversations.c.last_message_at, conversations.c.created_at)
    stmt = (
        select(
            conversations,
            contacts.c.name.label("contact_name"),
            contacts.c.phone.label("contact_phone"),
            contacts.c.opted_out_at.label("contact_opted_out_at"),
            leads.c.status.label("lead_status"),
            at.label("sort_at"),
        )
        .outerjoin(contacts, contacts.c.id == conversations.c.contact_id)
        .outerjoin(leads, leads.c.id == conversations.c.lead_id)
        .order_by(at.desc(), conversations.c.id.desc())
        .limit(limit)
    )
    if visible_chat_ids is not None:
        stmt = stmt.where(
            or_(
                conversations.c.chat_id.in_(list(visible_chat_ids)),
                conversations.c.assigned_user_id == visible_user_id,
            )
        )
    if channel_id is not None:
        stmt = stmt.where(conversations.c.channel_id == channel_id)
    if channel_ids is not None:
        stmt = stmt.where(conversations.c.channel_id.in_(sorted(channel_ids)))
    if unread_only:
        stmt = stmt.where(conversations.c.unread_count > 0)
    if before is not None:
        before_at, before_id = before
        stmt = stmt.where(
            or_(at < before_at, and_(at == before_at, conversations.c.id < before_id))
        )
    return [dict(r._mapping) for r in conn.execute(stmt)]


# -- notifications -------------------------------------------------------------------------


def insert_notification_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(notifications.insert(), row)


def list_notifications_sync(
    conn: SyncConnection, conversation_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    stmt = (
        select(notifications)
        .where(notifications.c.conversation_id == conversation_id)
        .order_by(notifications.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads notifications: a user, and whether they see every chat (admins and
    viewers) or only the chats assigned to their employee groups and the conversations
    assigned to them (agents), the rule ``list_conversations_sync`` applies."""

    user_id: str
    every_chat: bool
    # A key limited to channels: only conversations on these (None: every channel).
    channel_ids: frozenset[str] | None = None


def conversations_seen_by(reader: Reader) -> ColumnElement[bool]:
    """The conversations ``reader`` may see: for agents those of chats assigned to them
    and those assigned to them; for keys limited to channels only on those channels."""
    seen: ColumnElement[bool] = (
        true()
        if reader.every_chat
        else or_(
            conversations.c.chat_id.in_(assigned_chats(reader.user_id)),
            conversations.c.assigned_user_id == reader.user_id,
        )
    )
    if reader.channel_ids is not None:
        seen = and_(seen, conversations.c.channel_id.in_(sorted(reader.channel_ids)))
    return seen


def _notifications_seen_by(reader: Reader) -> ColumnElement[bool]:
    """Notifications for ``reader``: addressed to them or to everyone (``user_id`` None),
    of a conversation they may see. One without a conversation has no chat to check: it is
    shown to whom it is addressed, and to everyone who sees every chat.

    A semi-join (``conversation_id IN (...)``) rather than a join, so the same condition
    serves SELECT, COUNT and UPDATE on both backends. "To them or to everyone" is one
    COALESCE, not ``user_id IS NULL OR user_id = :me``: SQLite answers that OR from
    ``ix_notifications_user`` twice and sorts every match before the LIMIT (a page of 50
    among 50,000 notifications: 36 ms), where walking the ids backwards stops at the
    page's end (1.7 ms).
    """
    addressed = func.coalesce(notifications.c.user_id, reader.user_id) == reader.user_id
    if reader.every_chat and reader.channel_ids is None:
        return addressed
    seen = select(conversations.c.id).where(conversations_seen_by(reader))
    return and_(
        addressed,
        or_(
            notifications.c.conversation_id.in_(seen),
            and_(
                notifications.c.conversation_id.is_(None),
                notifications.c.user_id == reader.user_id,
            ),
        ),
    )


def list_visible_notifications_sync(
    conn: SyncConnection,
    reader: Reader,
    *,
    unread_only: bool,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The notifications ``reader`` may see, newest first; ``before`` is the id of the
    previous page's last row. Unread ones only come from ``ix_notifications_unread``."""
    stmt = (
        select(notifications)
        .where(_notifications_seen_by(reader))
        .order_by(notifications.c.id.desc())
        .limit(limit)
    )
    if unread_only:
        stmt = stmt.where(notifications.c.read_at.is_(None))
    if before is not None:
        stmt = stmt.where(notifications.c.id < before)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_unread_notifications_sync(conn: SyncConnection, reader: Reader) -> int:
    """How many of the notifications ``reader`` may see are unread."""
    stmt = (
        select(func.count())
        .select_from(notifications)
        .where(notifications.c.read_at.is_(None), _notifications_seen_by(reader))
    )
    return int(conn.execute(stmt).scalar_one())


def get_visible_notification_sync(
    conn: SyncConnection, reader: Reader, notification_id: int
) -> dict[str, Any] | None:
    """The notification, or None when there is none or ``reader`` may not see it."""
    stmt = select(notifications).where(
        notifications.c.id == notification_id, _notifications_seen_by(reader)
    )
    row = conn.execute(stmt).first()
    return None if row is None else dict(row._mapping)


def mark_notification_read_sync(
    conn: SyncConnection, notification_id: int, now: float
) -> dict[str, Any] | None:
    """Read at ``now`` unless read already (the first read stays); the row after."""
    conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.read_at.is_(None))
        .values(read_at=now)
    )
    row = conn.execute(select(notifications).where(notifications.c.id == notification_id)).first()
    return None if row is None else dict(row._mapping)


def is_conversation_seen_by_sync(
    conn: SyncConnection, reader: Reader, conversation_id: str
) -> bool:
    """Whether the conversation exists and ``reader`` may see it."""
    stmt = select(conversations.c.id).where(conversations.c.id == conversation_id)
    if not reader.every_chat or reader.channel_ids is not None:
        stmt = stmt.where(conversations_seen_by(reader))
    return conn.execute(stmt).first() is not None


def mark_notifications_read_sync(
    conn: SyncConnection, reader: Reader, *, conversation_id: str | None, now: float
) -> int:
    """Every unread notification ``reader`` may see (of one conversation, when given)
    read at ``now``; how many were unread."""
    stmt = (
        update(notifications)
        .where(notifications.c.read_at.is_(None), _notifications_seen_by(reader))
        .values(read_at=now)
    )
    if conversation_id is not None:
        stmt = stmt.where(notifications.c.conversation_id == conversation_id)
    return int(conn.execute(stmt).rowcount)


# The async faces: each runs its whole body in one hop.
get_conversation = in_one_hop(get_conversation_sync)
get_conversation_by_chat = in_one_hop(get_conversation_by_chat_sync)
list_conversations = in_one_hop(list_conversations_sync)
list_chat_messages = in_one_hop(list_chat_messages_sync)
get_contact = in_one_hop(get_contact_sync)
get_contact_by_phone = in_one_hop(get_contact_by_phone_sync)
get_lead = in_one_hop(get_lead_sync)
mark_conversation_read = in_one_hop(mark_conversation_read_sync)
list_notifications = in_one_hop(list_notifications_sync)


def merge_lid_chat_sync(
    conn: SyncConnection, *, lid: str, phone: str, contact_id: str | None, now: float
) -> int:
    """Move what was stored under a sender known only by its linked id (the person chat
    ``lid``, ``...@lid``) to its phone's chat, once the phone is learned: messages, their
    search rows, conversations (merged into the phone's conversation on the same channel
    when there is one: unread counts add up, notifications follow), the chat row, and
    group messages' ``sender_phone``. Returns how many messages moved."""
    person_chat = phone.removeprefix("+") + PERSON_SUFFIX
    conn.execute(update(messages).where(messages.c.sender_phone == lid).values(sender_phone=phone))
    moved = conn.execute(
        update(messages)
        .where(messages.c.chat_id == lid)
        .values(
            chat_id=person_chat,
            ordering_key=func.replace(messages.c.ordering_key, lid, person_chat),
        )
    ).rowcount
    conn.execute(
        update(message_search).where(message_search.c.chat_id == lid).values(chat_id=person_chat)
    )
    for lid_conversation in conn.execute(
        select(conversations).where(conversations.c.chat_id == lid)
    ).all():
        target = conn.execute(
            select(conversations).where(
                conversations.c.channel_id == lid_conversation.channel_id,
                conversations.c.chat_id == person_chat,
            )
        ).first()
        if target is None:
            conn.execute(
                update(conversations)
                .where(conversations.c.id == lid_conversation.id)
                .values(chat_id=person_chat, contact_id=contact_id, updated_at=now)
            )
            continue
        newer = (lid_conversation.last_message_at or 0) > (target.last_message_at or 0)
        merged: dict[str, Any] = {
            "unread_count": target.unread_count + lid_conversation.unread_count,
            "updated_at": now,
        }
        if newer:
            for column in (
                "last_message_id",
                "last_message_at",
                "last_message_preview",
                "last_message_direction",
            ):
                merged[column] = getattr(lid_conversation, column)
        conn.execute(update(conversations).where(conversations.c.id == target.id).values(merged))
        conn.execute(
            update(notifications)
            .where(notifications.c.conversation_id == lid_conversation.id)
            .values(conversation_id=target.id)
        )
        conn.execute(delete(conversations).where(conversations.c.id == lid_conversation.id))
    if conn.execute(select(chats.c.chat_id).where(chats.c.chat_id == person_chat)).first():
        conn.execute(delete(chats).where(chats.c.chat_id == lid))
    else:
        conn.execute(
            update(chats)
            .where(chats.c.chat_id == lid)
            .values(chat_id=person_chat, name_source="profile")
        )
    return int(moved or 0)
