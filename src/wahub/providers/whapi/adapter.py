"""The Whapi.Cloud adapter: text sends and the group directory (PROVIDERS.md 2).

``WhapiProvider`` implements the send port (``base.Provider``) and the group directory
port (``base.GroupDirectory``) for one WHAPI channel (one linked WhatsApp number, one
token). Its HTTP goes through ``http.ProviderHttp`` like the other adapters': a shared
``aiohttp`` session owned by the caller, one time budget per call, and every failure
turned into a wahub ``ProviderError`` whose class says what the caller may do next.

WHAPI facts this module relies on, and what it assumes where the docs are silent:

- Auth is ``Authorization: Bearer <channel token>``.
- Errors are ``{"error": {"code", "message", "details"?, "href"?, "support"?}}``. WHAPI
  publishes no retryable flag and no per-code table, so the HTTP status decides: 429 and
  5xx (and 408) are retryable, everything else is permanent. The ``Retry-After`` header
  is honoured when present (its use by WHAPI is unconfirmed).
- ``participants[].id`` is documented as bare phone digits; linked ids (``…@lid``) and
  ``…@s.whatsapp.net`` / ``…@c.us`` forms are accepted too, since WhatsApp started hiding
  numbers in groups and whether WHAPI passes that through is unconfirmed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from wahub.domain.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderOutcomeUnknown,
    ValidationError,
)
from wahub.providers.base import (
    GroupInfo,
    GroupPage,
    GroupParticipant,
    OutboundMessage,
    SendResult,
    check_page,
)
from wahub.providers.http import (
    ProviderHttp,
    describe_body,
    error_code,
    error_for_status,
    error_object,
    first_text,
    retry_after,
    snippet,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "GROUP_ID_PATTERN",
    "MAX_PAGE_SIZE",
    "WhapiProvider",
    "build_text_body",
    "classify_error",
    "own_number_in",
    "parse_group",
    "parse_participant",
]

DEFAULT_BASE_URL: Final = "https://gate.whapi.cloud"

# GET /groups: count is 1..500 (OpenAPI ``count`` parameter).
MAX_PAGE_SIZE: Final = 500

# The OpenAPI GroupID pattern; GET /groups/{GroupID} refuses anything else with 400.
GROUP_ID_PATTERN: Final = re.compile(r"^[\d-]{10,31}@g\.us$")

GROUP_SUFFIX: Final = "@g.us"
LID_SUFFIX: Final = "@lid"
_PHONE_SUFFIXES: Final = ("@s.whatsapp.net", "@c.us")
RANKS: Final = frozenset({"creator", "admin", "member"})
# Baileys and WhatsApp Web call the creator "superadmin"; accept that spelling too.
_RANK_ALIASES: Final = {"superadmin": "creator", "owner": "creator"}

# E.164 allows at most 15 digits; the OpenAPI ContactID pattern says 7..15.
_MIN_PHONE_DIGITS: Final = 7
_MAX_PHONE_DIGITS: Final = 15


class WhapiProvider:
    """Sends text and reads groups through one WHAPI channel.

    ``own_phone`` is the channel's own number (any common spelling: ``+49 151 ...``,
    digits); when known, a group whose participants do not include it is reported with
    ``we_are_member=False``. The ``aiohttp.ClientSession`` belongs to the caller, who
    shares it between providers and closes it. ``timeout_s`` bounds one call from start
    to the last byte of the answer; at most half of it goes to getting a connection.
    """

    def __init__(
        self,
        *,
        token: str,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        own_phone: str | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        """Raises ``ValueError`` for an empty token, a base URL that is not an absolute
        http(s) URL, an own phone without digits, or a non-positive timeout:
        configuration mistakes that would otherwise fail every call."""
        if not token:
            raise ValueError("token must not be empty")
        self._http = ProviderHttp("WHAPI", session, base_url, token=token, timeout_s=timeout_s)
        own_digits: str | None = None
        if own_phone is not None and own_phone.strip():
            own_digits = re.sub(r"\D", "", own_phone)
            if not own_digits:
                raise ValueError(f"own_phone has no digits: {own_phone!r}")
        self._own_digits = own_digits

    def __repr__(self) -> str:
        # Spelled out so the token can never end up in a log line.
        return f"WhapiProvider(base_url={self.base_url!r}, own_phone={self.own_phone!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def own_phone(self) -> str | None:
        """The channel's own number as E.164 (``+15550009999``), when configured."""
        return None if self._own_digits is None else "+" + self._own_digits

    # -- sending -------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST a text message to ``/messages/text``; the accepted message's id.

        Raises:
            PermanentProviderError: WHAPI refused the message (400, 401, 402 trial limit,
                403 recipient or group forbidden, 413), or the content is not text (see
                ``build_text_body``).
            RetryableProviderError: WHAPI answered 429 (``retry_after`` from the
                Retry-After header) or 5xx, or the request provably never left:
                connection refused, DNS or TLS failure, no connection in time.
            ProviderOutcomeUnknown: the request may have reached WHAPI but no usable
                answer came back (timeout or reset after sending, a 2xx without a
                message id or with ``sent: false``). Resending at once could duplicate.
        """
        body = build_text_body(message)
        return await self._http.send(
            "/messages/text", body, classify=classify_error, accepted=_parse_sent_message
        )

    # -- group directory -----------------------------------------------------------------

    async def check(self) -> None:
        """One group listed (``GET /groups?count=1``): WHAPI answers it only for the
        channel's token. Raises like ``list_groups``."""
        await self.list_groups(count=1)

    async def list_groups(self, *, offset: int = 0, count: int = 100) -> GroupPage:
        """One page of the channel's groups (``GET /groups?count=&offset=``).

        ``total`` is WHAPI's total; when an answer lacks it, the page claims one more
        group exactly when it came back full, so a caller paging until ``offset >= total``
        still reaches the end. Entries without a usable group id are skipped.

        Raises ``ValidationError`` for a count outside 1..500 or a negative offset,
        ``RetryableProviderError`` for 429, 5xx, timeouts, connection failures and
        unreadable answers, ``PermanentProviderError`` for other refusals (401, 403...).
        """
        check_page(offset, count, size_field="count", max_size=MAX_PAGE_SIZE)
        return await self._http.get_json(
            "/groups",
            params={"count": str(count), "offset": str(offset)},
            what="GET /groups",
            classify=classify_error,
            parse=partial(_group_page, offset=offset, count=count, own_phone=self._own_digits),
        )

    async def get_group(self, chat_id: str) -> GroupInfo:
        """The group ``chat_id`` (``120363...@g.us``; a bare id gets ``@g.us`` added)
        with its participants (``GET /groups/{GroupID}``).

        Raises ``NotFound`` when WHAPI does not know the group (404), and otherwise as
        ``list_groups``; an id WHAPI finds malformed is its 400, a permanent error.
        """
        group_id = chat_id.strip()
        if "@" not in group_id:
            group_id += GROUP_SUFFIX
        return await self._http.get_json(
            f"/groups/{quote(group_id, safe='@')}",
            what="GET /groups/{GroupID}",
            classify=classify_error,
            parse=partial(parse_group, own_phone=self._own_digits),
            not_found=f"WHAPI has no group {group_id}",
        )

    async def lids_for(self, phones: Sequence[str]) -> dict[str, str]:
        """The linked ids (``…@lid``) of ``phones`` (``GET /contacts/lids``).

        Maps each phone as given to its LID; phones WHAPI does not answer for are left
        out. Lets a caller match a phone against group members WHAPI shows only by LID.
        Each phone may be spelt in any common way (``+49 151 ...``); ones without 7..15
        digits raise ``ValidationError`` before any request. Errors as ``list_groups``.
        """
        by_digits: dict[str, str] = {}
        for phone in phones:
            digits = re.sub(r"\D", "", phone)
            if not _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS:
                raise ValidationError(
                    f"{phone!r} is not a phone number", details={"field": "phones"}
                )
            by_digits.setdefault(digits, phone)
        if not by_digits:
            return {}
        return await self._http.get_json(
            "/contacts/lids",
            params={"ContactIDList": ",".join(by_digits)},
            what="GET /contacts/lids",
            classify=classify_error,
            parse=partial(_lids, by_digits=by_digits),
        )

    async def close(self) -> None:
        """Release what the provider owns: nothing, the session is the caller's."""


