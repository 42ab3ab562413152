"""The web session port: what the session process needs from an engine that holds a
linked WhatsApp Web connection.

Two engines implement it: one on neonize (whatsmeow) for real phones, one that talks to
the sandbox's web session engine over HTTP, so tests and the demo exercise every line of
the session process without a phone. An engine reports what happens through one
callback (``on_event``), always called on the event loop that opened the session; an
engine whose library calls back from other threads hops onto the loop first.

Lifecycle: ``open`` builds a session (no I/O); ``start`` dials, resuming from the
credentials stored for the channel, or beginning a pairing (``QrCode`` events, or
``pair_phone``) when there are none; whatever follows arrives as events. ``stop``
disconnects and keeps the credentials (a restart resumes without a new QR); ``logout``
unlinks the device and deletes them. Neither may hang: each returns within the engine's
own timeout whatever the network does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from wahub.providers.base import (
    GroupInfo,
    GroupParticipant,
    InboundMessage,
    SendResult,
    StatusUpdate,
)


class SessionState(StrEnum):
    """What a web channel's session is doing; stored on the channel row, with history.

    ``working`` is claimed only while keep-alives arrive: a missed one makes the session
    ``degraded`` until one is answered again (whatsmeow keeps reconnecting meanwhile).
    ``failed`` carries a reason (a dial that did not connect, a temporary ban, a stream
    replaced by another client); ``logged_out`` means the phone unlinked us and only a
    new pairing helps.
    """

    STOPPED = "stopped"
    STARTING = "starting"
    SCAN_QR = "scan_qr"
    WORKING = "working"
    DEGRADED = "degraded"
    FAILED = "failed"
    LOGGED_OUT = "logged_out"


# -- what a session reports --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QrCode:
    """A pairing code to show as a QR; it is replaced by the next one after
    ``expires_in_s`` (whatsmeow rotates them: about 60 s for the first, 20 s after)."""

    code: str
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class Connected:
    """The socket is up and logged in as ``me_phone`` (E.164) / ``me_lid``."""

    me_phone: str | None
    me_lid: str | None = None
    push_name: str | None = None


@dataclass(frozen=True, slots=True)
class KeepAliveMissed:
    """The server stopped answering keep-alives; the connection may be dead."""


@dataclass(frozen=True, slots=True)
class KeepAliveRestored:
    """Keep-alives are answered again after ``KeepAliveMissed``."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket closed; the engine reconnects by itself (not after logout, stream
    replaced or a ban, which have events of their own)."""

    reason: str


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The phone unlinked this device (or the server did); credentials are gone."""

    reason: str


@dataclass(frozen=True, slots=True)
class StreamReplaced:
    """Another client opened the same session; this one was closed and must not
    reconnect by itself, or the two would take the session from each other forever."""


@dataclass(frozen=True, slots=True)
class TemporaryBan:
    """WhatsApp refused the number for a while (sending too fast, reports)."""

    reason: str
    expires_in_s: float | None


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """The dial did not succeed (no network, refused, bad credentials): the session is
    ``failed`` with ``reason`` in words."""

    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message (text, media, reaction, reply...) in a chat of ours, including ones our
    own number sent from the phone (``message.from_me``). ``sender_lid`` is the sender's
    linked id when the engine saw one; a sender known only by its LID has
    ``message.sender_phone`` unset."""

    message: InboundMessage
    sender_lid: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """Delivered/read receipts; one receipt can name several of our messages."""

    statuses: tuple[StatusUpdate, ...]


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group was created, renamed or changed members. ``name`` is None when it did not
    change; ``joined``/``left`` list the members that came and went."""

    chat_id: str
    timestamp: int
    name: str | None = None
    joined: tuple[GroupParticipant, ...] = ()
    left: tuple[GroupParticipant, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityLinked:
    """The engine learned that linked id ``lid`` (``...@lid``) is phone ``phone`` (E.164)."""

    lid: str
    phone: str


SessionEvent = (
    QrCode
    | Connected
    | KeepAliveMissed
    | KeepAliveRestored
    | Disconnected
    | LoggedOut
    | StreamReplaced
    | TemporaryBan
    | ConnectFailed
    | MessageReceived
    | ReceiptReceived
    | GroupChanged
    | IdentityLinked
)

OnEvent = Callable[[SessionEvent], None]


# -- what the session process asks of a session --------------------------------------------


@dataclass(frozen=True, slots=True)
class WebOutbound:
    """One message to send through a session.

    ``to`` is a JID (``<digits>@s.whatsapp.net`` or ``<id>@g.us``). ``kind`` is text,
    image, video, audio or document; media travels as ``media`` bytes that the session
    process downloaded itself (with a timeout and a size cap: engines never fetch URLs).
    ``reply_to`` is the provider id of the quoted message. ``tracking_id`` is our message
    id, for logs and for engines that can echo it.
    """

    tracking_id: str
    to: str
    kind: str
    text: str | None = None
    media: bytes | None = None
    mimetype: str | None = None
    filename: str | None = None
    reply_to: str | None = None


class WebSession(Protocol):
    """One linked phone's connection. Raises ``ProviderError`` subclasses
    (``wahub.domain.errors``) when an operation is refused: ``RetryableProviderError``
    while not connected, ``PermanentProviderError`` for a message WhatsApp will never
    take."""

    channel_id: str

    async def start(self) -> None: ...

    async def pair_phone(self, phone: str) -> str:
        """Ask for a pairing code for ``phone`` (E.164), the alternative to scanning a
        QR; valid only while pairing (after ``start``, before ``Connected``)."""
        ...

    async def send(self, message: WebOutbound) -> SendResult: ...

    async def list_groups(self) -> tuple[GroupInfo, ...]:
        """Every group our number is in, with members (phones and LIDs as known)."""
        ...

    async def stop(self) -> None: ...

    async def logout(self) -> None: ...


class WebEngine(Protocol):
    """Builds sessions. ``name`` says which engine (``neonize``, ``sandbox``)."""

    name: str

    def open(self, channel_id: str, *, on_event: OnEvent) -> WebSession: ...

    async def has_credentials(self, channel_id: str) -> bool:
        """Whether a linked device is stored for ``channel_id`` (a start resumes it)."""
        ...

    async def close(self) -> None: ...
