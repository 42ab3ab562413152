"""The sink port: what a replication target implements.

A sink receives changes in seq order and answers per change: delivered, rejected (the
target refused this change for good: it becomes a dead letter with the reason) or retry
(a failure worth trying again; after the sink's ``max_attempts`` it is dead-lettered).
``SinkUnavailable`` means the target cannot take anything now (down, unreachable,
misconfigured credentials): the shipper backs off and tries the same changes again,
without counting it against them, so a sink down for an hour loses nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from wahub.store.changelog import Change


class SinkUnavailable(Exception):
    """The sink cannot take changes now; the message says why (shown in status)."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    reason: str | None = None


DELIVERED = Delivery(Outcome.DELIVERED)


def rejected(reason: str) -> Delivery:
    return Delivery(Outcome.REJECTED, reason)


def retry(reason: str) -> Delivery:
    return Delivery(Outcome.RETRY, reason)


Outcomes = dict[tuple[int, str, str], Delivery]


class Sink(Protocol):
    """A replication target.

    ``deliver`` gets changes in seq order and returns an outcome per change (by
    ``Change.ident``); a change it leaves out counts as delivered. Among changes with
    the same ``ordering_key``, a sink that answers ``retry`` for one must not have
    delivered a later one (the shipper resends from there, in order).
    """

    name: str

    async def open(self) -> None:
        """Connect and prepare (tables, indexes). Raises SinkUnavailable."""
        ...

    async def deliver(self, changes: list[Change]) -> Outcomes: ...

    async def close(self) -> None: ...
