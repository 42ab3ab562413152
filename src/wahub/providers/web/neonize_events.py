"""neonize's events, as protobuf, turned into the web session port's events.

Pure functions, no I/O and no client: each takes the protobuf message neonize's event
dispatcher hands a handler (``neonize.events``: ``MessageEv``, ``ReceiptEv``...) and
returns port events, so the whole mapping is tested offline with real protobufs. The
engine (``neonize_engine``) only routes each event type to its function here.

neonize's protobufs are untyped for mypy (the package ships no ``py.typed``), hence
``Any`` for them; what comes out is fully typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from google.protobuf.json_format import MessageToDict

from wahub.domain.status import Status
from wahub.providers.base import GroupInfo, GroupParticipant, InboundMessage, StatusUpdate
from wahub.providers.web.session import (
    ConnectFailed,
    Disconnected,
    GroupChanged,
    IdentityLinked,
    LoggedOut,
    MessageReceived,
    ReceiptReceived,
    SessionEvent,
    TemporaryBan,
)
from wahub.providers.webhook_fields import group_or_none, person

PROVIDER: Final = "web"
LID_SERVER: Final = "lid"
PERSON_SERVER: Final = "s.whatsapp.net"
GROUP_SERVER: Final = "g.us"

# Receipt types (neonize's Receipt.ReceiptType) that say something about a message we
# sent. The *_SELF types are our own other devices reading messages sent to us; SENDER,
# RETRY, PEER_MSG, SERVER_ERROR, INACTIVE and HISTORY_SYNC are protocol chatter.
_RECEIPT_STATUS: Final[dict[int, Status]] = {
    1: Status.DELIVERED,  # DELIVERED
    4: Status.READ,  # READ
    6: Status.READ,  # PLAYED: a voice note listened to was seen
}

# ConnectFailureReason (LoggedOut.Reason) in words.
_FAILURE_REASONS: Final[dict[int, str]] = {
    1: "generic failure",
    2: "logged out from the phone",
    3: "temporarily banned",
    4: "the main device is gone (WhatsApp was removed from the phone)",
    5: "logged out for an unknown reason",
    6: "this client version is outdated",
    7: "bad user agent",
    8: "WhatsApp internal server error",
    9: "experimental",
    10: "WhatsApp service unavailable",
}

# TemporaryBan.TempBanReason in words.
_BAN_REASONS: Final[dict[int, str]] = {
    1: "sent to too many people",
    2: "blocked by too many users",
    3: "created too many groups",
    4: "sent the same message too many times",
    5: "broadcast list",
}

# Message fields that wrap the real message (disappearing, view-once, captioned document,
# edits); unwrapped before looking at the content.
_WRAPPERS: Final = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)

# Media fields of a Message and our type name for each.
_MEDIA: Final = (
    ("imageMessage", "image"),
    ("videoMessage", "video"),
    ("ptvMessage", "video"),
    ("documentMessage", "document"),
    ("stickerMessage", "sticker"),
)


def unix_seconds(raw: int) -> int:
    """neonize's timestamps as unix seconds; a millisecond value (past the year 5000 if
    read as seconds) is scaled, so either unit from the Go side lands right."""
    value = int(raw)
    return value // 1000 if value > 100_000_000_000 else value


# -- ids -----------------------------------------------------------------------------------


def jid_text(jid: Any) -> str | None:
    """``user@server`` of a JID without its device part, None for an empty one."""
    if jid is None or not jid.Server:
        return None
    return f"{jid.User}@{jid.Server}" if jid.User else None


def jid_phone(jid: Any) -> str | None:
    """The E.164 phone of a person's JID (``...@s.whatsapp.net``), None otherwise."""
    if jid is None or jid.Server != PERSON_SERVER or not jid.User:
        return None
    found = person(jid.User)
    return found[1] if found else None


def jid_lid(jid: Any) -> str | None:
    """``<id>@lid`` of a linked-id JID, None otherwise."""
    if jid is None or jid.Server != LID_SERVER or not jid.User:
        return None
    return f"{jid.User}@{LID_SERVER}"


def identity_pair(first: Any, second: Any) -> IdentityLinked | None:
    """The LID/phone link two JIDs of one person make (a sender and its alternate id),
    in either order; None unless one is a LID and the other a phone."""
    for lid_jid, phone_jid in ((first, second), (second, first)):
        lid, phone = jid_lid(lid_jid), jid_phone(phone_jid)
        if lid and phone:
            return IdentityLinked(lid=lid, phone=phone)
    return None


