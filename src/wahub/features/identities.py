"""What WhatsApp Web sessions teach about groups and people: group changes fold into the
group directory, and linked ids (LIDs) are tied to phones.

A sender WhatsApp shows only by its LID is stored under the LID (its person chat is
``<digits>@lid``, a group message's ``sender_phone`` is the LID); once the phone is learned
(``IdentityLink``: a message naming both, a group member listed with both, or the
session telling us), everything stored under the LID moves to the phone, and later
messages from the LID go straight to the phone's chat.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.domain.phones import PERSON_SUFFIX, is_lid
from wahub.providers.base import (
    GroupChange,
    GroupInfo,
    GroupParticipant,
    IdentityLink,
    InboundMessage,
)
from wahub.store import conversations as conversation_q
from wahub.store import groups as group_q
from wahub.store.schema import lid_links


def _member(p: GroupParticipant) -> group_q.Member:
    return group_q.Member(phone=p.phone, lid=p.lid, rank=p.rank)


def apply_group_change_sync(
    conn: SyncConnection, change: GroupChange, channel: dict[str, Any], now: float
) -> None:
    """Fold a group change reported by ``channel``'s session into the directory, then
    merge whatever was stored under the LIDs of members listed with their phones."""
    group_q.apply_group_change_sync(
        conn,
        channel_id=channel["id"],
        chat_id=change.chat_id,
        name=change.name,
        joined=[_member(p) for p in change.joined],
        left=[_member(p) for p in change.left],
        now=now,
    )
    for member in change.joined:
        if member.lid and member.phone:
            link_identity_sync(conn, IdentityLink(member.lid, member.phone), now)


def link_identity_sync(conn: SyncConnection, link: IdentityLink, now: float) -> None:
    """Remember that ``link.lid`` is ``link.phone`` and move everything stored under the
    LID (group memberships, the person chat, conversations, senders) to the phone."""
    group_q.link_lid_members_sync(conn, lid=link.lid, phone=link.phone, now=now)
    contact = conversation_q.upsert_contact_sync(
        conn,
        phone=link.phone,
        wa_id=link.phone.removeprefix("+"),
        profile_name=None,
        now=now,
    )
    conversation_q.merge_lid_chat_sync(
        conn, lid=link.lid, phone=link.phone, contact_id=contact["id"], now=now
    )


def known_phone_sync(conn: SyncConnection, message: InboundMessage) -> InboundMessage:
    """``message`` with its LID-only sender replaced by the phone when the LID is known:
    the person chat becomes the phone's, a group sender gets its phone. Unknown LIDs are
    kept (stored under the LID until the phone is learned)."""
    lid = message.chat_id if is_lid(message.chat_id) else None
    sender_lid = message.content.get("sender_lid") if message.sender_phone is None else None
    wanted = lid or (sender_lid if isinstance(sender_lid, str) else None)
    if wanted is None:
        return message
    phone = conn.execute(select(lid_links.c.phone).where(lid_links.c.lid == wanted)).scalar()
    if phone is None:
        if lid is None and isinstance(sender_lid, str):
            # A group message from an unknown LID: its sender is stored as the LID.
            return dataclasses.replace(message, sender_phone=sender_lid)
        return message
    if lid is not None:
        return dataclasses.replace(
            message, chat_id=phone.removeprefix("+") + PERSON_SUFFIX, sender_phone=phone
        )
    return dataclasses.replace(message, sender_phone=phone)


def store_session_groups_sync(
    conn: SyncConnection, channel_id: str, groups: tuple[GroupInfo, ...], now: float
) -> int:
    """Replace the directory's view of every group a session listed (members with phones
    and LIDs, whether we are still in it), teach the lookup each member's LID/phone pair
    and merge what was stored under those LIDs. Returns how many groups were stored."""
    for group in groups:
        group_q.store_fetched_group_sync(
            conn,
            group_q.FetchedGroup(
                chat_id=group.chat_id,
                channel_id=channel_id,
                name=group.name,
                readonly=not group.we_are_member,
                members=[_member(p) for p in group.participants],
            ),
            now,
        )
        for member in group.participants:
            if member.lid and member.phone:
                link_identity_sync(conn, IdentityLink(member.lid, member.phone), now)
    return len(groups)
