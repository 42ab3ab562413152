"""The neonize engine's reading of whatsmeow's events, offline: real neonize protobufs,
serialized, through neonize's own dispatcher into a session, out as port events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from neonize.events import (
    DisconnectedEv,
    GroupInfoEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import GroupName, MessageInfo, MessageSource
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    ImageMessage,
    Message,
    ReactionMessage,
)

from neonize_feed import Feed, jid
from wahub.domain.status import Status
from wahub.providers.base import GroupParticipant, StatusUpdate
from wahub.providers.web.session import (
    ConnectFailed,
    Disconnected,
    GroupChanged,
    IdentityLinked,
    KeepAliveMissed,
    KeepAliveRestored,
    LoggedOut,
    MessageReceived,
    ReceiptReceived,
    StreamReplaced,
    TemporaryBan,
)

ALICE = "4915110000001"
BOB = "4915110000002"
BOB_LID = "76699677012110"
GROUP = "120363025246125486"


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    fed = Feed(tmp_path)
    try:
        yield fed
    finally:
        await fed.close()


def incoming(
    message: Message,
    *,
    chat: str = ALICE,
    chat_server: str = "s.whatsapp.net",
    sender: str = ALICE,
    sender_server: str = "s.whatsapp.net",
    sender_alt: tuple[str, str] | None = None,
    message_id: str = "3EB0A1",
) -> MessageEv:
    source = MessageSource(
        Chat=jid(chat, chat_server),
        Sender=jid(sender, sender_server),
        IsFromMe=False,
        IsGroup=chat_server == "g.us",
    )
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(jid(*sender_alt))
    info = MessageInfo(
        MessageSource=source, ID=message_id, Pushname="Alice", Timestamp=1_765_000_000
    )
    return MessageEv(Info=info, Message=message)


async def received(feed: Feed, event: MessageEv) -> MessageReceived:
    [out] = await feed.collect(event, 1)
    assert isinstance(out, MessageReceived), out
    return out


async def test_a_text_message_arrives_in_the_senders_chat(feed: Feed) -> None:
    out = await received(feed, incoming(Message(conversation="hello there")))

    message = out.message
    assert (message.provider, message.provider_message_id) == ("web", "3EB0A1")
    assert message.chat_id == f"{ALICE}@s.whatsapp.net"
    assert (message.sender_phone, message.sender_name) == (f"+{ALICE}", "Alice")
    assert (message.type, message.text, message.timestamp) == ("text", "hello there", 1_765_000_000)
    assert message.content == {"conversation": "hello there"}
    assert not message.from_me


async def test_an_image_arrives_with_its_caption_and_a_document_with_its_name(feed: Feed) -> None:
    image = Message(imageMessage=ImageMessage(caption="our flyer", mimetype="image/jpeg"))
    document = Message(
        documentMessage=DocumentMessage(fileName="contract.pdf", mimetype="application/pdf")
    )
    voice = Message(audioMessage=AudioMessage(PTT=True, mimetype="audio/ogg"))

    got_image = (await received(feed, incoming(image))).message
    got_document = (await received(feed, incoming(document, message_id="3EB0A2"))).message
    got_voice = (await received(feed, incoming(voice, message_id="3EB0A3"))).message

    assert (got_image.type, got_image.text) == ("image", "our flyer")
    assert got_image.content["imageMessage"]["mimetype"] == "image/jpeg"
    assert (got_document.type, got_document.text) == ("document", "contract.pdf")
    assert (got_voice.type, got_voice.text) == ("voice", None)


async def test_a_reply_names_the_message_it_quotes(feed: Feed) -> None:
    reply = Message(
        extendedTextMessage=ExtendedTextMessage(
            text="yes, that one", contextInfo=ContextInfo(stanzaID="OUR_SENT_ID")
        )
    )

    message = (await received(feed, incoming(reply))).message

    assert (message.type, message.text) == ("text", "yes, that one")
    assert message.reply_to_provider_id == "OUR_SENT_ID"


async def test_a_reaction_names_the_message_reacted_to(feed: Feed) -> None:
    reaction = Message(
        reactionMessage=ReactionMessage(
            key=MessageKey(ID="OUR_SENT_ID", fromMe=True, remoteJID=f"{ALICE}@s.whatsapp.net"),
            text="👍",
        )
    )

    message = (await received(feed, incoming(reaction))).message

    assert (message.type, message.text) == ("reaction", "👍")
    assert message.reaction_to_provider_id == "OUR_SENT_ID"


async def test_one_receipt_naming_several_messages_gives_a_status_for_each(feed: Feed) -> None:
    receipt = ReceiptEv(
        MessageSource=MessageSource(
            Chat=jid(ALICE), Sender=jid(ALICE), IsFromMe=False, IsGroup=False
        ),
        MessageIDs=["ID_1", "ID_2", "ID_3", "ID_2"],
        Timestamp=1_765_000_100,
        Type=ReceiptEv.READ,
    )

    [out] = await feed.collect(receipt, 1)

    assert out == ReceiptReceived(
        statuses=tuple(
            StatusUpdate(
                provider_message_id=message_id,
                status=Status.READ,
                timestamp=1_765_000_100,
                recipient=f"+{ALICE}",
            )
            for message_id in ("ID_1", "ID_2", "ID_3")
        )
    )


async def test_receipts_from_our_own_devices_say_nothing_about_our_sends(feed: Feed) -> None:
    own_read = ReceiptEv(
        MessageSource=MessageSource(Chat=jid(ALICE), Sender=jid(BOB), IsFromMe=True),
        MessageIDs=["THEIR_ID"],
        Timestamp=1_765_000_100,
        Type=ReceiptEv.READ_SELF,
    )
    delivered = ReceiptEv(
        MessageSource=MessageSource(Chat=jid(ALICE), Sender=jid(ALICE), IsFromMe=False),
        MessageIDs=["OUR_ID"],
        Timestamp=1_765_000_101,
        Type=ReceiptEv.DELIVERED,
    )

    await feed.push_from_thread(own_read)
    [out] = await feed.collect(delivered, 1)

    assert isinstance(out, ReceiptReceived)
    assert [(s.provider_message_id, s.status) for s in out.statuses] == [
        ("OUR_ID", Status.DELIVERED)
    ]
    assert await feed.nothing_more()


async def test_a_group_rename_and_its_members_coming_and_going(feed: Feed) -> None:
    change = GroupInfoEv(
        JID=jid(GROUP, "g.us"),
        Timestamp=1_765_000_200,
        Name=GroupName(Name="Artists 2026"),
        Join=[jid(ALICE), jid(BOB_LID, "lid")],
        Leave=[jid(BOB)],
    )

    [out] = await feed.collect(change, 1)

    assert out == GroupChanged(
        chat_id=f"{GROUP}@g.us",
        timestamp=1_765_000_200,
        name="Artists 2026",
        joined=(
            GroupParticipant(phone=f"+{ALICE}", lid=None, rank="member"),
            GroupParticipant(phone=None, lid=f"{BOB_LID}@lid", rank="member"),
        ),
        left=(GroupParticipant(phone=f"+{BOB}", lid=None, rank="member"),),
    )


async def test_a_group_message_from_a_lid_with_its_phone_links_the_two(feed: Feed) -> None:
    event = incoming(
        Message(conversation="hi group"),
        chat=GROUP,
        chat_server="g.us",
        sender=BOB_LID,
        sender_server="lid",
        sender_alt=(BOB, "s.whatsapp.net"),
    )

    link, out = await feed.collect(event, 2)

    assert link == IdentityLinked(lid=f"{BOB_LID}@lid", phone=f"+{BOB}")
    assert isinstance(out, MessageReceived)
    assert out.message.chat_id == f"{GROUP}@g.us"
    assert out.message.sender_phone == f"+{BOB}"
    assert out.sender_lid == f"{BOB_LID}@lid"


async def test_a_sender_known_only_by_lid_is_kept_under_the_lid(feed: Feed) -> None:
    event = incoming(
        Message(conversation="who am I"),
        chat=BOB_LID,
        chat_server="lid",
        sender=BOB_LID,
        sender_server="lid",
    )

    out = await received(feed, event)

    assert out.message.chat_id == f"{BOB_LID}@lid"
    assert out.message.sender_phone is None
    assert out.sender_lid == f"{BOB_LID}@lid"
    # Unconnected, the session asks whatsmeow nothing (that call would panic in Go).
    assert await feed.nothing_more()


async def test_a_person_chat_addressed_by_lid_lands_in_the_phone_chat(feed: Feed) -> None:
    event = incoming(
        Message(conversation="hello"),
        chat=BOB_LID,
        chat_server="lid",
        sender=BOB_LID,
        sender_server="lid",
        sender_alt=(BOB, "s.whatsapp.net"),
    )

    link, out = await feed.collect(event, 2)

    assert link == IdentityLinked(lid=f"{BOB_LID}@lid", phone=f"+{BOB}")
    assert isinstance(out, MessageReceived)
    assert out.message.chat_id == f"{BOB}@s.whatsapp.net"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=1_765_000_000), KeepAliveMissed()),
        (KeepAliveRestoredEv(), KeepAliveRestored()),
        (StreamReplacedEv(), StreamReplaced()),
        (
            TemporaryBanEv(Code=TemporaryBanEv.SEND_TO_TOO_MANY_PEOPLE, Expire=3600),
            TemporaryBan(reason="sent to too many people", expires_in_s=3600.0),
        ),
        (LoggedOutEv(OnConnect=True, Reason=2), LoggedOut(reason="logged out from the phone")),
        (
            DisconnectedEv(status=True),
            Disconnected(reason="the connection to WhatsApp closed; reconnecting"),
        ),
        (
            PairStatusEv(Status=PairStatusEv.ERROR, Error="code expired"),
            ConnectFailed(reason="pairing failed: code expired"),
        ),
    ],
    ids=[
        "keepalive-timeout",
        "keepalive-restored",
        "stream-replaced",
        "ban",
        "logout",
        "disconnect",
        "pair-error",
    ],
)
async def test_connection_events_become_port_events(
    feed: Feed, event: object, expected: object
) -> None:
    [out] = await feed.collect(event, 1)

    assert out == expected
