"""What a provider package declares about itself: its capabilities and how to build them.

Every provider package (``cloudapi/``, ``whapi/``, ``periskope/``, ...) has a ``spec``
module with one ``ProviderSpec``; ``catalog`` collects them. The registry, the features
and the webhook routes read these declarations instead of testing adapter classes or
channel kinds, so a new provider joins by declaring itself in its package and being
listed in ``catalog``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

from wahub.providers.base import ChatDirectory, GroupDirectory, ParsedDelivery, Provider


class Capability(StrEnum):
    """What a channel of a provider can do."""

    SEND = "send"  # send messages (``Provider``)
    GROUPS = "groups"  # list groups and their members (``GroupDirectory``)
    CHATS = "chats"  # look up chat names (``ChatDirectory``)
    RECEIVE = "receive"  # deliver inbound messages and statuses (``Receiver``)
    SESSION = "session"  # a linked phone held by wahub's own session process


@dataclass(frozen=True, slots=True)
class Connection:
    """What an adapter is built from: a channel row's connection settings, its
    credentials opened, and the HTTP session the registry shares between adapters."""

    channel_id: str
    base_url: str
    credentials: Mapping[str, str]
    session: aiohttp.ClientSession
    timeout_s: float
    phone_number: str | None = None
    phone_number_id: str | None = None
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """The parts of a webhook request a verifier may look at. ``body`` is empty for a
    verifier that runs before the body is read (``WebhookAuth.reads_body`` False)."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    """How a provider's webhook deliveries prove they come from it.

    ``verify(secret, request)`` is True for an authentic delivery and never raises.
    ``secret_setting`` names the ``Settings`` field holding the secret (its environment
    variable is ``WAHUB_`` + the name upper-cased); ``label`` names the provider in
    messages; ``failure`` is the 401 message for a delivery that does not verify.
    ``reads_body`` False means the secret is in the URL or a header, so it is checked
    before a byte of the body is read; ``secret_query`` is the query parameter carrying
    it, when it may come that way (documented on the route). ``kept_headers`` are stored
    with the delivery for debugging and audit (never Authorization-style headers);
    ``summary`` is the route's one-line description.
    """

    label: str
    secret_setting: str
    verify: Callable[[str, WebhookRequest], bool]
    failure: str
    kept_headers: tuple[str, ...]
    reads_body: bool = True
    secret_query: str | None = None
    summary: str = ""

    @property
    def secret_env(self) -> str:
        return "WAHUB_" + self.secret_setting.upper()


@dataclass(frozen=True, slots=True)
class Receiver:
    """How deliveries of one provider enter the inbox and are read back out of it.

    ``provider`` is the ``inbox.provider`` key (and the webhook path under
    ``/v1/webhooks/``); ``dedupe_key(body)`` names a delivery so a redelivery is stored
    once, tolerating any body; ``parse(body)`` is pure and raises ``ValidationError`` for
    a body of the wrong shape. ``webhook`` is None for deliveries that do not arrive over
    HTTP (a session's events, written by our own session process).
    """

    provider: str
    dedupe_key: Callable[[bytes], str]
    parse: Callable[[bytes], ParsedDelivery]
    webhook: WebhookAuth | None = None


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider: its channel kind, what its channels can do, and how to build that.

    ``capabilities`` is the declaration everything else reads; the factories must match
    it (checked on construction): ``sender`` for SEND, ``groups`` for GROUPS, ``chats``
    for CHATS, ``receiver`` for RECEIVE. A factory raises ``ValueError`` for connection
    settings it cannot work with.

    A channel of this kind stores its token under ``credential_key`` of its credentials
    (``credential_name`` is what the provider calls it, for messages); ``required``
    maps each channel field it cannot do without to the message refusing a channel that
    lacks it; ``phone_number_is_ours`` says ``phone_number`` is the channel's own
    WhatsApp number (stored as E.164), not a free label. ``echoes_tracking_id``: the
    provider's statuses carry our message id back, so a send whose outcome is unknown
    and that no status mentions within the grace period provably did not go out;
    ``echoes_tracking_id_at``, when set, decides it per channel instead, from the
    channel's ``base_url`` (a provider whose engines differ: see ``echoes``).
    ``names_people``: its chat directory knows people as well as groups. ``send_types``
    are the message content types its sender can send (Cloud API names); any other is
    refused with ``PermanentProviderError`` before a request is made.
    """

    kind: str
    capabilities: frozenset[Capability]
    default_base_url: str
    credential_key: str
    credential_name: str
    required: Mapping[str, str] = field(default_factory=dict)
    phone_number_is_ours: bool = False
    sender: Callable[[Connection], Provider] | None = None
    groups: Callable[[Connection], GroupDirectory] | None = None
    chats: Callable[[Connection], ChatDirectory] | None = None
    receiver: Receiver | None = None
    echoes_tracking_id: bool = False
    echoes_tracking_id_at: Callable[[str], bool] | None = None
    names_people: bool = False
    send_types: frozenset[str] = frozenset()

    def echoes(self, base_url: str) -> bool:
        """Whether statuses of a channel of this kind at ``base_url`` name our message,
        so that silence settles an uncertain send (see ``echoes_tracking_id``)."""
        if self.echoes_tracking_id_at is not None:
            return self.echoes_tracking_id_at(base_url)
        return self.echoes_tracking_id

    def __post_init__(self) -> None:
        built = {
            Capability.SEND: self.sender,
            Capability.GROUPS: self.groups,
            Capability.CHATS: self.chats,
            Capability.RECEIVE: self.receiver,
        }
        for capability, factory in built.items():
            if (capability in self.capabilities) != (factory is not None):
                raise ValueError(
                    f"provider {self.kind!r}: capability {capability.value!r} is "
                    f"{'declared' if capability in self.capabilities else 'not declared'} "
                    f"but its factory is {'missing' if factory is None else 'set'}"
                )

        if Capability.SEND in self.capabilities and not self.send_types:
            raise ValueError(f"provider {self.kind!r}: a sender must name its send_types")

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities
