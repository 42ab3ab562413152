"""The Periskope adapter: its chat directory (PROVIDERS.md 3.1, 3.2).

``PeriskopeChatDirectory`` implements ``base.ChatDirectory`` for one Periskope phone:
``GET /chats?offset=&limit=`` and ``GET /chats/{chat_id}``. Every request carries
``Authorization: Bearer <API key>`` and ``x-phone: <org phone digits>`` (the header picks
which of the organisation's connected phones answers).

Its HTTP goes through ``http.ProviderHttp`` like the other adapters': a shared
``aiohttp`` session owned by the caller, one time budget per call, and every failure
turned into a wahub error whose class says what the caller may do next. Periskope
documents no error body or code table, so the HTTP status decides: 408, 425, 429 and 5xx
(and timeouts, resets, unreadable answers) are retryable, 404 on a single chat is
``NotFound``, everything else is permanent.

Periskope ids are whatsapp-web.js style (``919876543210@c.us`` for people,
``120363...@g.us`` for groups); ours are canonical (``<digits>@s.whatsapp.net``), so ids
are translated both ways here and nowhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from wahub.domain.errors import (
    PermanentProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.domain.phones import GROUP_SUFFIX, PERSON_SUFFIX, canonical_chat_id
from wahub.providers.base import ChatInfo, ChatPage, check_page
from wahub.providers.http import SNIPPET_CHARS, ProviderHttp, retry_after, retryable_status

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PAGE_SIZE",
    "PeriskopeChatDirectory",
    "classify_error",
    "parse_chat",
    "periskope_chat_id",
]

DEFAULT_BASE_URL: Final = "https://api.periskope.app/v1"

# GET /chats: limit defaults to 1000 and may be at most 2000 (PROVIDERS.md 3.2).
MAX_PAGE_SIZE: Final = 2000

PERISKOPE_PERSON_SUFFIX: Final = "@c.us"

# chat_type values for a group; "user", "business", "individual" and "chat" are people.
_GROUP_TYPES: Final = frozenset({"group"})


class PeriskopeChatDirectory:
    """Reads the chat directory of one Periskope phone.

    ``org_phone`` is the phone the requests act for, in any common spelling (``+91 98765
    12340``); it is sent as digits in ``x-phone``. The ``aiohttp.ClientSession`` belongs to
    the caller. ``timeout_s`` bounds one call from start to the last byte of the answer.
    """

    def __init__(
        self,
        *,
        api_key: str,
        org_phone: str,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 15.0,
        default_region: str | None = None,
    ) -> None:
        """Raises ``ValueError`` for an empty key, an org phone without digits, a base URL
        that is not an absolute http(s) URL or a non-positive timeout: configuration
        mistakes that would otherwise fail every call."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        digits = re.sub(r"\D", "", org_phone or "")
        if not digits:
            raise ValueError(f"org_phone has no digits: {org_phone!r}")
        self._http = ProviderHttp(
            "Periskope",
            session,
            base_url,
            token=api_key,
            timeout_s=timeout_s,
            headers={"x-phone": digits},
        )
        self._org_phone = digits
        self._region = default_region

    def __repr__(self) -> str:
        # Spelled out so the API key can never end up in a log line.
        return (
            f"PeriskopeChatDirectory(base_url={self._http.base_url!r}, "
            f"org_phone={self._org_phone!r})"
        )

    @property
    def org_phone(self) -> str:
        """The org phone as digits (the ``x-phone`` header)."""
        return self._org_phone

    async def get_chat(self, chat_id: str) -> ChatInfo:
        """The chat ``chat_id`` (canonical, ``@c.us`` or a bare phone all work).

        Raises ``NotFound`` when Periskope does not know the chat (404),
        ``ValidationError`` for an id that is neither a phone nor a group id,
        ``RetryableProviderError`` for 429/5xx/timeouts/unreadable answers and
        ``PermanentProviderError`` for other refusals (401, 403, 400).
        """
        provider_id = periskope_chat_id(chat_id, default_region=self._region)
        return await self._http.get_json(
            f"/chats/{quote(provider_id, safe='@.')}",
            what="GET /chats/{chat_id}",
            classify=classify_error,
            parse=partial(parse_chat, default_region=self._region),
            not_found=f"Periskope has no chat {provider_id}",
        )

    async def list_chats(self, *, offset: int = 0, limit: int = 100) -> ChatPage:
        """One page of the directory (``GET /chats?offset=&limit=``).

        Periskope answers ``{chats, count, from, to}`` and no grand total, so ``total`` is
        ``count`` when it says more than this page holds, otherwise ``None`` when the page
        came back full (there may be more) and ``offset + len(chats)`` when it did not
        (the end). Entries without a usable chat id are skipped, not fatal.

        Raises ``ValidationError`` for a limit outside 1..2000 or a negative offset;
        otherwise as ``get_chat``.
        """
        check_page(offset, limit, size_field="limit", max_size=MAX_PAGE_SIZE)
        return await self._http.get_json(
            "/chats",
            params={"offset": str(offset), "limit": str(limit)},
            what="GET /chats",
            classify=classify_error,
            parse=partial(_chat_page, offset=offset, limit=limit, default_region=self._region),
        )

    async def close(self) -> None:
        """Release what the adapter owns: nothing, the session is the caller's."""


