"""Build the adapters of a channel row, sharing one HTTP session across channels.

A channel's ``kind`` names its provider; what the provider can do and how its adapters
are built is its declaration in ``catalog`` (``ProviderSpec``). Asking for a capability
the kind does not declare is a ``ValidationError`` naming the kinds that have it.

Channel rows carry their credentials sealed; they are opened here, when an adapter is
built, and nowhere else, so a channel row passed around or logged holds no token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiohttp
import orjson

from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import ValidationError
from wahub.providers import catalog
from wahub.providers.base import ChatDirectory, GroupDirectory, Provider
from wahub.providers.spec import Capability, Connection, ProviderSpec

T = TypeVar("T")


def echoes_tracking_id(kind: str, base_url: str) -> bool:
    """Whether the statuses of a channel (its ``kind`` and ``base_url``) name our message
    id, so that silence settles an uncertain send (the outbox resends it after the grace
    period instead of applying the policy). False for a kind nobody provides."""
    spec = catalog.spec_for(kind)
    return spec is not None and spec.echoes(base_url)


class ProviderRegistry:
    """The adapters of each channel, created on first use and rebuilt when the channel's
    connection settings change. ``close`` closes the shared session.

    Building an adapter raises ``CredentialsUnreadable`` (naming the channel) when the
    channel's credentials do not open with ``cipher``, and ``ValidationError`` (naming
    the channel) when the provider refuses its connection settings.
    """

    def __init__(
        self, cipher: CredentialCipher, *, timeout_s: float = 15.0, connection_limit: int = 256
    ) -> None:
        self._cipher = cipher
        self._timeout_s = timeout_s
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        # (channel id, factory) -> (connection fingerprint, adapter, is a sender). Keyed by
        # factory, so a provider whose one adapter sends and lists groups builds it once.
        self._built: dict[tuple[str, Callable[..., Any]], tuple[tuple[Any, ...], Any, bool]] = {}
        self._sessions: Callable[[str], Provider] | None = None

    def serve_session_channels(self, sender: Callable[[str], Provider]) -> None:
        """Send channels of session kinds (``web``) through ``sender`` (channel id -> its
        live session's provider): only the session process, which holds the sessions."""
        self._sessions = sender

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda obj: orjson.dumps(obj).decode()
            )
        return self._session

    def for_channel(self, channel: dict[str, Any]) -> Provider:
        """The adapter that sends for ``channel`` (a channel row with its credentials).

        Raises ``ValidationError`` for a kind that cannot send, and for a session kind
        outside the session process (``serve_session_channels``).
        """
        spec = catalog.spec_for(channel["kind"])
        if spec is not None and spec.supports(Capability.SESSION):
            if self._sessions is None:
                raise ValidationError(
                    f"{spec.kind} channels send from the session process (wahub sessions)",
                    details={"field": "kind", "kind": spec.kind},
                )
            return self._sessions(channel["id"])
        if spec is None or spec.sender is None:
            raise ValidationError(
                f"channel kind {channel['kind']!r} cannot send yet",
                details={"field": "kind", "kind": channel["kind"]},
            )
        return self._built_for(channel, spec, spec.sender)

    def groups_for_channel(self, channel: dict[str, Any]) -> GroupDirectory:
        """The group directory of ``channel``.

        Raises ``ValidationError`` for kinds without one (the Cloud API cannot list a
        number's groups or their members).
        """
        spec = catalog.spec_for(channel["kind"])
        if spec is None or spec.groups is None:
            able = " and ".join(catalog.kinds_with(Capability.GROUPS))
            raise ValidationError(
                f"channel kind {channel['kind']!r} has no group directory "
                f"(only {able} channels can list groups and members)",
                details={"field": "channel_id", "kind": channel["kind"]},
            )
        return self._built_for(channel, spec, spec.groups)

    def chats_for_channel(self, channel: dict[str, Any]) -> ChatDirectory:
        """The chat directory of ``channel``, for chat names (Periskope's ``/chats`` names
        people and groups, the WHAPI group lookup names groups).

        Raises ``ValidationError`` for kinds without one: the Cloud API has no chat
        lookup, so people's names there come from inbound profiles only.
        """
        spec = catalog.spec_for(channel["kind"])
        if spec is None or spec.chats is None:
            able = " and ".join(catalog.chat_directory_kinds())
            raise ValidationError(
                f"channel kind {channel['kind']!r} has no chat directory (chat names come "
                f"from inbound profiles there; {able} channels can be asked)",
                details={"field": "channel_id", "kind": channel["kind"]},
            )
        return self._built_for(channel, spec, spec.chats)

    def _built_for(
        self,
        channel: dict[str, Any],
        spec: ProviderSpec,
        build: Callable[[Connection], T],
    ) -> T:
        # Rebuild when the channel's connection settings changed (a new token is a new
        # sealed value: re-sealing alone rebuilds it too, harmlessly).
        fingerprint = (
            channel["kind"],
            channel["base_url"],
            channel.get("api_version"),
            channel.get("phone_number_id"),
            channel.get("phone_number"),
            channel["credentials"],
        )
        key = (channel["id"], build)
        cached = self._built.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cast(T, cached[1])
        connection = Connection(
            channel_id=channel["id"],
            base_url=channel["base_url"],
            credentials=self._cipher.open(
                channel["credentials"], channel=f"{channel['name']!r} ({channel['id']})"
            ),
            session=self._http(),
            timeout_s=self._timeout_s,
            phone_number=channel.get("phone_number"),
            phone_number_id=channel.get("phone_number_id"),
            api_version=channel.get("api_version"),
        )
        try:
            adapter = build(connection)
        except ValueError as exc:
            raise ValidationError(
                f"channel {channel['id']}: {exc}",
                details={"field": "channel_id", "kind": spec.kind},
            ) from exc
        self._built[key] = (fingerprint, adapter, build is spec.sender)
        return adapter

    async def close(self) -> None:
        # Only senders have anything to close (the port says so); directories hold
        # nothing but the shared session.
        for _, adapter, is_sender in self._built.values():
            if is_sender:
                await cast(Provider, adapter).close()
        self._built.clear()
        if self._session is not None:
            await self._session.close()
