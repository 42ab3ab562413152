"""The provider port: what the pipeline needs from a WhatsApp provider.

Adapters turn our outbound messages into provider API calls and provider webhooks into
our status updates. The sandbox (``wahub.providers.sandbox``) is a real HTTP server that
speaks the Cloud API shapes, so the same adapter code runs against Meta and against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from wahub.domain.status import Status


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One send attempt, as the pipeline hands it to an adapter.

    ``content`` is the stored message content in Cloud API shape
    (``{"type": "text", "text": {"body": ...}}``); ``tracking_id`` is our message id,
    echoed back by the provider in status webhooks (``biz_opaque_callback_data``).
    """

    tracking_id: str
    recipient: str
    is_group: bool
    content: dict[str, Any]
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider accepted the message: its id, and the canonical recipient it chose."""

    provider_message_id: str
    wa_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderErrorInfo:
    code: int | str | None
    title: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A provider told us a message reached ``status`` at ``timestamp`` (unix seconds)."""

    provider_message_id: str
    status: Status
    timestamp: int
    tracking_id: str | None = None
    recipient: str | None = None
    errors: tuple[ProviderErrorInfo, ...] = field(default_factory=tuple)


class Provider(Protocol):
    """Sends messages for one channel. Raises ``RetryableProviderError`` or
    ``PermanentProviderError`` (``wahub.domain.errors``) when the provider refuses."""

    kind: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