def build_text_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of ``POST /messages/text`` for ``message``.

    ``message.content`` is stored in Cloud API shape; only ``text`` is sent through
    WHAPI (other types raise ``PermanentProviderError``: every attempt would fail the
    same way). ``to`` is the recipient without a leading ``+`` (phone digits or the group
    JID, both of which WHAPI accepts); ``reply_to`` becomes ``quoted``; a text stored with
    ``preview_url`` false (the Cloud API default) is sent with ``no_link_preview``.
    """
    content = message.content
    message_type = content.get("type")
    if message_type != "text":
        raise PermanentProviderError(
            f"message content type {message_type!r} cannot be sent through a WHAPI channel "
            f"(only text is supported)",
            details={"field": "content.type"},
        )
    text = content.get("text")
    body_text = text.get("body") if isinstance(text, dict) else None
    if not isinstance(body_text, str) or not body_text:
        raise PermanentProviderError(
            "text message has no text.body", details={"field": "content.text.body"}
        )
    body: dict[str, Any] = {"to": message.recipient.removeprefix("+"), "body": body_text}
    if message.reply_to:
        body["quoted"] = message.reply_to
    if isinstance(text, dict) and not text.get("preview_url", False):
        body["no_link_preview"] = True
    return body


def parse_participant(raw: Any) -> GroupParticipant | None:
    """A ``Participant`` (``{id, rank}``) as our ``GroupParticipant``, or ``None`` when
    its id is neither a phone nor a linked id.

    ``…@lid`` gives ``lid``; bare digits, ``+digits``, ``…@s.whatsapp.net`` and ``…@c.us``
    give ``phone`` as E.164 when they hold 7..15 digits (a device suffix ``:12`` is
    dropped). An unknown or missing rank counts as ``member``.
    """
    if not isinstance(raw, dict):
        return None
    ident = raw.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(ident, str):
        return None
    rank = _rank(raw.get("rank"))
    text = ident.strip()
    if text.endswith(LID_SUFFIX):
        local = text[: -len(LID_SUFFIX)].split(":", 1)[0]
        if local.isascii() and local.isdigit():
            return GroupParticipant(phone=None, lid=local + LID_SUFFIX, rank=rank)
        return None
    for suffix in _PHONE_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)].split(":", 1)[0]
            break
    text = text.removeprefix("+")
    if text.isascii() and text.isdigit() and _MIN_PHONE_DIGITS <= len(text) <= _MAX_PHONE_DIGITS:
        return GroupParticipant(phone="+" + text, lid=None, rank=rank)
    return None


def parse_group(raw: Any, *, own_phone: str | None = None) -> GroupInfo:
    """A WHAPI ``Group`` object as our ``GroupInfo``.

    ``own_phone`` (digits, or E.164) decides ``we_are_member``: ``False`` when it is
    known and not among the participants' phones, else ``True``. Participants whose id
    is unusable are dropped; a repeated id keeps its first occurrence. An empty name is
    ``None``. Raises ``ValueError`` when ``raw`` is not a group object with a
    ``…@g.us`` id.
    """
    if not isinstance(raw, dict):
        raise ValueError("a group must be a JSON object")
    chat_id = raw.get("id")
    if not isinstance(chat_id, str) or not chat_id.endswith(GROUP_SUFFIX):
        raise ValueError(f"group id {chat_id!r} is not a …@g.us id")
    name = raw.get("name")
    participants = _participants(raw.get("participants"))
    return GroupInfo(
        chat_id=chat_id,
        name=(name.strip() or None) if isinstance(name, str) else None,
        participants=participants,
        we_are_member=own_number_in(participants, own_phone) if own_phone else True,
    )


def classify_error(
    http_status: int,
    body: bytes | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    what: str = "call",
    now: float | None = None,
) -> ProviderError:
    """The provider error a failed WHAPI call stands for. Never raises.

    By HTTP status (WHAPI has no retryable flag): 429, 408 and 5xx are
    ``RetryableProviderError``, with ``retry_after`` from a ``Retry-After`` header;
    everything else is ``PermanentProviderError``. ``provider_code`` is ``error.code``
    and ``details`` carries ``error.details``, ``href`` and ``support`` when the body is a
    WHAPI error object; other bodies (an HTML page from a proxy) are quoted briefly.
    """
    error = error_object(body)
    details: dict[str, Any] = {}
    code: int | str | None = None
    if error is None:
        text = f"HTTP {http_status} {describe_body(body)}"
    else:
        code = error_code(error.get("code"))
        text = first_text(error, "message") or f"HTTP {http_status}"
        extra = first_text(error, "details")
        if extra and extra != text:
            text += f" ({extra})"
        for key in ("details", "href", "support"):
            if error.get(key) is not None:
                details[key] = error[key]
    message = f"WHAPI {what} refused with HTTP {http_status}: {text}"
    hint = _HINTS.get(http_status)
    if hint:
        message += f". {hint}"
    return error_for_status(
        http_status,
        message,
        code=code,
        retry_after=retry_after(headers, now=now),
        details=details or None,
    )


# What to do next, for the statuses WHAPI documents with a specific meaning.
_HINTS: Final = {
    401: "The channel token is wrong, or the channel's phone is not linked: check both",
    402: "The WHAPI trial limit is reached: upgrade the channel",
    403: "WHAPI forbids this recipient or group (e.g. our number is not a participant)",
}


def _parse_sent_message(status: int, raw: bytes) -> SendResult:
    """``SendResult`` from ``{"sent": true, "message": {"id", "chat_id", ...}}``.

    Without a message id, or with ``sent`` false, we cannot tell whether WHAPI will
    deliver the message, so it is ``ProviderOutcomeUnknown`` rather than a retry.
    """
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = None
    message = payload.get("message") if isinstance(payload, dict) else None
    message_id = message.get("id") if isinstance(message, dict) else None
    if (
        not isinstance(payload, dict)
        or payload.get("sent") is False
        or not isinstance(message_id, str)
        or not message_id
    ):
        raise ProviderOutcomeUnknown(
            f"WHAPI answered HTTP {status} without a sent message id: "
            f"{snippet(raw.decode('utf-8', errors='replace'))}",
            http_status=status,
        )
    assert isinstance(message, dict)  # implied by message_id being a string
    chat_id = message.get("chat_id")
    wa_id: str | None = None
    # Only people have a wa_id (digits); a group's JID is already our chat id.
    if isinstance(chat_id, str) and chat_id.endswith("@s.whatsapp.net"):
        wa_id = chat_id[: -len("@s.whatsapp.net")] or None
    return SendResult(provider_message_id=message_id, wa_id=wa_id)


def _group_page(payload: Any, *, offset: int, count: int, own_phone: str | None) -> GroupPage:
    """The ``GroupPage`` of a ``GET /groups`` answer; ``ValueError`` when it has no
    ``groups`` list. See ``WhapiProvider.list_groups`` for ``total``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("groups", []), list):
        raise ValueError("a page of groups must be an object with a groups list")
    groups: list[GroupInfo] = []
    for raw_group in payload.get("groups", []):
        try:
            groups.append(parse_group(raw_group, own_phone=own_phone))
        except ValueError:
            continue
    total = _non_negative_int(payload.get("total"))
    if total is None:
        returned = len(payload.get("groups", []))
        total = offset + returned + (1 if returned >= count else 0)
    page_offset = _non_negative_int(payload.get("offset"))
    return GroupPage(
        groups=tuple(groups),
        total=total,
        offset=offset if page_offset is None else page_offset,
    )


