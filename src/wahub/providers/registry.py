"""Build the adapter for a channel row, sharing one HTTP session across channels.

A channel's ``kind`` picks the adapter: ``cloudapi`` (credentials ``access_token``,
``phone_number_id``) or ``whapi`` (credentials ``token``; ``phone_number`` is the
channel's own number, which tells groups we left from groups we are in). ``periskope``
channels (credentials ``api_key``; ``phone_number`` is the org phone) have a chat
directory (``chats_for_channel``) but send nothing yet.

Channel rows carry their credentials sealed; they are opened here, when an adapter is
built, and nowhere else, so a channel row passed around or logged holds no token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import ValidationError
from wahub.providers.base import ChatDirectory, GroupDirectory, Provider
from wahub.providers.cloudapi import CloudApiProvider
from wahub.providers.group_chats import GroupChatDirectory
from wahub.providers.periskope import PeriskopeChatDirectory
from wahub.providers.web.provider import WebProvider
from wahub.providers.whapi import WhapiProvider

Adapter = CloudApiProvider | WhapiProvider

# Channel kinds whose statuses echo our message id, so that silence settles an uncertain
# send (the outbox resends it after the grace period instead of applying the policy).
ECHOING_KINDS = frozenset(
    adapter.kind for adapter in (CloudApiProvider, WhapiProvider) if adapter.echoes_tracking_id
)


class ProviderRegistry:
    """One adapter per channel, created on first use. ``close`` closes the shared session.

    Building an adapter raises ``CredentialsUnreadable`` (naming the channel) when the
    channel's credentials do not open with ``cipher``.
    """

    def __init__(
        self, cipher: CredentialCipher, *, timeout_s: float = 15.0, connection_limit: int = 256
    ) -> None:
        self._cipher = cipher
        self._timeout_s = timeout_s
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self._adapters: dict[str, tuple[tuple[Any, ...], Adapter]] = {}
        self._directories: dict[str, tuple[tuple[Any, ...], PeriskopeChatDirectory]] = {}
        self._web: Callable[[str], WebProvider] | None = None

    def serve_web_channels(self, sender: Callable[[str], WebProvider]) -> None:
        """Send web channels through ``sender`` (channel id -> its live session's
        provider): only the session process, which holds the sessions, can."""
        self._web = sender

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda obj: orjson.dumps(obj).decode()
            )
        return self._session

    def for_channel(self, channel: dict[str, Any]) -> Provider:
        """The adapter that sends for ``channel`` (a channel row with its credentials).

        Raises ``ValidationError`` for a kind no adapter exists for, and for a web
        channel outside the session process (``serve_web_channels``).
        """
        if channel["kind"] == "web":
            if self._web is None:
                raise ValidationError(
                    "web channels send from the session process (wahub sessions) only",
                    details={"field": "kind", "kind": "web"},
                )
            return self._web(channel["id"])
        return self._adapter(channel)

    def groups_for_channel(self, channel: dict[str, Any]) -> GroupDirectory:
        """The group directory of ``channel``: its WHAPI adapter.

        Raises ``ValidationError`` for kinds without one (the Cloud API cannot list a
        number's groups or their members).
        """
        adapter = self._adapter(channel)
        if not isinstance(adapter, WhapiProvider):
            raise ValidationError(
                f"channel kind {channel['kind']!r} has no group directory "
                f"(only whapi channels can list groups and members)",
                details={"field": "channel_id", "kind": channel["kind"]},
            )
        return adapter

    def chats_for_channel(self, channel: dict[str, Any]) -> ChatDirectory:
        """The chat directory of ``channel``, for chat names: Periskope's ``/chats`` (people
        and groups), or the WHAPI group lookup (groups only).

        Raises ``ValidationError`` for kinds without one: the Cloud API has no chat
        lookup, so people's names there come from inbound profiles only.
        """
        kind = channel["kind"]
        if kind == "whapi":
            return GroupChatDirectory(self.groups_for_channel(channel))
        if kind != "periskope":
            raise ValidationError(
                f"channel kind {kind!r} has no chat directory (chat names come from "
                "inbound profiles there; periskope and whapi channels can be asked)",
                details={"field": "channel_id", "kind": kind},
            )
        fingerprint = (channel["base_url"], channel.get("phone_number"), channel["credentials"])
        cached = self._directories.get(channel["id"])
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        credentials = self._open(channel)
        try:
            directory = PeriskopeChatDirectory(
                api_key=credentials.get("api_key", ""),
                org_phone=channel.get("phone_number") or "",
                session=self._http(),
                base_url=channel["base_url"],
                timeout_s=self._timeout_s,
            )
        except ValueError as exc:
            raise ValidationError(
                f"channel {channel['id']}: {exc}", details={"field": "channel_id"}
            ) from exc
        self._directories[channel["id"]] = (fingerprint, directory)
        return directory

    def _open(self, channel: dict[str, Any]) -> dict[str, str]:
        return self._cipher.open(
            channel["credentials"], channel=f"{channel['name']!r} ({channel['id']})"
        )

    def _adapter(self, channel: dict[str, Any]) -> Adapter:
        # Rebuild the adapter when the channel's connection settings changed (a new
        # token is a new sealed value: re-sealing alone rebuilds it too, harmlessly).
        fingerprint = (
            channel["kind"],
            channel["base_url"],
            channel.get("api_version"),
            channel.get("phone_number_id"),
            channel.get("phone_number"),
            channel["credentials"],
        )
        cached = self._adapters.get(channel["id"])
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if channel["kind"] not in ("cloudapi", "whapi"):
            raise ValidationError(
                f"channel kind {channel['kind']!r} cannot send yet",
                details={"field": "kind", "kind": channel["kind"]},
            )
        credentials = self._open(channel)
        adapter: Adapter
        if channel["kind"] == "cloudapi":
            adapter = CloudApiProvider(
                phone_number_id=channel["phone_number_id"],
                access_token=credentials.get("access_token", ""),
                session=self._http(),
                base_url=channel["base_url"],
                api_version=channel["api_version"],
                timeout_s=self._timeout_s,
            )
        else:
            adapter = WhapiProvider(
                token=credentials.get("token", ""),
                session=self._http(),
                base_url=channel["base_url"],
                own_phone=channel.get("phone_number"),
                timeout_s=self._timeout_s,
            )
        self._adapters[channel["id"]] = (fingerprint, adapter)
        return adapter

    async def close(self) -> None:
        for _, adapter in self._adapters.values():
            await adapter.close()
        self._adapters.clear()
        self._directories.clear()
        if self._session is not None:
            await self._session.close()
