"""The sandbox's fake Whapi.Cloud channel, mounted under ``/whapi`` (PROVIDERS.md 2).

A sandbox WHAPI channel's base URL is ``http://127.0.0.1:PORT/whapi``. Routes:

- ``GET /whapi/groups?count=&offset=``: a ``GroupsList`` page (count 1..500, default
  100; offset >= 0). 400 for bad parameters.
- ``GET /whapi/groups/{GroupID}``: one ``Group``. 400 when the id does not match
  ``^[\\d-]{10,31}@g\\.us$``, 404 when the directory has no such group.
- ``POST /whapi/messages/text``: ``{to, body, quoted?, ...}`` -> ``{sent, message}``.
  Accepted sends are recorded in the sandbox's send log (``GET /_sandbox/sends``, with
  ``provider: "whapi"``). A group recipient must be a group whose participants include
  the channel's own number, else 403. No status webhooks are emitted for WHAPI sends.
- ``GET /whapi/contacts/lids?ContactIDList=a,b`` and ``GET /whapi/contacts/lids/{id}``:
  the linked id of each phone (``whapi_directory.lid_for``), as ``{id: {lid}}`` and
  ``{lid}`` (the OpenAPI ``Lids`` map and ``Lid`` object).

Every ``/whapi`` request needs the channel token (``SandboxConfig.whapi_token``), meets
``whapi_latency_ms`` and the ``whapi_rate_limit`` window, in that order; errors use
WHAPI's shape ``{"error": {"code", "message", "details"}}`` with ``code`` equal to the
HTTP status (the code values are unconfirmed for the real WHAPI).

Control routes (no token, no limits): ``GET /_sandbox/whapi/groups`` (the directory),
``POST /_sandbox/whapi/groups`` (a JSON list of groups replaces it; see
``whapi_directory.check_groups``) and ``GET /_sandbox/whapi/stats``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.state import SendRecord
from wahub.providers.sandbox.whapi_directory import (
    GROUP_ID_RE,
    check_groups,
    default_directory,
    is_participant,
    lid_for,
)

PREFIX: Final = "/whapi"
JSON: Final = "application/json"
MAX_PAGE_SIZE: Final = 500
DEFAULT_PAGE_SIZE: Final = 100

# Route names as counted in stats()["calls"].
LIST_GROUPS: Final = "GET /groups"
GET_GROUP: Final = "GET /groups/{GroupID}"
SEND_TEXT: Final = "POST /messages/text"
GET_LIDS: Final = "GET /contacts/lids"
GET_LID: Final = "GET /contacts/lids/{ContactID}"
ROUTES: Final = (LIST_GROUPS, GET_GROUP, SEND_TEXT, GET_LIDS, GET_LID)

# OpenAPI patterns: the send recipient, and a ContactID (phone digits).
_TO_RE: Final = re.compile(r"^[\d-]{9,31}(@[\w.]+)?$", re.ASCII)
_CONTACT_ID_RE: Final = re.compile(r"^\d{7,15}$", re.ASCII)
_INTEGER_RE: Final = re.compile(r"^\d{1,9}$", re.ASCII)
MAX_TYPING_TIME_S: Final = 60


@dataclass(slots=True)
class WhapiCounters:
    """What ``GET /_sandbox/whapi/stats`` reports. ``calls`` counts every request per
    route, refused or not; ``refused`` counts answers by kind (``unauthorized``,
    ``rate_limited``, ``invalid``, ``not_found``, ``forbidden``, ``server_error``)."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    refused: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def refuse(self, kind: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1