def periskope_chat_id(chat_id: str, *, default_region: str | None = None) -> str:
    """Our chat id (or a phone, or a Periskope id) as Periskope spells it:
    ``<digits>@c.us`` for people, the JID for groups. Raises ``ValidationError``."""
    canonical = canonical_chat_id(chat_id, default_region=default_region, field="chat_id")
    if canonical.endswith(GROUP_SUFFIX):
        return canonical
    return canonical.removesuffix(PERSON_SUFFIX) + PERISKOPE_PERSON_SUFFIX


def parse_chat(raw: Any, *, default_region: str | None = None) -> ChatInfo:
    """A ``ChatInfo`` from a Periskope Chat object; raises ``ValueError`` when it has no
    usable ``chat_id``. The kind follows the id (``@g.us`` is a group) and, failing that,
    ``chat_type``; a blank ``chat_name`` is ``None``."""
    if not isinstance(raw, dict):
        raise ValueError("a chat must be a JSON object")
    provider_id = raw.get("chat_id")
    if not isinstance(provider_id, str) or not provider_id.strip():
        raise ValueError("chat_id missing")
    try:
        chat_id = canonical_chat_id(provider_id, default_region=default_region, field="chat_id")
    except ValidationError as exc:
        raise ValueError(exc.message) from exc
    is_group = chat_id.endswith(GROUP_SUFFIX) or raw.get("chat_type") in _GROUP_TYPES
    name = raw.get("chat_name")
    clean = name.strip() if isinstance(name, str) else ""
    return ChatInfo(chat_id=chat_id, name=clean or None, kind="group" if is_group else "person")


def _chat_page(payload: Any, *, offset: int, limit: int, default_region: str | None) -> ChatPage:
    """The ``ChatPage`` of a ``GET /chats`` answer; ``ValueError`` when it has no
    ``chats`` list. See ``PeriskopeChatDirectory.list_chats`` for ``total``."""
    raw_chats = payload.get("chats") if isinstance(payload, dict) else None
    if not isinstance(raw_chats, list):
        raise ValueError("a page of chats must be an object with a chats list")
    chats: list[ChatInfo] = []
    for raw in raw_chats:
        try:
            chats.append(parse_chat(raw, default_region=default_region))
        except ValueError:
            continue
    count = payload.get("count")
    returned = len(raw_chats)
    total: int | None
    if isinstance(count, int) and not isinstance(count, bool) and count > offset + returned:
        total = count
    elif returned >= limit:
        total = None
    else:
        total = offset + returned
    return ChatPage(chats=tuple(chats), total=total, offset=offset)


def classify_error(
    status: int,
    body: bytes | None,
    headers: Mapping[str, str] | None = None,
    *,
    what: str = "request",
) -> RetryableProviderError | PermanentProviderError:
    """The error for a non-2xx answer: 408/425/429/5xx retryable (with ``retry_after``
    from ``Retry-After``), anything else permanent."""
    detail = _describe_body(body)
    message = f"Periskope {what} answered HTTP {status}" + (f": {detail}" if detail else "")
    # 425 Too Early: the server would not risk acting on a request that may be replayed.
    if status == 425 or retryable_status(status):
        return RetryableProviderError(message, http_status=status, retry_after=retry_after(headers))
    return PermanentProviderError(message, http_status=status)


def _describe_body(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:SNIPPET_CHARS].decode("utf-8", errors="replace")
    if isinstance(payload, dict):
        for key in ("message", "error", "detail"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:SNIPPET_CHARS]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])[:SNIPPET_CHARS]
    return json.dumps(payload)[:SNIPPET_CHARS]
