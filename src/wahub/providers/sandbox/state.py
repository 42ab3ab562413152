"""What the sandbox remembers: the sends it accepted and how many it refused, by kind.

Kept in memory only; ``POST /_sandbox/reset`` (or ``Sandbox.reset``) forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SendRecord:
    """One accepted send. Field names are the JSON keys of ``GET /_sandbox/sends``.

    ``to`` is the recipient as sent, ``wa_id`` as WhatsApp names it (digits without
    ``+``, or the group JID); ``body`` is the request JSON as received; ``received_at``
    is unix seconds (float). ``provider`` is ``cloudapi``, ``whapi`` (then ``wamid`` is
    WHAPI's message id and ``phone_number_id`` the WHAPI channel's own number) or
    ``web`` (a web session's send: ``phone_number_id`` is the session name,
    ``biz_opaque_callback_data`` the sender's tracking id, media replaced by its size).
    """

    wamid: str
    phone_number_id: str
    to: str
    wa_id: str
    type: str
    body: dict[str, Any]
    biz_opaque_callback_data: str | None
    received_at: float
    provider: str = "cloudapi"


@dataclass(slots=True)
class SendCounters:
    """Counters of the send endpoint. ``held`` counts accepted sends answered late on
    purpose (``rate_timeout``); ``rejected`` maps a refusal kind to its count."""

    accepted: int = 0
    held: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, kind: str) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
