"""The sandbox's WhatsApp Web session engine: what a linked phone looks like from a
session process, over plain HTTP (see ``web_session.py`` for the model).

Client routes (what ``providers/web/sandbox_engine.py`` calls), per session name:

- ``POST /web/{session}/connect`` ``{token?, after?}``: open a connection. With a device
  token it resumes (``state: connected``, ``me``); without, it pairs (``state: pairing``,
  ``qr``). ``after`` acks the events the client already processed. 401 ``logged_out``
  for a token that is not linked, 403 ``banned`` during a temporary ban.
- ``GET /web/{session}/events?connection=&after=&wait=``: long poll. Acks every event up
  to ``after`` and answers the later ones, or ``closed`` (why the connection ended),
  or nothing after ``wait`` seconds.
- ``POST /web/{session}/keepalive`` ``{connection}``: 200, or 503 while the sandbox is
  told not to answer keep-alives.
- ``POST /web/{session}/send`` ``{connection, to, kind, id?, text?, media_b64?, ...}``:
  a send to a person (``digits@s.whatsapp.net``, ``...@lid``) or a group we are in;
  recorded in ``GET /_sandbox/sends`` (``provider: web``) and answered with the
  message id: ``id`` when the sender chose one (as WhatsApp lets it), else a new one.
  Receipts follow as events and, like WhatsApp's, name message ids only (``tracking_id``
  in the body is kept in the send log, to count duplicates, and never echoed).
- ``POST /web/{session}/pair-phone`` ``{connection, phone}``: a pairing code.
- ``GET /web/{session}/groups?connection=``: our groups with members.
- ``POST /web/{session}/disconnect`` ``{connection}`` and ``POST /web/{session}/logout``
  ``{token}``.

Control routes (the test plays the phone and WhatsApp): ``/_sandbox/web/{session}/``
``scan`` ``{code?, phone?}``, ``pairing-code`` ``{code}``, ``drop``, ``logout``,
``replace``, ``ban`` ``{expires_in_s}``, ``keepalive`` ``{answer}``, ``inbound``,
``group-change``, ``identity`` ``{lid, phone}``, ``receipt`` ``{status, ids, chat_id}``,
``groups`` (GET, POST to replace);
``GET /_sandbox/web/{session}`` (its state) and ``GET /_sandbox/web/stats``.
Errors use ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from wahub.providers.sandbox.config import STATUS_ORDER, SandboxConfig
from wahub.providers.sandbox.state import SendRecord
from wahub.providers.sandbox.web_session import (
    BANNED,
    CLOSED_BY_CLIENT,
    DROPPED,
    STREAM_REPLACED,
    WebRefusal,
    WebSessionState,
    new_message_id,
)
from wahub.providers.sandbox.whapi_directory import lid_for

JSON: Final = "application/json"
SEND_KINDS: Final = ("text", "image", "video", "audio", "document")
INBOUND_KINDS: Final = ("text", "reply", "reaction", "image", "document")
MAX_POLL_WAIT_S: Final = 30.0
MAX_EVENTS_PER_POLL: Final = 500

_SESSION_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PERSON_RE: Final = re.compile(r"^\d{7,15}@s\.whatsapp\.net$")
_LID_RE: Final = re.compile(r"^\d{6,20}@lid$")
_GROUP_RE: Final = re.compile(r"^[\d-]{10,40}@g\.us$")
_PHONE_RE: Final = re.compile(r"^\+[1-9]\d{6,14}$")
# A message id a sender may choose: WhatsApp's clients use upper-case hex (and letters).
_MESSAGE_ID_RE: Final = re.compile(r"^[0-9A-Z]{16,64}$")

Handler = Callable[[web.Request], Awaitable[web.Response]]


class WebSandbox:
    """The web session engine of one sandbox: sessions by name, their logs and sends.

    ``config`` returns the sandbox's current config; ``record_send`` adds an accepted
    send to the sandbox's send log; ``stopping`` is set when the sandbox stops (long
    polls end at once then).
    """

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        record_send: Callable[[SendRecord], None],
        stopping: asyncio.Event,
    ) -> None:
        self._config = config
        self._record_send = record_send
        self._stopping = stopping
        self.sessions: dict[str, WebSessionState] = {}
        # Receipts not yet emitted: (session, chat, status) -> message ids, so one
        # receipt names every id that reached the status in the same tick.
        self._pending: dict[tuple[str, str, str], list[str]] = {}
        self._tracking_ids: Counter[str] = Counter()
        self._ticker: asyncio.Task[None] | None = None
        self._work = asyncio.Event()

    def session(self, name: str) -> WebSessionState:
        state = self.sessions.get(name)
        if state is None:
            state = self.sessions[name] = WebSessionState(name)
        return state

    def reset(self) -> None:
        """Forget every session, pending receipt and counter."""
        for state in self.sessions.values():
            state.close(DROPPED, "sandbox reset")
        self.sessions.clear()
        self._pending.clear()
        self._tracking_ids.clear()

    def stats(self) -> dict[str, Any]:
        """``sends`` accepted through sessions; ``duplicates`` counts sends whose
        tracking id had been sent before (a resend the session process should not do)."""
        return {
            "sessions": {name: state.state() for name, state in self.sessions.items()},
            "sends": sum(self._tracking_ids.values()),
            "duplicates": sum(count - 1 for count in self._tracking_ids.values()),
            "pending_receipts": sum(len(ids) for ids in self._pending.values()),
        }

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="sandbox-web-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for state in self.sessions.values():
            state.notify()

    def mount(self, app: web.Application) -> None:
        client = "/web/{session}"
        control = "/_sandbox/web/{session}"
        routes: list[tuple[str, str, Handler]] = [
            ("POST", f"{client}/connect", self._connect),
            ("GET", f"{client}/events", self._events),
            ("POST", f"{client}/keepalive", self._keepalive),
            ("POST", f"{client}/send", self._send),
            ("POST", f"{client}/pair-phone", self._pair_phone),
            ("GET", f"{client}/groups", self._groups),
            ("POST", f"{client}/disconnect", self._disconnect),
            ("POST", f"{client}/logout", self._client_logout),
            ("GET", "/_sandbox/web/stats", self._stats),
            ("GET", control, self._describe),
            ("POST", f"{control}/scan", self._scan),
            ("POST", f"{control}/pairing-code", self._enter_code),
            ("POST", f"{control}/drop", self._drop),
            ("POST", f"{control}/logout", self._control_logout),
            ("POST", f"{control}/replace", self._replace),
            ("POST", f"{control}/ban", self._ban),
            ("POST", f"{control}/keepalive", self._set_keepalive),
            ("POST", f"{control}/inbound", self._inbound),
            ("POST", f"{control}/group-change", self._group_change),
            ("POST", f"{control}/identity", self._identity),
            ("POST", f"{control}/receipt", self._receipt),
            ("GET", f"{control}/groups", self._control_groups),
            ("POST", f"{control}/groups", self._control_set_groups),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, _refusals(handler))

    # -- the ticker: QR rotation and receipts --------------------------------------------

    async def _tick(self) -> None:
        while True:
            config = self._config()
            pairing = [state for state in self.sessions.values() if state.pairing]
            if not pairing and not self._pending:
                self._work.clear()
                await self._work.wait()
                continue
            await asyncio.sleep(min(config.web_receipt_delay_ms / 1000, config.web_qr_rotate_s))
            now = time.monotonic()
            for state in pairing:
                if state.pairing and now - state.qr_rotated_at >= config.web_qr_rotate_s:
                    state.rotate_qr(config.web_qr_rotate_s)
            self._emit_receipts(config)

    def _emit_receipts(self, config: SandboxConfig) -> None:
        due, self._pending = self._pending, {}
        now = int(time.time())
        for (name, chat_id, status), ids in due.items():
            state = self.sessions.get(name)
            if state is None or state.device is None:
                continue
            state.append(
                {
                    "type": "receipt",
                    "status": status,
                    "ids": ids,
                    "chat_id": chat_id,
                    "timestamp": now,
                }
            )
            later = [
                s for s in config.web_receipts if STATUS_ORDER.index(s) > STATUS_ORDER.index(status)
            ]
            if later:
                self._pending.setdefault((name, chat_id, later[0]), []).extend(ids)

    # -- client routes -------------------------------------------------------------------

    async def _connect(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        token = _optional_str(body, "token")
        after = _optional_int(body, "after")
        answer = state.connect(token, self._config().web_qr_rotate_s)
        if after is not None:
            state.ack(after)
            answer["acked"] = state.acked
        self._work.set()
        return _json(answer)

    async def _events(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        connection = request.query.get("connection")
        after = _query_int(request, "after", 0)
        wait = min(_query_float(request, "wait", 0.0), MAX_POLL_WAIT_S)
        deadline = time.monotonic() + wait
        while True:
            if connection is None or connection != state.connection:
                # A closed connection acks nothing: its client may not have stored what
                # it was given, and the next connection resumes from its own cursor.
                closure = state.closures.get(connection or "")
                closed = closure.to_dict() if closure is not None else _unknown_connection()
                return _json({"events": [], "closed": closed})
            state.ack(after)
            events = state.events_after(after, MAX_EVENTS_PER_POLL)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0 or self._stopping.is_set():
                return _json({"events": events, "closed": None})
            wake = state.wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, self._stopping), remaining)

    async def _keepalive(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        connection = _optional_str(body, "connection")
        if connection is None or connection != state.connection:
            raise WebRefusal(409, "not_connected", "connection is not open")
        if not state.keepalive_answered:
            raise WebRefusal(503, "keepalive_unanswered", "the server did not answer")
        return _json({"ok": True})

    async def _send(self, request: web.Request) -> web.Response:
        name = _session_name(request)
        state = self.session(name)
        body = await _body(request)
        state.check_connection(_optional_str(body, "connection"))
        to = _required_str(body, "to")
        kind = _required_str(body, "kind")
        if kind not in SEND_KINDS:
            raise _invalid(f"kind must be one of {', '.join(SEND_KINDS)}", field="kind")
        media_size = _media_size(body, kind)
        if kind == "text" and not _optional_str(body, "text"):
            raise _invalid("a text message needs text", field="text")
        if _GROUP_RE.match(to):
            group = state.groups.get(to)
            assert state.device is not None
            if group is None or not any(
                member.get("phone") == state.device.phone for member in group["participants"]
            ):
                raise WebRefusal(403, "not_a_participant", f"we are not in the group {to}")
        elif not (_PERSON_RE.match(to) or _LID_RE.match(to)):
            raise _invalid(f"to must be a person or group JID, got {to!r}", field="to")
        tracking_id = _optional_str(body, "tracking_id")
        message_id = _optional_str(body, "id") or new_message_id()
        if not _MESSAGE_ID_RE.match(message_id):
            raise _invalid(
                "id must be 16 to 64 upper-case letters and digits", field="id", id=message_id
            )
        now = time.time()
        recorded = {key: value for key, value in body.items() if key != "media_b64"}
        if media_size is not None:
            recorded["media_size"] = media_size
        self._record_send(
            SendRecord(
                wamid=message_id,
                phone_number_id=name,
                to=to,
                wa_id=to,
                type=kind,
                body=recorded,
                biz_opaque_callback_data=tracking_id,
                received_at=now,
                provider="web",
            )
        )
        self._tracking_ids[tracking_id or message_id] += 1
        receipts = self._config().web_receipts
        if receipts:
            self._pending.setdefault((name, to, receipts[0]), []).append(message_id)
            self._work.set()
        return _json({"id": message_id, "timestamp": int(now)})

    async def _pair_phone(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        connection = _optional_str(body, "connection")
        if connection is None or connection != state.connection:
            raise WebRefusal(409, "not_connected", "connection is not open")
        phone = _phone(body, "phone")
        return _json({"code": state.request_pairing_code(phone)})

    async def _groups(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        state.check_connection(request.query.get("connection"))
        return _json({"groups": list(state.groups.values())})

    async def _disconnect(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        if _optional_str(body, "connection") == state.connection:
            state.close(CLOSED_BY_CLIENT, "the client disconnected")
        return _json({"ok": True})

    async def _client_logout(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        token = _optional_str(body, "token")
        if state.device is not None and token == state.device.token:
            state.logout("the client logged out")
        return _json({"ok": True})

    # -- control routes ------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _describe(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        return _json(
            {
                "session": state.name,
                "state": state.state(),
                "qr": state.qr,
                "me": state.me() if state.device is not None else None,
                "acked": state.acked,
                "pending_events": len(state.log),
                "keepalive_answered": state.keepalive_answered,
            }
        )

    async def _scan(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        code = _optional_str(body, "code")
        phone = _phone(body, "phone") if body.get("phone") is not None else None
        if state.pairing and code is not None and code != state.qr:
            raise WebRefusal(400, "qr_expired", "this QR code is not the current one")
        device = state.link(phone)
        return _json({"linked": True, "phone": device.phone, "lid": device.lid})

    async def _enter_code(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        code = _required_str(body, "code").replace("-", "").upper()
        phone = state.pairing_codes.get(code)
        if phone is None:
            raise WebRefusal(400, "invalid_code", "no pairing code like this was issued")
        device = state.link(phone)
        return _json({"linked": True, "phone": device.phone, "lid": device.lid})

    async def _drop(self, request: web.Request) -> web.Response:
        self.session(_session_name(request)).close(DROPPED, "connection reset by the server")
        return _json({"ok": True})

    async def _control_logout(self, request: web.Request) -> web.Response:
        self.session(_session_name(request)).logout("the phone unlinked this device")
        return _json({"ok": True})

    async def _replace(self, request: web.Request) -> web.Response:
        self.session(_session_name(request)).close(STREAM_REPLACED, "another client connected")
        return _json({"ok": True})

    async def _ban(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        expires = body.get("expires_in_s", 60.0)
        if isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0:
            raise _invalid("expires_in_s must be a number > 0", field="expires_in_s")
        state.banned_until = time.time() + float(expires)
        state.close(BANNED, "temporarily banned (sandbox)", float(expires))
        return _json({"ok": True})

    async def _set_keepalive(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        answer = body.get("answer")
        if not isinstance(answer, bool):
            raise _invalid("answer must be true or false", field="answer")
        state.keepalive_answered = answer
        return _json({"ok": True})

    async def _inbound(self, request: web.Request) -> web.Response:
        """Inject a message: ``kind`` (text, reply, reaction, image, document), ``from``
        (E.164) and/or ``from_lid``, ``chat_id`` (a group; default the sender's chat),
        ``text``, ``reply_to``/``reaction_to`` (a message id), ``push_name``, ``from_me``."""
        state = self.session(_session_name(request))
        body = await _body(request)
        kind = body.get("kind", "text")
        if kind not in INBOUND_KINDS:
            raise _invalid(f"kind must be one of {', '.join(INBOUND_KINDS)}", field="kind")
        sender = _phone(body, "from") if body.get("from") is not None else None
        sender_lid = _optional_str(body, "from_lid")
        if sender_lid is not None and not _LID_RE.match(sender_lid):
            raise _invalid("from_lid must look like 12345678901234@lid", field="from_lid")
        if sender is None and sender_lid is None:
            raise _invalid("give from (E.164) or from_lid", field="from")
        chat_id = _optional_str(body, "chat_id")
        if chat_id is None:
            chat_id = f"{sender[1:]}@s.whatsapp.net" if sender is not None else sender_lid
        elif not (_GROUP_RE.match(chat_id) or _PERSON_RE.match(chat_id)):
            raise _invalid("chat_id must be a person or group JID", field="chat_id")
        reference = _optional_str(body, "reply_to" if kind == "reply" else "reaction_to")
        if kind in ("reply", "reaction") and reference is None:
            field = "reply_to" if kind == "reply" else "reaction_to"
            raise _invalid(f"a {kind} needs {field}", field=field)
        message_id = _optional_str(body, "id") or new_message_id()
        event = {
            "type": "message",
            "id": message_id,
            "kind": kind,
            "chat_id": chat_id,
            "timestamp": int(time.time()),
            "sender_phone": sender,
            "sender_lid": sender_lid,
            "push_name": _optional_str(body, "push_name"),
            "text": _optional_str(body, "text"),
            "reply_to": reference if kind == "reply" else None,
            "reaction_to": reference if kind == "reaction" else None,
            "from_me": body.get("from_me") is True,
        }
        seq = state.append(event)
        return _json({"id": message_id, "seq": seq})

    async def _group_change(self, request: web.Request) -> web.Response:
        """``{chat_id, name?, joined: [{phone?, lid?, rank?}], left: [...]}``: change (or
        create) a group of the session and tell the client."""
        state = self.session(_session_name(request))
        body = await _body(request)
        chat_id = _required_str(body, "chat_id")
        if not _GROUP_RE.match(chat_id):
            raise _invalid("chat_id must be a group JID (...@g.us)", field="chat_id")
        name = _optional_str(body, "name")
        joined = _members(body, "joined")
        left = _members(body, "left")
        group = state.groups.setdefault(
            chat_id, {"chat_id": chat_id, "name": name, "participants": []}
        )
        if name is not None:
            group["name"] = name
        gone = {(m["phone"], m["lid"]) for m in left}
        group["participants"] = [
            m for m in group["participants"] if (m["phone"], m["lid"]) not in gone
        ] + joined
        seq = state.append(
            {
                "type": "group",
                "chat_id": chat_id,
                "timestamp": int(time.time()),
                "name": name,
                "joined": joined,
                "left": left,
            }
        )
        return _json({"seq": seq})

    async def _identity(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        body = await _body(request)
        phone = _phone(body, "phone")
        lid = _optional_str(body, "lid") or lid_for(phone)
        if not _LID_RE.match(lid):
            raise _invalid("lid must look like 12345678901234@lid", field="lid")
        seq = state.append({"type": "identity", "lid": lid, "phone": phone})
        return _json({"seq": seq, "lid": lid})

    async def _receipt(self, request: web.Request) -> web.Response:
        """``{status, ids, chat_id}``: one receipt naming every id given (WhatsApp sends
        those for a burst of messages read at once)."""
        state = self.session(_session_name(request))
        body = await _body(request)
        status = body.get("status")
        if status not in STATUS_ORDER:
            raise _invalid(f"status must be one of {', '.join(STATUS_ORDER)}", field="status")
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _invalid("ids must be a non-empty list of message ids", field="ids")
        seq = state.append(
            {
                "type": "receipt",
                "status": status,
                "ids": ids,
                "chat_id": _required_str(body, "chat_id"),
                "timestamp": int(time.time()),
            }
        )
        return _json({"seq": seq})

    async def _control_groups(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        return _json({"groups": list(state.groups.values())})

    async def _control_set_groups(self, request: web.Request) -> web.Response:
        state = self.session(_session_name(request))
        try:
            groups = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _invalid("request body is not valid JSON") from None
        if not isinstance(groups, list):
            raise _invalid("the body must be a JSON list of groups")
        checked: dict[str, dict[str, Any]] = {}
        for group in groups:
            if not isinstance(group, dict) or not _GROUP_RE.match(str(group.get("chat_id"))):
                raise _invalid("each group needs a chat_id ending in @g.us", field="chat_id")
            checked[group["chat_id"]] = {
                "chat_id": group["chat_id"],
                "name": _optional_str(group, "name"),
                "participants": _members(group, "participants"),
            }
        state.groups = checked
        return _json({"groups": len(checked)})


# -- request helpers -------------------------------------------------------------------


def _refusals(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except WebRefusal as refusal:
            return _json(
                {
                    "error": {
                        "code": refusal.code,
                        "message": refusal.message,
                        "details": refusal.details,
                    }
                },
                status=refusal.status,
            )

    return wrapped


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON)


def _invalid(message: str, **details: Any) -> WebRefusal:
    return WebRefusal(400, "invalid_request", message, **details)


def _unknown_connection() -> dict[str, Any]:
    return {"kind": DROPPED, "reason": "unknown connection", "expires_in_s": None}


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _session_name(request: web.Request) -> str:
    name = request.match_info["session"]
    if not _SESSION_RE.match(name):
        raise _invalid("session names are 1..128 of A-Z a-z 0-9 _ . : -", field="session")
    return name


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string", field=key)
    return value


def _required_str(body: dict[str, Any], key: str) -> str:
    value = _optional_str(body, key)
    if not value:
        raise _invalid(f"{key} is required", field=key)
    return value


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(f"{key} must be an integer >= 0", field=key)
    return value


def _phone(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _PHONE_RE.match(value):
        raise WebRefusal(
            422, "invalid_phone", f"{key} must be an E.164 number like +4915123456789", field=key
        )
    return value


def _query_int(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.isdigit():
        raise _invalid(f"{key} must be an integer >= 0", field=key)
    return int(raw)


def _query_float(request: web.Request, key: str, default: float) -> float:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _invalid(f"{key} must be a number", field=key) from None
    if not value >= 0:
        raise _invalid(f"{key} must be >= 0", field=key)
    return value


def _media_size(body: dict[str, Any], kind: str) -> int | None:
    encoded = _optional_str(body, "media_b64")
    if kind == "text":
        return None
    if encoded is None:
        raise _invalid(f"a {kind} message needs media_b64", field="media_b64")
    try:
        return len(base64.b64decode(encoded, validate=True))
    except binascii.Error:
        raise _invalid("media_b64 is not base64", field="media_b64") from None


def _members(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    raw = body.get(key, [])
    if not isinstance(raw, list):
        raise _invalid(f"{key} must be a list of members", field=key)
    members = []
    for member in raw:
        if not isinstance(member, dict):
            raise _invalid(f"each of {key} must be an object", field=key)
        phone = member.get("phone")
        lid = member.get("lid")
        if phone is not None and (not isinstance(phone, str) or not _PHONE_RE.match(phone)):
            raise WebRefusal(422, "invalid_phone", f"{key}: phone must be E.164", field=key)
        if lid is not None and (not isinstance(lid, str) or not _LID_RE.match(lid)):
            raise _invalid(f"{key}: lid must look like 12345678901234@lid", field=key)
        if phone is None and lid is None:
            raise _invalid(f"{key}: each member needs phone or lid", field=key)
        rank = member.get("rank", "member")
        if rank not in ("creator", "admin", "member"):
            raise _invalid(f"{key}: rank is creator, admin or member", field=key)
        members.append({"phone": phone, "lid": lid, "rank": rank})
    return members