def _chat_id(jid: Any) -> str | None:
    """Our canonical chat id for a chat JID: a group, or a person by phone. A chat known
    only by a LID keeps the LID as its id (merged once the phone is learned)."""
    text = jid_text(jid)
    if text is None:
        return None
    if jid.Server == GROUP_SERVER:
        return group_or_none(text)
    if jid.Server == PERSON_SERVER:
        found = person(jid.User)
        return found[0] if found else None
    return jid_lid(jid)


def _participant(jid: Any, rank: str = "member") -> GroupParticipant | None:
    phone, lid = jid_phone(jid), jid_lid(jid)
    if phone is None and lid is None:
        return None
    return GroupParticipant(phone=phone, lid=lid, rank=rank)


def _participants(jids: Iterable[Any]) -> tuple[GroupParticipant, ...]:
    return tuple(p for p in (_participant(jid) for jid in jids) if p is not None)


# -- messages ------------------------------------------------------------------------------


def _unwrap(message: Any) -> Any:
    for _ in range(4):  # wrappers nest at most a few deep; a loop bound, not a guess
        for field in _WRAPPERS:
            if message.HasField(field) and getattr(message, field).HasField("message"):
                message = getattr(message, field).message
                break
        else:
            return message
    return message


def _kind_and_text(message: Any) -> tuple[str, str | None, Any]:
    """(type, human text, the part carrying contextInfo) of an unwrapped Message."""
    if message.HasField("conversation"):
        return "text", message.conversation, None
    if message.HasField("extendedTextMessage"):
        part = message.extendedTextMessage
        return "text", part.text, part
    if message.HasField("reactionMessage"):
        return "reaction", message.reactionMessage.text, None
    if message.HasField("audioMessage"):
        part = message.audioMessage
        return ("voice" if part.PTT else "audio"), None, part
    for field, kind in _MEDIA:
        if message.HasField(field):
            part = getattr(message, field)
            caption = part.caption if part.HasField("caption") else None
            if caption is None and kind == "document" and part.HasField("fileName"):
                caption = part.fileName
            return kind, caption, part
    if message.HasField("locationMessage"):
        part = message.locationMessage
        return "location", part.name or part.address or None, part
    if message.HasField("contactMessage"):
        return "contacts", message.contactMessage.displayName or None, message.contactMessage
    if message.HasField("contactsArrayMessage"):
        part = message.contactsArrayMessage
        return "contacts", part.displayName or None, part
    if message.HasField("pollCreationMessage"):
        return "poll", message.pollCreationMessage.name or None, None
    if message.HasField("protocolMessage"):
        return "system", None, None
    return "unsupported", None, None


def map_message(event: Any) -> list[SessionEvent]:
    """A ``MessageEv`` as ``MessageReceived``, preceded by ``IdentityLinked`` when the
    sender's alternate id pairs a LID with a phone. Empty for what is no chat message
    (status broadcasts, newsletters, a chat id we cannot read)."""
    info = event.Info
    source = info.MessageSource
    chat_id = _chat_id(source.Chat)
    if chat_id is None or not info.ID:
        return []
    sender, sender_alt = source.Sender, source.SenderAlt
    link = identity_pair(sender, sender_alt)
    sender_phone = jid_phone(sender) or jid_phone(sender_alt)
    sender_lid = jid_lid(sender) or jid_lid(sender_alt)
    if chat_id.endswith("@lid") and sender_phone and not source.IsGroup:
        # A person's chat addressed by LID: the phone we just learned names the chat,
        # so the conversation lands where our sends to that number land.
        found = person(sender_phone)
        chat_id = found[0] if found else chat_id
    content = _unwrap(event.Message)
    kind, text, part = _kind_and_text(content)
    reply_to: str | None = None
    if part is not None and part.HasField("contextInfo") and part.contextInfo.stanzaID:
        reply_to = part.contextInfo.stanzaID
    reaction_to = content.reactionMessage.key.ID if kind == "reaction" else None
    inbound = InboundMessage(
        provider=PROVIDER,
        provider_message_id=info.ID,
        chat_id=chat_id,
        timestamp=unix_seconds(info.Timestamp),
        type=kind,
        content=MessageToDict(content),
        sender_phone=sender_phone,
        sender_name=info.Pushname or None,
        text=text or None,
        reply_to_provider_id=reply_to,
        reaction_to_provider_id=reaction_to or None,
        from_me=bool(source.IsFromMe),
    )
    received = MessageReceived(message=inbound, sender_lid=sender_lid)
    return [link, received] if link else [received]


# -- receipts ------------------------------------------------------------------------------


