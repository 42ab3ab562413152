"""Which parser reads a stored webhook delivery: the receiver its provider declared
(``providers.catalog.RECEIVERS``), keyed by the ``inbox.provider`` the delivery was
stored under.

A parser takes the raw body exactly as received and returns every message and status
it carries (``ParsedDelivery``); it raises ``ValidationError`` for a body of the wrong
shape, which turns the delivery into a dead letter with that reason. Parsers are pure:
no I/O, no clock.
"""

from __future__ import annotations

from wahub.domain.errors import ValidationError
from wahub.providers import catalog
from wahub.providers.base import ParsedDelivery


def parse_stored_delivery(provider: str, body: bytes) -> ParsedDelivery:
    """Parse one stored delivery. Raises ValidationError for an unknown provider or a
    body its parser refuses."""
    receiver = catalog.receiver_for(provider)
    if receiver is None:
        raise ValidationError(f"no parser for provider {provider!r}")
    return receiver.parse(body)
