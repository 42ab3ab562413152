"""The provider port: what the pipeline needs from a WhatsApp provider.

Adapters turn our outbound messages into provider API calls and provider webhooks into
our status updates. The sandbox (``wahub.providers.sandbox``) is a real HTTP server that
speaks the Cloud API shapes, so the same adapter code runs against Meta and against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from wahub.domain.errors import ValidationError
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
    ``PermanentProviderError`` (``wahub.domain.errors``) when the provider refuses.

    What else a provider can do (and whether its statuses echo our tracking id) is its
    declaration, ``spec.ProviderSpec``, not a property of the adapter.
    """

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def check(self) -> None:
        """Prove the channel's credentials with a call that changes nothing at the
        provider. Raises ``ProviderError`` (a refused token is permanent)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class MediaUploader(Protocol):
    """A provider that takes files ahead of a send and answers with its own id for them
    (the Cloud API's ``POST /{phone_number_id}/media``)."""

    async def upload_media(self, data: bytes, *, mime_type: str, filename: str) -> str:
        """The provider's id of the file. Raises ``RetryableProviderError`` or
        ``PermanentProviderError``."""
        ...


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A downloaded file and the type its server named (None: it named none)."""

    data: bytes
    mime_type: str | None


@runtime_checkable
class MediaDownloader(Protocol):
    """A provider whose received files are fetched by its own id for them (the Cloud
    API's ``GET /{media_id}``, then the URL it answers)."""

    async def download_media(
        self, media_id: str, *, max_bytes: int, timeout_s: float
    ) -> Downloaded:
        """The file. Raises ``RetryableProviderError``, ``PermanentProviderError`` or
        ``MediaTooLarge`` (over ``max_bytes``)."""
        ...


# Channel kinds whose adapter is a ``MediaUploader``: sends of uploaded media ids.
MEDIA_UPLOAD_KINDS = frozenset({"cloudapi"})


# -- group directories (issue: groups and lookup) ----------------------------------------


@dataclass(frozen=True, slots=True)
class GroupParticipant:
    """One member of a group as the provider reports it.

    ``phone`` is E.164 (``+4915123456789``) when the provider shows the number; ``lid`` is
    the linked identity (``76699677012110@lid``) when that is all it shows. At least one
    of the two is set.
    """

    phone: str | None
    lid: str | None
    rank: str  # creator | admin | member


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group and its members. ``chat_id`` is the JID (``120363...@g.us``)."""

    chat_id: str
    name: str | None
    participants: tuple[GroupParticipant, ...]
    # False when our own number is no longer a participant (we left or were removed):
    # the group stays in the directory but cannot be sent to.
    we_are_member: bool = True


@dataclass(frozen=True, slots=True)
class GroupPage:
    groups: tuple[GroupInfo, ...]
    total: int
    offset: int


def check_page(offset: int, size: int, *, size_field: str, max_size: int) -> None:
    """Raises ``ValidationError`` unless ``size`` is in 1..``max_size`` and ``offset`` is
    not negative; ``size_field`` names the size argument (``count``, ``limit``)."""
    # Checked before any request: the provider would refuse the page anyway, and the
    # caller's mistake should read as ours, not as a provider error.
    if not 1 <= size <= max_size:
        raise ValidationError(
            f"{size_field} must be in 1..{max_size}, got {size}", details={"field": size_field}
        )
    if offset < 0:
        raise ValidationError(f"offset must be >= 0, got {offset}", details={"field": "offset"})


class GroupDirectory(Protocol):
    """Lists and fetches a channel's groups. Raises ``NotFound`` for an unknown group,
    ``RetryableProviderError`` (with ``retry_after`` when the provider sent one) for 429
    and 5xx, ``PermanentProviderError`` for other refusals."""

    async def list_groups(self, *, offset: int = 0, count: int = 100) -> GroupPage: ...

    async def get_group(self, chat_id: str) -> GroupInfo: ...


# -- inbound messages (issue: inbound, conversations, chat names) --------------------------


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a provider's webhook told us about, in one shape for every provider.

    ``chat_id`` is canonical (``<digits>@s.whatsapp.net`` for a person, ``<id>@g.us`` for
    a group); ``sender_phone`` is E.164 when the provider shows it (in a group, the
    member who wrote). ``type`` is the provider's own message type, normalised to
    lower case (text, image, video, audio, voice, document, sticker, location, contacts,
    interactive, button, reaction, order, system, unsupported, ...): an unknown type is
    kept as it came, never an error. ``text`` is what a human would read (body, caption,
    button or list title, reaction emoji), used for keywords and search. ``content`` is
    the provider's message object as received. ``from_me`` marks a message our own
    number sent from another device (WHAPI and Periskope report those).
    ``channel_ref`` identifies our channel in the provider's terms (Cloud API
    ``phone_number_id``, WHAPI ``channel_id``, Periskope ``org_phone``).
    """

    provider: str  # cloudapi | whapi | periskope | web
    provider_message_id: str
    chat_id: str
    timestamp: int
    type: str
    content: dict[str, Any]
    sender_phone: str | None = None
    sender_name: str | None = None
    text: str | None = None
    reply_to_provider_id: str | None = None
    reaction_to_provider_id: str | None = None
    from_me: bool = False
    channel_ref: str | None = None
    chat_name: str | None = None


@dataclass(frozen=True, slots=True)
class GroupChange:
    """A group of ``channel_ref``'s number was created, renamed or changed members
    (a session event): ``name`` None when it did not change."""

    channel_ref: str
    chat_id: str
    timestamp: int
    name: str | None = None
    joined: tuple[GroupParticipant, ...] = ()
    left: tuple[GroupParticipant, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """Linked id ``lid`` (``<digits>@lid``) is phone ``phone`` (E.164)."""

    lid: str
    phone: str


@dataclass(frozen=True, slots=True)
class ParsedDelivery:
    """Everything one stored webhook delivery (or session event) carries."""

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    group_changes: tuple[GroupChange, ...] = ()
    identities: tuple[IdentityLink, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatInfo:
    """A chat as a provider's chat directory describes it (Periskope ``/chats``, ...)."""

    chat_id: str
    name: str | None
    kind: str  # person | group


@dataclass(frozen=True, slots=True)
class ChatPage:
    chats: tuple[ChatInfo, ...]
    total: int | None
    offset: int


class ChatDirectory(Protocol):
    """Looks up chat names. Raises ``NotFound`` for an unknown chat, ``RetryableProviderError``
    for 429/5xx/timeouts, ``PermanentProviderError`` for other refusals."""

    async def get_chat(self, chat_id: str) -> ChatInfo: ...

    async def list_chats(self, *, offset: int = 0, limit: int = 100) -> ChatPage: ...
