"""Build the adapter for a channel row, sharing one HTTP session across channels."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from wahub.domain.errors import ValidationError
from wahub.providers.base import Provider
from wahub.providers.cloudapi import CloudApiProvider


class ProviderRegistry:
    """One adapter per channel, created on first use. ``close`` closes the shared session."""

    def __init__(self, *, timeout_s: float = 15.0, connection_limit: int = 256) -> None:
        self._timeout_s = timeout_s
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self._adapters: dict[str, tuple[tuple[Any, ...], Provider]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda obj: orjson.dumps(obj).decode()
            )
        return self._session

    def for_channel(self, channel: dict[str, Any]) -> Provider:
        # Rebuild the adapter when the channel's connection settings changed.
        fingerprint = (
            channel["kind"],
            channel["base_url"],
            channel["api_version"],
            channel["phone_number_id"],
            channel["credentials"].get("access_token"),
        )
        cached = self._adapters.get(channel["id"])
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if channel["kind"] != "cloudapi":
            raise ValidationError(f"channel kind {channel['kind']!r} cannot send yet")
        adapter = CloudApiProvider(
            phone_number_id=channel["phone_number_id"],
            access_token=channel["credentials"].get("access_token", ""),
            session=self._http(),
            base_url=channel["base_url"],
            api_version=channel["api_version"],
            timeout_s=self._timeout_s,
        )
        self._adapters[channel["id"]] = (fingerprint, adapter)
        return adapter

    async def close(self) -> None:
        for _, adapter in self._adapters.values():
            await adapter.close()
        self._adapters.clear()
        if self._session is not None:
            await self._session.close()
