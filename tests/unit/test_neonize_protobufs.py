"""The neonize engine's pure protobuf work: what it sends (built here, never by neonize's
URL-fetching builders) and how it reads the group lists whatsmeow returns."""

from __future__ import annotations

import pytest
from neonize.events import JoinedGroupEv
from neonize.proto.Neonize_pb2 import GroupInfo as NeonizeGroup
from neonize.proto.Neonize_pb2 import GroupName, GroupParticipant, UploadResponse

from neonize_feed import jid
from wahub.domain.errors import PermanentProviderError
from wahub.providers.base import GroupInfo
from wahub.providers.base import GroupParticipant as Member
from wahub.providers.web.neonize_events import group_info, map_joined_group
from wahub.providers.web.neonize_outbound import build_jid, media_message, text_message
from wahub.providers.web.session import GroupChanged, IdentityLinked

UPLOAD = UploadResponse(
    url="https://mmg.whatsapp.net/x",
    DirectPath="/v/x",
    MediaKey=b"k" * 32,
    FileEncSHA256=b"e" * 32,
    FileSHA256=b"s" * 32,
    FileLength=1234,
)


def test_a_reply_quotes_the_message_id_and_its_author() -> None:
    message = text_message("yes", reply_to="3EB0A1", quoted_sender="491511@s.whatsapp.net")

    context = message.extendedTextMessage.contextInfo
    assert message.extendedTextMessage.text == "yes"
    assert (context.stanzaID, context.participant) == ("3EB0A1", "491511@s.whatsapp.net")


def test_plain_text_is_a_conversation_message() -> None:
    assert text_message("hello").conversation == "hello"


def test_an_image_points_at_its_upload_with_caption_and_type() -> None:
    message = media_message("image", UPLOAD, mimetype="image/png", caption="flyer")

    image = message.imageMessage
    assert (image.URL, image.directPath, image.fileLength) == (UPLOAD.url, "/v/x", 1234)
    assert (image.mediaKey, image.fileSHA256) == (b"k" * 32, b"s" * 32)
    assert (image.mimetype, image.caption) == ("image/png", "flyer")


def test_a_document_keeps_its_file_name_and_a_default_type() -> None:
    message = media_message("document", UPLOAD, mimetype=None, filename="contract.pdf")

    document = message.documentMessage
    assert (document.fileName, document.mimetype) == ("contract.pdf", "application/octet-stream")


def test_a_kind_whatsapp_has_no_message_for_is_refused() -> None:
    with pytest.raises(PermanentProviderError):
        media_message("sticker", UPLOAD, mimetype=None)


def test_addresses_become_complete_jids() -> None:
    person = build_jid("4915110000001:7@s.whatsapp.net")
    group = build_jid("120363025246125486@g.us")

    assert (person.User, person.Device, person.Server) == ("4915110000001", 7, "s.whatsapp.net")
    assert (group.User, group.Server) == ("120363025246125486", "g.us")
    # The JID protobuf has required fields: a half-built one fails inside neonize.
    assert group.IsInitialized()


def artists_group() -> NeonizeGroup:
    return NeonizeGroup(
        JID=jid("120363025246125486", "g.us"),
        GroupName=GroupName(Name="Artists"),
        Participants=[
            GroupParticipant(
                JID=jid("76699677012110", "lid"),
                LID=jid("76699677012110", "lid"),
                PhoneNumber=jid("4915110000001"),
                IsSuperAdmin=True,
            ),
            GroupParticipant(JID=jid("4915110000002"), IsAdmin=True),
            GroupParticipant(JID=jid("76699677012111", "lid")),
        ],
    )


def test_a_group_lists_members_by_phone_and_lid_with_their_rank() -> None:
    assert group_info(artists_group()) == GroupInfo(
        chat_id="120363025246125486@g.us",
        name="Artists",
        participants=(
            Member(phone="+4915110000001", lid="76699677012110@lid", rank="creator"),
            Member(phone="+4915110000002", lid=None, rank="admin"),
            Member(phone=None, lid="76699677012111@lid", rank="member"),
        ),
    )


def test_joining_a_group_names_every_member_and_links_lids_to_phones() -> None:
    events = map_joined_group(JoinedGroupEv(GroupInfo=artists_group()))

    link, changed = events
    assert link == IdentityLinked(lid="76699677012110@lid", phone="+4915110000001")
    assert isinstance(changed, GroupChanged)
    assert (changed.chat_id, changed.name, len(changed.joined)) == (
        "120363025246125486@g.us",
        "Artists",
        3,
    )
