"""The sandbox's fake Periskope chat directory, mounted under ``/periskope`` (PROVIDERS.md 3).

A sandbox Periskope channel's base URL is ``http://127.0.0.1:PORT/periskope``. Routes:

- ``GET /periskope/chats?offset=&limit=&chat_type=``: ``{chats, count, from, to}``, the
  directory sorted most recently updated first. ``limit`` 1..2000 (default 1000),
  ``offset`` >= 0, ``chat_type`` one of group, individual, user, business. ``count`` is
  the number of chats matching the filter (the whole directory, not the page).
- ``GET /periskope/chats/{chat_id}``: one Chat; 404 for an id the directory lacks.

Every ``/periskope`` request is counted, then meets ``periskope_latency_ms``, the auth
check (``Authorization: Bearer <periskope_api_key>`` and ``x-phone:
<periskope_org_phone>``, else 401), and the failure knob (``periskope_fail_status`` on a
``periskope_fail_rate`` share of requests; 429 carries ``Retry-After:
<periskope_retry_after_s>``), in that order. Errors are ``{"message", "status"}``
(Periskope's error body is undocumented; adapters must not depend on it).

Control routes (no auth, no knobs): ``GET /_sandbox/periskope/chats`` (the directory),
``POST /_sandbox/periskope/chats`` (a JSON list of Chat objects, or ``{"chats": [...]}``,
replaces it; each needs a ``chat_id`` ending in ``@c.us`` or ``@g.us``) and
``GET /_sandbox/periskope/stats`` (calls per route, so tests count provider calls).

The default directory (``default_chats``) is the same on every run: ``DEFAULT_CHAT_COUNT``
(250) chats, every ``GROUP_EVERY``-th one (index % 5 == 0) a group named
``<topic> <n>``, the others people named ``<first> <last>``; person numbers are valid
Indian mobiles ``+91 98 ...``. ``default_chat_id(i)`` gives the i-th chat's id.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from wahub.providers.sandbox.config import SandboxConfig

PREFIX: Final = "/periskope"
JSON: Final = "application/json"
MAX_PAGE_SIZE: Final = 2000
DEFAULT_PAGE_SIZE: Final = 1000
DEFAULT_CHAT_COUNT: Final = 250
GROUP_EVERY: Final = 5

LIST_CHATS: Final = "GET /chats"
GET_CHAT: Final = "GET /chats/{chat_id}"
ROUTES: Final = (LIST_CHATS, GET_CHAT)

_CHAT_TYPES: Final = {
    "group": frozenset({"group"}),
    "individual": frozenset({"user", "business", "individual", "chat"}),
    "user": frozenset({"user"}),
    "business": frozenset({"business"}),
}

_FIRST: Final = (
    "Aarav", "Diya", "Kabir", "Meera", "Rohan", "Sana", "Vikram", "Anaya", "Ishaan",
    "Priya", "Arjun", "Zara", "Dev", "Nisha", "Kiran", "Leela",
)  # fmt: skip
_LAST: Final = (
    "Sharma", "Iyer", "Khan", "Patel", "Reddy", "Das", "Menon", "Gupta", "Singh", "Nair",
    "Bose",
)  # fmt: skip
_TOPIC: Final = (
    "Marketing Team", "Support Team", "Sales Pod", "Release Crew", "Booking Desk",
    "Tour Planning", "Design Review", "Ops Alerts",
)  # fmt: skip
# 2025-06-01 UTC: the most recent chat was updated then, each next one an hour earlier.
_NEWEST: Final = 1_748_736_000


def default_chat_id(index: int) -> str:
    """The Periskope id of the default directory's ``index``-th chat."""
    if index % GROUP_EVERY == 0:
        return f"120363{100_000_000_000 + index * 7919:012d}@g.us"
    return f"9198{10_000_000 + index * 104_729 % 89_999_999:08d}@c.us"


