"""The outbound message status machine.

Statuses only move forward: queued < sending < sent < delivered < read.
``uncertain`` sits beside ``sending``: a worker died mid-send, and we do not know whether
the provider got it. ``failed`` replaces queued, sending, uncertain or sent; after
delivered or read a failure is recorded in the history but the status stays (Meta
documents that one message can be both delivered and failed across a user's devices).

``fold`` is the whole rule: applying any sequence of status observations, in any order
and with duplicates, gives the same result as applying them sorted.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    UNCERTAIN = "uncertain"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# Rank of each status on the forward path. SENDING and UNCERTAIN share a rank: both mean
# "handed (maybe) to the provider, no answer yet".
RANK: dict[Status, int] = {
    Status.QUEUED: 0,
    Status.SENDING: 1,
    Status.UNCERTAIN: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.READ: 4,
}

# Statuses a provider can report about a message after we sent it.
PROVIDER_STATUSES = frozenset({Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED})

# Statuses after which the worker has nothing more to do with the message.
FINAL = frozenset({Status.DELIVERED, Status.READ, Status.FAILED})

# Statuses in which a message occupies its ordering key (the chat): nothing later in the
# chat may be sent before it leaves them.
IN_FLIGHT = frozenset({Status.SENDING, Status.UNCERTAIN})

# Statuses a failure may replace.
FAILABLE = frozenset({Status.QUEUED, Status.SENDING, Status.UNCERTAIN, Status.SENT})


def advance(current: Status, observed: Status) -> Status:
    """The status after observing ``observed`` while at ``current``.

    Never moves backwards; ``failed`` wins only over statuses that precede delivery, and
    nothing moves a message out of ``failed`` except a later delivery proof (delivered or
    read), which shows the failure report was about another device or was stale.
    """
    if observed == current:
        return current
    if observed == Status.FAILED:
        return Status.FAILED if current in FAILABLE else current
    if current == Status.FAILED:
        return observed if observed in (Status.DELIVERED, Status.READ) else current
    return observed if RANK[observed] > RANK[current] else current


def fold(start: Status, observations: Iterable[Status]) -> Status:
    """Apply observations in the given order."""
    status = start
    for observed in observations:
        status = advance(status, observed)
    return status


def is_final(status: Status) -> bool:
    return status in FINAL
