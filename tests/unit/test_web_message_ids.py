"""Web sends go under WhatsApp message ids derived from our message ids, so a receipt
names our message and a resend reuses the id (``providers/web/message_ids.py``)."""

from __future__ import annotations

import re

from wahub.domain.ids import new_id
from wahub.providers.web.message_ids import provider_id_for, tracking_id_of

# whatsmeow's GenerateMessageID shape: 3EB0 and upper-case hex.
WHATSAPP_SHAPE = re.compile(r"3EB0[0-9A-F]+")


def test_our_message_ids_become_whatsapp_shaped_ids_of_36_characters() -> None:
    for _ in range(200):
        chosen = provider_id_for(new_id("msg"))
        assert WHATSAPP_SHAPE.fullmatch(chosen), chosen
        assert len(chosen) == 36


def test_the_same_message_id_always_gives_the_same_whatsapp_id() -> None:
    message_id = new_id("msg")
    assert provider_id_for(message_id) == provider_id_for(message_id)
    assert provider_id_for(message_id) != provider_id_for(new_id("msg"))


def test_a_whatsapp_id_decodes_back_to_our_message_id() -> None:
    for message_id in [new_id("msg") for _ in range(200)] + [
        "msg_00000000000000000000000000",
        "msg_7zzzzzzzzzzzzzzzzzzzzzzzzz",
    ]:
        assert tracking_id_of(provider_id_for(message_id)) == message_id


def test_other_tracking_ids_get_whatsmeows_own_length_and_decode_to_nothing() -> None:
    for tracking_id in ("t1", "", "msg_short", "msg_8zzzzzzzzzzzzzzzzzzzzzzzzz", "msg_" + "u" * 26):
        chosen = provider_id_for(tracking_id)
        assert WHATSAPP_SHAPE.fullmatch(chosen), chosen
        assert len(chosen) == 22
        assert chosen == provider_id_for(tracking_id)
        assert tracking_id_of(chosen) is None


def test_ids_whatsapp_or_other_clients_chose_decode_to_nothing() -> None:
    for foreign in ("3EB0C767D26A8A1B9F3A", "3A1F2B3C4D5E6F708192", "BAE5F3C1D2E4A6B8", ""):
        assert tracking_id_of(foreign) is None
    assert tracking_id_of("3eb0" + "0" * 32) is None  # lower case is not our shape
