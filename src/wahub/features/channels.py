"""Channels (provider connections), their templates, and registered chats."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from wahub.domain.errors import NotFound, ValidationError
from wahub.domain.ids import new_id
from wahub.domain.phones import GROUP_SUFFIX, canonical_chat_id, normalize_phone
from wahub.store import channels as q
from wahub.store.database import Database

SECRET_FIELDS = ("credentials", "lease_owner")

META_HOSTS = frozenset({"graph.facebook.com", "graph.facebook.net"})

KINDS = ("cloudapi", "whapi", "periskope")
DEFAULT_BASE_URLS = {
    "cloudapi": "https://graph.facebook.com",
    "whapi": "https://gate.whapi.cloud",
    "periskope": "https://api.periskope.app/v1",
}
# The credentials key each kind's adapter reads its secret from.
_CREDENTIAL_KEYS = {"cloudapi": "access_token", "whapi": "token", "periskope": "api_key"}


def public_channel(row: dict[str, Any]) -> dict[str, Any]:
    """A channel as the API shows it: never its credentials."""
    return {k: v for k, v in row.items() if k not in SECRET_FIELDS}


class Channels:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        name: str,
        access_token: str,
        phone_number_id: str | None = None,
        base_url: str | None = None,
        api_version: str = "21.0",
        phone_number: str | None = None,
        rate_per_second: float = 80.0,
        pair_burst: int = 45,
        pair_interval_seconds: float = 6.0,
        kind: str = "cloudapi",
        channel_id: str | None = None,
        enforce_service_window: bool | None = None,
    ) -> dict[str, Any]:
        """Add a provider connection. Raises ValidationError on bad values.

        ``kind`` is ``cloudapi`` (``phone_number_id`` required, ``access_token`` is the
        Graph API token) or ``whapi`` (``access_token`` is the WHAPI channel token;
        ``phone_number``, the channel's own number, is stored as E.164 and tells groups
        we left from groups we are in; ``phone_number_id`` is optional) or ``periskope``
        (``access_token`` is the organisation's API key; ``phone_number``, required, is the
        org phone sent as ``x-phone``; used for chat names, not for sending). ``base_url``
        defaults to the provider's public API.
        """
        if kind not in KINDS:
            raise ValidationError(
                f"kind: must be one of {', '.join(KINDS)} (got {kind!r})",
                details={"field": "kind"},
            )
        if kind == "cloudapi" and not (phone_number_id or "").strip():
            raise ValidationError(
                "phone_number_id must not be empty", details={"field": "phone_number_id"}
            )
        if kind in ("whapi", "periskope"):
            if not access_token.strip():
                raise ValidationError(
                    f"access_token: a {kind} channel needs its "
                    f"{'token' if kind == 'whapi' else 'API key'}",
                    details={"field": "access_token"},
                )
            if kind == "periskope" and not (phone_number or "").strip():
                raise ValidationError(
                    "phone_number: a periskope channel needs its org phone (x-phone)",
                    details={"field": "phone_number"},
                )
            if phone_number is not None:
                phone_number = normalize_phone(phone_number, field="phone_number")
        base_url = base_url or DEFAULT_BASE_URLS[kind]
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError("base_url must be an http(s) URL", details={"field": "base_url"})
        if rate_per_second <= 0:
            raise ValidationError(
                "rate_per_second must be positive", details={"field": "rate_per_second"}
            )
        row = {
            "id": channel_id or new_id("ch"),
            "kind": kind,
            "name": name,
            "phone_number": phone_number,
            "phone_number_id": phone_number_id or None,
            "base_url": base_url.rstrip("/"),
            "api_version": api_version,
            "credentials": {_CREDENTIAL_KEYS[kind]: access_token},
            "rate_per_second": rate_per_second,
            "pair_burst": pair_burst,
            "pair_interval_seconds": pair_interval_seconds,
            "status": "connected",
            # Meta refuses free-form messages outside the 24-hour window; a Cloud API
            # look-alike elsewhere (the sandbox, a test double) does not, so by default
            # only channels talking to Meta get the rule.
            "enforce_service_window": (
                urlsplit(base_url).hostname in META_HOSTS
                if enforce_service_window is None
                else enforce_service_window
            ),
            "created_at": time.time(),
        }
        async with self.db.transaction() as conn:
            await q.insert_channel(conn, row)
        return public_channel(row)

    async def set_base_url(self, channel_id: str, base_url: str) -> None:
        """Point a channel at another API base URL (the sandbox of the current run).

        Raises ValidationError for a URL that is not http(s), NotFound for no channel.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError("base_url must be an http(s) URL", details={"field": "base_url"})
        async with self.db.transaction() as conn:
            if await q.get_channel(conn, channel_id) is None:
                raise NotFound(f"no channel {channel_id!r}")
            await q.set_channel_base_url(conn, channel_id, base_url.rstrip("/"))

    async def list_all(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [public_channel(c) for c in await q.list_channels(conn)]

    async def add_template(
        self, channel_id: str, *, name: str, language: str, body_parameters: int, category: str
    ) -> dict[str, Any]:
        if body_parameters < 0:
            raise ValidationError(
                "body_parameters must be >= 0", details={"field": "body_parameters"}
            )
        row = {
            "channel_id": channel_id,
            "name": name,
            "language": language,
            "body_parameters": body_parameters,
            "category": category,
            "created_at": time.time(),
        }
        async with self.db.transaction() as conn:
            if await q.get_channel(conn, channel_id) is None:
                raise NotFound(f"no channel {channel_id}")
            await q.upsert_template(conn, row)
        return row

    async def list_templates(self, channel_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            if await q.get_channel(conn, channel_id) is None:
                raise NotFound(f"no channel {channel_id}")
            return await q.list_templates(conn, channel_id)

    async def register_group(
        self, *, chat_id: str, name: str | None, channel_id: str | None, readonly: bool = False
    ) -> dict[str, Any]:
        """Register a WhatsApp group by its JID so it can be assigned and sent to."""
        if not chat_id.endswith(GROUP_SUFFIX):
            raise ValidationError(
                "chat_id: a group id ends with @g.us", details={"field": "chat_id"}
            )
        canonical = canonical_chat_id(chat_id, field="chat_id")
        now = time.time()
        row = {
            "chat_id": canonical,
            "kind": "group",
            "channel_id": channel_id,
            "name": name,
            "name_source": "api" if name else None,
            "name_updated_at": now if name else None,
            "readonly": readonly,
            "created_at": now,
        }
        async with self.db.transaction() as conn:
            if channel_id is not None and await q.get_channel(conn, channel_id) is None:
                raise ValidationError(
                    f"channel_id: unknown channel {channel_id!r}", details={"field": "channel_id"}
                )
            await q.upsert_group_chat(conn, row)
            stored = await q.get_chat(conn, canonical)
        assert stored is not None
        return stored

    async def list_chats(self, chat_ids: list[str] | None = None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.list_chats(conn, chat_ids)