class _Refusal(Exception):
    """Raised by a check; becomes a WHAPI error answer counted under ``kind``."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.details = details
        self.headers = headers


class WhapiSandbox:
    """The fake WHAPI channel: its group directory, counters and rate-limit window.

    ``config`` returns the sandbox's current config (it may be replaced at runtime);
    ``record_send`` adds an accepted send to the sandbox's send log; ``hold`` sleeps the
    latency knob's delay (cut short when the sandbox stops, so stopping stays prompt).
    """

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        record_send: Callable[[SendRecord], None],
        hold: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._record_send = record_send
        self._hold = hold
        self.counters = WhapiCounters()
        self._groups: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self._window_start = 0.0
        self._window_used = 0
        # Unique per instance, so a restarted standalone sandbox never reuses an id.
        self._id_prefix = secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
        self._serial = itertools.count(1)
        self.set_groups(default_directory(config().whapi_own_phone))

    @property
    def groups(self) -> list[dict[str, Any]]:
        """The directory in listing order (the live objects: do not change them)."""
        return self._groups

    def set_groups(self, groups: Any) -> None:
        """Replace the directory with ``groups`` (WHAPI ``Group`` objects); raises
        ``ValueError`` (and changes nothing) when one is malformed."""
        checked = check_groups(groups)
        self._groups = checked
        self._by_id = {group["id"]: group for group in checked}

    def reset(self) -> None:
        """Back to the default directory, zero counters and a fresh rate-limit window."""
        self.counters = WhapiCounters()
        self._window_start = 0.0
        self._window_used = 0
        self.set_groups(default_directory(self._config().whapi_own_phone))

    def stats(self) -> dict[str, Any]:
        counters = self.counters
        return {
            "calls": dict(counters.calls),
            "calls_total": sum(counters.calls.values()),
            "rate_limited": counters.refused.get("rate_limited", 0),
            "refused": dict(counters.refused),
            "sent": counters.sent,
            "groups": len(self._groups),
        }

    def mount(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/groups", self._list_groups)
        app.router.add_get(f"{PREFIX}/groups/{{group_id}}", self._get_group)
        app.router.add_post(f"{PREFIX}/messages/text", self._send_text)
        app.router.add_get(f"{PREFIX}/contacts/lids", self._get_lids)
        app.router.add_get(f"{PREFIX}/contacts/lids/{{contact_id}}", self._get_lid)
        app.router.add_get("/_sandbox/whapi/groups", self._control_get_groups)
        app.router.add_post("/_sandbox/whapi/groups", self._control_set_groups)
        app.router.add_get("/_sandbox/whapi/stats", self._control_stats)

    # -- WHAPI routes --------------------------------------------------------------------

    async def _list_groups(self, request: web.Request) -> web.Response:
        try:
            await self._admit(request, LIST_GROUPS)
            count = _int_param(request, "count", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            offset = _int_param(request, "offset", 0, 0, None)
            if self._config().whapi_fail_list:
                raise _server_error("injected failure (whapi_fail_list)")
        except _Refusal as refusal:
            return self._refuse(refusal)
        return _json(
            {
                "groups": self._groups[offset : offset + count],
                "count": count,
                "total": len(self._groups),
                "offset": offset,
            }
        )

    async def _get_group(self, request: web.Request) -> web.Response:
        group_id = request.match_info["group_id"]
        try:
            await self._admit(request, GET_GROUP)
            if not GROUP_ID_RE.match(group_id):
                raise _invalid(f"GroupID must match {GROUP_ID_RE.pattern}, got {group_id!r}")
            if group_id in self._config().whapi_fail_groups:
                raise _server_error(f"injected failure for {group_id} (whapi_fail_groups)")
            group = self._by_id.get(group_id)
            if group is None:
                raise _Refusal(404, "not_found", "Specified group not found", group_id)
        except _Refusal as refusal:
            return self._refuse(refusal)
        return _json(group)

    async def _send_text(self, request: web.Request) -> web.Response:
        config = self._config()
        try:
            await self._admit(request, SEND_TEXT)
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise _invalid("request body is not valid JSON") from None
            to, text, quoted = _check_text_send(body)
            if to.endswith("@g.us"):
                group = self._by_id.get(to)
                if group is None or not is_participant(group, config.whapi_own_phone):
                    raise _Refusal(
                        403,
                        "forbidden",
                        "Forbidden",
                        f"the channel is not a participant of the group {to}",
                    )
        except _Refusal as refusal:
            return self._refuse(refusal)

        now = time.time()
        message_id = f"{self._id_prefix}-{next(self._serial)}"
        chat_id = to if "@" in to else f"{to}@s.whatsapp.net"
        self._record_send(
            SendRecord(
                wamid=message_id,
                phone_number_id=config.whapi_own_phone,
                to=to,
                wa_id=to if "@" in to else to.replace("-", ""),
                type="text",
                body=body,
                biz_opaque_callback_data=None,
                received_at=now,
                provider="whapi",
            )
        )
        self.counters.sent += 1
        message: dict[str, Any] = {
            "id": message_id,
            "from_me": True,
            "type": "text",
            "chat_id": chat_id,
            "timestamp": int(now),
            "source": "api",
            "status": "pending",
            "text": {"body": text},
            "from": config.whapi_own_phone,
        }
        if quoted is not None:
            message["context"] = {"quoted_id": quoted}
        return _json({"sent": True, "message": message})

    async def _get_lids(self, request: web.Request) -> web.Response:
        try:
            await self._admit(request, GET_LIDS)
            raw = request.query.get("ContactIDList", "")
            ids = [item.strip() for item in raw.split(",") if item.strip()]
            if not ids:
                raise _invalid("ContactIDList is required (comma separated contact ids)")
            for contact_id in ids:
                _check_contact_id(contact_id)
        except _Refusal as refusal:
            return self._refuse(refusal)
        return _json({contact_id: {"lid": lid_for(contact_id)} for contact_id in ids})

    async def _get_lid(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["contact_id"]
        try:
            await self._admit(request, GET_LID)
            _check_contact_id(contact_id)
        except _Refusal as refusal:
            return self._refuse(refusal)
        return _json({"lid": lid_for(contact_id)})

    async def _admit(self, request: web.Request, route: str) -> None:
        """Count the call, then latency, token, rate limit: raises ``_Refusal``."""
        self.counters.calls[route] += 1
        config = self._config()
        if config.whapi_latency_ms:
            await self._hold(config.whapi_latency_ms / 1000)
        token = config.whapi_token
        if token is not None and not _authorized(request, token):
            raise _Refusal(401, "unauthorized", "Unauthorized", "invalid or missing token")
        limit = config.whapi_rate_limit
        if limit is None:
            return
        now = time.monotonic()
        window = config.whapi_rate_window_s
        if now - self._window_start >= window:
            self._window_start = now
            self._window_used = 0
        if self._window_used >= limit:
            retry_after = max(1, math.ceil(self._window_start + window - now))
            raise _Refusal(
                429,
                "rate_limited",
                "Too many requests",
                f"at most {limit} requests per {window:g} s",
                headers={"Retry-After": str(retry_after)},
            )
        self._window_used += 1

    def _refuse(self, refusal: _Refusal) -> web.Response:
        self.counters.refuse(refusal.kind)
        body = {
            "error": {
                "code": refusal.status,
                "message": refusal.message,
                "details": refusal.details,
            }
        }
        return web.Response(
            status=refusal.status,
            body=orjson.dumps(body),
            content_type=JSON,
            headers=refusal.headers,
        )

    # -- control routes ------------------------------------------------------------------

    async def _control_get_groups(self, request: web.Request) -> web.Response:
        return _json({"groups": self._groups, "count": len(self._groups)})

    async def _control_set_groups(self, request: web.Request) -> web.Response:
        try:
            groups = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _control_error("invalid_json", "Request body is not valid JSON")
        try:
            self.set_groups(groups)
        except ValueError as error:
            return _control_error("invalid_groups", str(error))
        return _json({"groups": len(self._groups)})

    async def _control_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())


def _authorized(request: web.Request, token: str) -> bool:
    # Bearer header (bearerAuth) or ?token= (tokenAuth), as WHAPI accepts both.
    header = request.headers.get("Authorization", "")
    presented = header[len("Bearer ") :] if header.startswith("Bearer ") else None
    if presented is None:
        presented = request.query.get("token")
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if _INTEGER_RE.match(raw) else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise _invalid(f"{name} must be an integer {bound}, got {raw!r}")
    return value


def _check_text_send(body: Any) -> tuple[str, str, str | None]:
    """``to``, ``body`` and ``quoted`` of a valid ``SenderText``; raises ``_Refusal``."""
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    to = body.get("to")
    if not isinstance(to, str) or not _TO_RE.match(to):
        raise _invalid(f"to must match {_TO_RE.pattern} (a phone or a chat id), got {to!r}")
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        raise _invalid("body is required and must be a non-empty string")
    quoted = body.get("quoted")
    if quoted is not None and (not isinstance(quoted, str) or not quoted):
        raise _invalid("quoted must be a message id")
    for flag in ("no_link_preview", "wide_link_preview"):
        if flag in body and not isinstance(body[flag], bool):
            raise _invalid(f"{flag} must be a boolean")
    typing_time = body.get("typing_time")
    if typing_time is not None and (
        isinstance(typing_time, bool)
        or not isinstance(typing_time, int | float)
        or not 0 <= typing_time <= MAX_TYPING_TIME_S
    ):
        raise _invalid(f"typing_time must be a number in 0..{MAX_TYPING_TIME_S}")
    return to, text, quoted


def _check_contact_id(contact_id: str) -> None:
    if not _CONTACT_ID_RE.match(contact_id):
        raise _invalid(f"contact id must be 7 to 15 digits, got {contact_id!r}")


def _invalid(details: str) -> _Refusal:
    return _Refusal(400, "invalid", "Wrong request parameters", details)


def _server_error(details: str) -> _Refusal:
    return _Refusal(500, "server_error", "Internal server error", details)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON)


def _control_error(code: str, message: str) -> web.Response:
    # The shape of the sandbox's other control endpoints, not WHAPI's.
    return _json({"error": {"code": code, "message": message}}, status=400)