def default_chats(org_phone: str) -> list[dict[str, Any]]:
    """The default directory as fresh Periskope Chat objects for the org ``org_phone``."""
    return [_chat(index, org_phone) for index in range(DEFAULT_CHAT_COUNT)]


def _chat(index: int, org_phone: str) -> dict[str, Any]:
    chat_id = default_chat_id(index)
    updated = datetime.fromtimestamp(_NEWEST - index * 3600, UTC).isoformat()
    created = datetime.fromtimestamp(_NEWEST - index * 86_400 - 10**7, UTC).isoformat()
    is_group = chat_id.endswith("@g.us")
    if is_group:
        name = f"{_TOPIC[(index // GROUP_EVERY) % len(_TOPIC)]} {index // GROUP_EVERY + 1}"
    else:
        name = f"{_FIRST[index % len(_FIRST)]} {_LAST[(index * 7) % len(_LAST)]}"
    org = f"{org_phone}@c.us"
    return {
        "chat_id": chat_id,
        "chat_name": name,
        "chat_type": "group" if is_group else "user",
        "org_id": "sandbox-org",
        "org_phone": org,
        "chat_org_phones": [org],
        "chat_image": None,
        "created_at": created,
        "updated_at": updated,
        "invite_link": f"https://chat.whatsapp.com/sbx{index:05d}" if is_group else None,
        "group_description": f"Sandbox group {index}" if is_group else None,
        "custom_properties": {},
        "label_ids": {},
        "is_muted": False,
        "is_exited": False,
        "is_archived": False,
        "assigned_to": None,
        "messages_admins_only": False,
        "member_count": 3 + index % 17 if is_group else 2,
        "members": {},
        "latest_message": None,
    }


def check_chats(raw: Any) -> list[dict[str, Any]]:
    """A replacement directory; raises ``ValueError`` naming the first bad chat."""
    if isinstance(raw, dict):
        raw = raw.get("chats")
    if not isinstance(raw, list):
        raise ValueError("body must be a JSON list of chats (or {'chats': [...]})")
    seen: set[str] = set()
    chats: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"chats[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object")
        chat_id = item.get("chat_id")
        if not isinstance(chat_id, str) or not chat_id.endswith(("@c.us", "@g.us")):
            raise ValueError(f"{where}.chat_id must end in @c.us or @g.us, got {chat_id!r}")
        if chat_id in seen:
            raise ValueError(f"{where}.chat_id {chat_id!r} appears twice")
        seen.add(chat_id)
        name = item.get("chat_name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{where}.chat_name must be a string or null")
        chat = dict(item)
        chat.setdefault("chat_type", "group" if chat_id.endswith("@g.us") else "user")
        chats.append(chat)
    return chats


