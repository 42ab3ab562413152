"""Which parser reads a stored webhook delivery: one per provider, keyed by the
``inbox.provider`` the receiving route stored it under.

A parser takes the raw body exactly as received and returns every message and status
it carries (``ParsedDelivery``); it raises ``ValidationError`` for a body of the wrong
shape, which turns the delivery into a dead letter with that reason. Parsers are pure:
no I/O, no clock.

Providers register here (``PARSERS`` below, or ``register_parser`` from tests).
"""

from __future__ import annotations

from collections.abc import Callable

from wahub.domain.errors import ValidationError
from wahub.providers import cloudapi_webhooks, periskope_webhooks, whapi_webhooks
from wahub.providers.base import ParsedDelivery
from wahub.providers.web import events as web_events

DeliveryParser = Callable[[bytes], ParsedDelivery]

PARSERS: dict[str, DeliveryParser] = {
    "cloudapi": cloudapi_webhooks.parse_body,
    "whapi": whapi_webhooks.parse_body,
    "periskope": periskope_webhooks.parse_body,
    # WhatsApp Web session events, stored by the session process (wahub sessions).
    "web": web_events.parse_body,
}


def register_parser(provider: str, parser: DeliveryParser) -> None:
    """Route deliveries stored under ``provider`` to ``parser`` (replacing any before)."""
    PARSERS[provider] = parser


def parse_stored_delivery(provider: str, body: bytes) -> ParsedDelivery:
    """Parse one stored delivery. Raises ValidationError for an unknown provider or a
    body its parser refuses."""
    parser = PARSERS.get(provider)
    if parser is None:
        raise ValidationError(f"no parser for provider {provider!r}")
    return parser(body)