def map_receipt(event: Any) -> list[SessionEvent]:
    """A ``ReceiptEv`` naming one or more of our messages as one ``ReceiptReceived``
    with a status per id. Empty for receipts of our own devices and protocol receipts."""
    status = _RECEIPT_STATUS.get(int(event.Type))
    source = event.MessageSource
    if status is None or source.IsFromMe:
        return []
    recipient = jid_phone(source.Sender) or jid_phone(source.SenderAlt) or jid_text(source.Chat)
    statuses = tuple(
        StatusUpdate(
            provider_message_id=message_id,
            status=status,
            timestamp=unix_seconds(event.Timestamp),
            recipient=recipient,
        )
        for message_id in dict.fromkeys(event.MessageIDs)
        if message_id
    )
    return [ReceiptReceived(statuses=statuses)] if statuses else []


# -- groups --------------------------------------------------------------------------------


def map_group_change(event: Any) -> list[SessionEvent]:
    """A ``GroupInfoEv`` (rename, members joined or left) as ``GroupChanged``; empty
    when nothing we keep changed (topic, settings, invite link)."""
    chat_id = _chat_id(event.JID)
    if chat_id is None:
        return []
    name = event.Name.Name if event.HasField("Name") and event.Name.Name else None
    joined, left = _participants(event.Join), _participants(event.Leave)
    if name is None and not joined and not left:
        return []
    return [
        GroupChanged(
            chat_id=chat_id,
            timestamp=unix_seconds(event.Timestamp),
            name=name,
            joined=joined,
            left=left,
        )
    ]


def group_info(group: Any) -> GroupInfo | None:
    """One of neonize's ``GroupInfo`` (``get_joined_groups``) as ours, members with
    phone and LID both when WhatsApp gave both; None for an unreadable group id."""
    chat_id = _chat_id(group.JID)
    if chat_id is None:
        return None
    members: list[GroupParticipant] = []
    for member in group.Participants:
        rank = "creator" if member.IsSuperAdmin else "admin" if member.IsAdmin else "member"
        phone = jid_phone(member.PhoneNumber) or jid_phone(member.JID)
        lid = jid_lid(member.LID) or jid_lid(member.JID)
        if phone or lid:
            members.append(GroupParticipant(phone=phone, lid=lid, rank=rank))
    name = group.GroupName.Name if group.HasField("GroupName") else None
    return GroupInfo(chat_id=chat_id, name=name or None, participants=tuple(members))


def group_identities(group: Any) -> list[IdentityLinked]:
    """The LID/phone links a group's member list reveals."""
    links = (identity_pair(m.LID, m.PhoneNumber) for m in group.Participants)
    return [link for link in links if link is not None]


def map_joined_group(event: Any) -> list[SessionEvent]:
    """A ``JoinedGroupEv`` (we were added to a group, or created one) as ``GroupChanged``
    naming every member, plus the LID/phone links its member list shows."""
    group = group_info(event.GroupInfo)
    if group is None:
        return []
    # The event carries no time of its own; the group's creation is the best we have
    # (0 when whatsmeow gave none), and a join is never older than that.
    created = unix_seconds(int(event.GroupInfo.GroupCreated))
    changed = GroupChanged(
        chat_id=group.chat_id, timestamp=created, name=group.name, joined=group.participants
    )
    return [*group_identities(event.GroupInfo), changed]


# -- connection ----------------------------------------------------------------------------


def map_logged_out(event: Any) -> list[SessionEvent]:
    reason = _FAILURE_REASONS.get(int(event.Reason), f"reason {int(event.Reason)}")
    return [LoggedOut(reason=reason)]


def map_temporary_ban(event: Any) -> list[SessionEvent]:
    reason = _BAN_REASONS.get(int(event.Code), f"reason {int(event.Code)}")
    expires = float(event.Expire) if event.HasField("Expire") and event.Expire > 0 else None
    return [TemporaryBan(reason=reason, expires_in_s=expires)]


def map_connect_failure(event: Any) -> list[SessionEvent]:
    reason = _FAILURE_REASONS.get(int(event.Reason), f"reason {int(event.Reason)}")
    detail = f": {event.Message}" if event.Message else ""
    return [ConnectFailed(reason=f"WhatsApp refused the connection ({reason}){detail}")]


def map_pair_status(event: Any) -> list[SessionEvent]:
    """A failed pairing fails the session; a successful one says nothing yet (the
    ``Connected`` that follows does)."""
    if event.Status == 1:  # PairStatus.ERROR
        return [ConnectFailed(reason=f"pairing failed: {event.Error or 'no reason given'}")]
    return []


def map_disconnected(_event: Any) -> list[SessionEvent]:
    return [Disconnected(reason="the connection to WhatsApp closed; reconnecting")]