def _lids(payload: Any, *, by_digits: Mapping[str, str]) -> dict[str, str]:
    """The phones of ``by_digits`` (digits -> phone as asked) that a ``GET /contacts/lids``
    answer has a LID for, mapped to it; ``ValueError`` when the answer is not an object."""
    if not isinstance(payload, dict):
        raise ValueError("the lids answer must be an object")
    found: dict[str, str] = {}
    for key, value in payload.items():
        lid = value.get("lid") if isinstance(value, dict) else None
        asked = by_digits.get(re.sub(r"\D", "", str(key)))
        if asked is not None and isinstance(lid, str) and lid:
            found[asked] = lid if lid.endswith(LID_SUFFIX) else lid + LID_SUFFIX
    return found


def _participants(raw: Any) -> tuple[GroupParticipant, ...]:
    if not isinstance(raw, list):
        return ()
    seen: set[str] = set()
    result: list[GroupParticipant] = []
    for item in raw:
        participant = parse_participant(item)
        if participant is None:
            continue
        key = participant.phone or participant.lid or ""
        if key in seen:
            continue
        seen.add(key)
        result.append(participant)
    return tuple(result)


def _rank(raw: Any) -> str:
    if not isinstance(raw, str):
        return "member"
    rank = raw.strip().lower()
    rank = _RANK_ALIASES.get(rank, rank)
    return rank if rank in RANKS else "member"


def _non_negative_int(raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return int(raw) if raw >= 0 else None


def own_number_in(participants: Iterable[GroupParticipant], own_phone: str) -> bool:
    """Whether ``own_phone`` (any spelling) is among ``participants``' phones."""
    own = "+" + re.sub(r"\D", "", own_phone)
    return any(p.phone == own for p in participants)