@dataclass(slots=True)
class PeriskopeCounters:
    """``calls`` counts every request per route, refused or not; ``refused`` counts
    answers by kind (``unauthorized``, ``injected_<status>``, ``invalid``, ``not_found``)."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, kind: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1


class _Refusal(Exception):
    def __init__(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


class PeriskopeSandbox:
    """The fake Periskope directory: its chats, counters and failure draws.

    ``config`` returns the sandbox's current config (it may be replaced at runtime);
    ``hold`` sleeps the latency knob's delay (cut short when the sandbox stops).
    """

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        hold: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._hold = hold
        self._rng = random.Random(config().seed)
        self.counters = PeriskopeCounters()
        self._chats: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self.set_chats(default_chats(config().periskope_org_phone))

    @property
    def chats(self) -> list[dict[str, Any]]:
        return self._chats

    def set_chats(self, chats: Any) -> None:
        """Replace the directory; raises ``ValueError`` (changing nothing) when malformed."""
        checked = check_chats(chats)
        self._chats = checked
        self._by_id = {chat["chat_id"]: chat for chat in checked}

    def reset(self) -> None:
        """Back to the default directory with zeroed counters."""
        config = self._config()
        self.counters = PeriskopeCounters()
        self._rng.seed(config.seed)
        self.set_chats(default_chats(config.periskope_org_phone))

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.counters.calls),
            "calls_total": sum(self.counters.calls.values()),
            "refused": dict(self.counters.refused),
            "chats": len(self._chats),
        }

    def mount(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/chats", self._list_chats)
        app.router.add_get(f"{PREFIX}/chats/{{chat_id}}", self._get_chat)
        app.router.add_get("/_sandbox/periskope/chats", self._control_get_chats)
        app.router.add_post("/_sandbox/periskope/chats", self._control_set_chats)
        app.router.add_get("/_sandbox/periskope/stats", self._control_stats)

    # -- Periskope routes ----------------------------------------------------------------

    async def _list_chats(self, request: web.Request) -> web.Response:
        try:
            await self._admit(request, LIST_CHATS)
            limit = _int_param(request, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            offset = _int_param(request, "offset", 0, 0, None)
            chat_type = request.query.get("chat_type")
            chats = self._chats
            if chat_type is not None:
                wanted = _CHAT_TYPES.get(chat_type)
                if wanted is None:
                    raise _Refusal(
                        400, "invalid", f"chat_type must be one of {', '.join(_CHAT_TYPES)}"
                    )
                chats = [c for c in chats if c.get("chat_type") in wanted]
        except _Refusal as refusal:
            return self._refuse(refusal)
        page = chats[offset : offset + limit]
        return _json({"chats": page, "count": len(chats), "from": offset, "to": offset + len(page)})

    async def _get_chat(self, request: web.Request) -> web.Response:
        chat_id = request.match_info["chat_id"]
        try:
            await self._admit(request, GET_CHAT)
            chat = self._by_id.get(chat_id)
            if chat is None:
                raise _Refusal(404, "not_found", f"Chat {chat_id} not found")
        except _Refusal as refusal:
            return self._refuse(refusal)
        return _json(chat)

    async def _admit(self, request: web.Request, route: str) -> None:
        """Count the call, then latency, auth and injected failures: raises ``_Refusal``."""
        self.counters.calls[route] += 1
        config = self._config()
        if config.periskope_latency_ms:
            await self._hold(config.periskope_latency_ms / 1000)
        key = config.periskope_api_key
        if key is not None:
            header = request.headers.get("Authorization", "")
            presented = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
            phone = request.headers.get("x-phone", "")
            if not (
                hmac.compare_digest(presented.encode(), key.encode())
                and phone == config.periskope_org_phone
            ):
                raise _Refusal(401, "unauthorized", "Unauthorized: check the API key and x-phone")
        status = config.periskope_fail_status
        if status is not None and self._rng.random() < config.periskope_fail_rate:
            headers = None
            if status == 429:
                headers = {"Retry-After": _retry_after(config.periskope_retry_after_s)}
            raise _Refusal(status, f"injected_{status}", "Injected failure", headers)

    def _refuse(self, refusal: _Refusal) -> web.Response:
        self.counters.refuse(refusal.kind)
        return web.Response(
            status=refusal.status,
            body=orjson.dumps({"message": refusal.message, "status": refusal.status}),
            content_type=JSON,
            headers=refusal.headers,
        )

    # -- control routes ------------------------------------------------------------------

    async def _control_get_chats(self, request: web.Request) -> web.Response:
        return _json({"chats": self._chats, "count": len(self._chats)})

    async def _control_set_chats(self, request: web.Request) -> web.Response:
        try:
            chats = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _control_error("invalid_json", "Request body is not valid JSON")
        try:
            self.set_chats(chats)
        except ValueError as error:
            return _control_error("invalid_chats", str(error))
        return _json({"chats": len(self._chats)})

    async def _control_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())


def _retry_after(seconds: float) -> str:
    # Whole seconds, as most servers send it; never 0 (that would invite a tight loop).
    return str(max(1, math.ceil(seconds)))


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise _Refusal(400, "invalid", f"{name} must be an integer {bound}, got {raw!r}")
    return value


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON)


def _control_error(code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=400)
