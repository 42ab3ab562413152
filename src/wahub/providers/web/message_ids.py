"""WhatsApp message ids chosen from our own message ids, so a receipt names our message.

WhatsApp lets the sender choose a message's id (whatsmeow's ``SendRequestExtra.ID``).
An engine that can choose sends ours in WhatsApp's shape, derived from our message id
and nothing else, so that:

- a receipt naming that id is matched to our message even when the session process
  died before it recorded the send's result (``tracking_id_of`` decodes it back), and
- a resend after the grace period goes out under the same id as the first attempt.

The shape is whatsmeow's (``GenerateMessageID``: ``3EB0`` and upper-case hex). One of
our message ids (``msg_`` and 26 Crockford base32 characters: a 48-bit millisecond
time and 80 random bits, see ``wahub.domain.ids``) becomes ``3EB0`` and those 128 bits
as 32 hex digits: 36 characters, as long as the ids phones generate plus the prefix.
Any other tracking id (only tests send those) gets whatsmeow's exact length, 22
characters, from a digest: still deterministic, but it decodes to nothing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from wahub.domain.ids import ALPHABET, b32, is_message_id

PREFIX: Final = "3EB0"
_BODY_CHARS: Final = 26
_PAYLOAD_BITS: Final = 128
_DECODABLE: Final = re.compile(r"3EB0[0-9A-F]{32}")
_DIGEST_BYTES: Final = 9  # whatsmeow's GenerateMessageID: 3EB0 + 9 bytes as hex


def _payload(message_id: str) -> int | None:
    """The 128 bits of one of our message ids, or None for anything that is not one."""
    if not is_message_id(message_id):
        return None
    body = message_id.removeprefix("msg_")
    if len(body) != _BODY_CHARS:
        return None
    value = 0
    for char in body:
        digit = ALPHABET.find(char)
        if digit < 0:
            return None
        value = (value << 5) | digit
    # 26 characters hold 130 bits; the top two are the time's and stay zero until the
    # year 10889. An id using them would not survive the round trip: digest it instead.
    if value >> _PAYLOAD_BITS:
        return None
    return value


def provider_id_for(tracking_id: str) -> str:
    """The WhatsApp message id to send ``tracking_id`` (our message id) under: always
    the same for the same ``tracking_id``, and ``tracking_id_of`` gives it back."""
    payload = _payload(tracking_id)
    if payload is not None:
        return f"{PREFIX}{payload:032X}"
    digest = hashlib.sha256(tracking_id.encode()).digest()[:_DIGEST_BYTES]
    return PREFIX + digest.hex().upper()


def tracking_id_of(provider_message_id: str) -> str | None:
    """Our message id that ``provider_message_id`` was derived from by
    ``provider_id_for``, or None for an id WhatsApp or another client chose."""
    if not _DECODABLE.fullmatch(provider_message_id):
        return None
    return "msg_" + b32(int(provider_message_id[len(PREFIX) :], 16), _BODY_CHARS)
