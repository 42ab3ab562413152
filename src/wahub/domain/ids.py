"""Identifiers: time-ordered, URL-safe, prefixed by kind (``msg_...``)."""

from __future__ import annotations

import os
import time

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

# The largest integer a database column holds (BIGINT on PostgreSQL, INTEGER on SQLite):
# row ids, cursors and offsets a client sends are bounded by it, because a larger number
# cannot even be bound to a statement (the driver raises OverflowError).
MAX_SQL_INT = 2**63 - 1


def b32(value: int, length: int) -> str:
    """The ``length`` lowest 5-bit groups of ``value`` in ``ALPHABET``, highest first."""
    chars = []
    for _ in range(length):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A 26-character ULID-style id behind ``prefix_``: sorts by creation time (ms)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{b32(millis, 10)}{b32(rand, 16)}"


def is_message_id(value: str) -> bool:
    """True for one of our message ids (``new_id("msg")``), as opposed to a provider's."""
    return value.startswith("msg_")
