"""The web session engine that talks to the sandbox's WhatsApp Web engine over HTTP.

It implements the port of ``session.py`` (``WebEngine``/``WebSession``) against the
sandbox's ``/web/{session}`` routes (``providers/sandbox/web.py``), the session name
being the channel id, so the session process, the demo and the tests run every line of
their session handling without a phone.

Credentials: the device token the sandbox issues when a phone is linked is kept in
``state_dir`` (one file per channel, mode 0600); a later ``start`` resumes with it
without a QR, ``logout`` deletes it, and a sandbox that no longer knows it makes the
session ``LoggedOut`` (and the file goes too).

Events come by long poll. Each carries a sequence number; the next poll names the last
one processed (``after``), which is the ack: an event is acked only once ``on_event``
has returned for it, and a reconnect (or a new process, from the sandbox's own cursor)
resumes after the last acked one, so nothing acked is lost or repeated. A dropped
connection is redialled with backoff; logout, a replaced stream and a ban end the
session, as whatsmeow does. Keep-alives are sent every ``keepalive_interval_s``; an
unanswered one reports ``KeepAliveMissed`` and the next answered one
``KeepAliveRestored``. Each send goes under a message id derived from our own
(``message_ids.provider_id_for``), so a receipt, which names WhatsApp ids only, is
decoded back to our message (``StatusUpdate.tracking_id``) even when this process died
before it stored the send's answer, and a resend reuses the id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from wahub.domain.errors import (
    ConflictError,
    PermanentProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
)
from wahub.domain.phones import normalize_phone
from wahub.domain.status import Status
from wahub.providers.base import (
    GroupInfo,
    GroupParticipant,
    InboundMessage,
    SendResult,
    StatusUpdate,
)
from wahub.providers.web.message_ids import provider_id_for, tracking_id_of
from wahub.providers.web.session import (
    Connected,
    ConnectFailed,
    Disconnected,
    GroupChanged,
    IdentityLinked,
    KeepAliveMissed,
    KeepAliveRestored,
    LoggedOut,
    MessageReceived,
    OnEvent,
    QrCode,
    ReceiptReceived,
    SessionEvent,
    StreamReplaced,
    TemporaryBan,
    WebOutbound,
)

PROVIDER = "web"
log = logging.getLogger("wahub.web.sandbox_engine")
_REDIAL_BACKOFF_MAX_S = 2.0


class _Unreachable(Exception):
    """The sandbox did not answer (refused, reset, timed out)."""


class SandboxWebEngine:
    """Builds sessions against the sandbox at ``base_url`` (``http://host:port``).

    ``request_timeout_s`` bounds every call but the long poll (which waits
    ``poll_wait_s`` more); ``stop_timeout_s`` bounds ``stop`` and ``logout`` whatever the
    sandbox does. ``close`` releases the HTTP connection pool.
    """

    name = "sandbox"

    def __init__(
        self,
        base_url: str,
        state_dir: Path | str,
        *,
        request_timeout_s: float = 5.0,
        poll_wait_s: float = 10.0,
        keepalive_interval_s: float = 5.0,
        redial_backoff_s: float = 0.05,
        stop_timeout_s: float = 3.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.state_dir = Path(state_dir)
        self.request_timeout_s = request_timeout_s
        self.poll_wait_s = poll_wait_s
        self.keepalive_interval_s = keepalive_interval_s
        self.redial_backoff_s = redial_backoff_s
        self.stop_timeout_s = stop_timeout_s
        self._http: aiohttp.ClientSession | None = None
        self._sessions: list[SandboxWebSession] = []

    def open(self, channel_id: str, *, on_event: OnEvent) -> SandboxWebSession:
        session = SandboxWebSession(self, channel_id, on_event)
        self._sessions.append(session)
        return session

    async def has_credentials(self, channel_id: str) -> bool:
        return self.token_path(channel_id).exists()

    async def close(self) -> None:
        """Stop every session this engine opened, then release the connection pool."""
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def token_path(self, channel_id: str) -> Path:
        """Where the device token of ``channel_id`` is kept (the id made file-safe)."""
        return self.state_dir / f"sandbox-web-{quote(channel_id, safe='')}.token"

    def read_token(self, channel_id: str) -> str | None:
        try:
            return self.token_path(channel_id).read_text().strip() or None
        except FileNotFoundError:
            return None

    def write_token(self, channel_id: str, token: str) -> None:
        """Store the token readable by us only, atomically (a crash never leaves half)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.token_path(channel_id)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    def delete_token(self, channel_id: str) -> None:
        self.token_path(channel_id).unlink(missing_ok=True)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request to the sandbox: ``(status, JSON body)``. Raises ``_Unreachable``
        when no answer came, with the reason in words."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.request_timeout_s)
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self._http.request(
                method,
                f"{self.base_url}{path}",
                data=data,
                params=params,
                timeout=timeout,
                headers={"Content-Type": "application/json"} if data is not None else None,
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise _Unreachable(f"no answer from the sandbox at {self.base_url}") from None
        except aiohttp.ClientError as error:
            raise _Unreachable(f"cannot reach the sandbox at {self.base_url}: {error}") from None
        try:
            payload = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            payload = {"error": {"code": "not_json", "message": raw[:200].decode(errors="replace")}}
        return status, payload if isinstance(payload, dict) else {}


class SandboxWebSession:
    """One channel's session on the sandbox (see the module docstring for behaviour)."""

    def __init__(self, engine: SandboxWebEngine, channel_id: str, on_event: OnEvent) -> None:
        self.channel_id = channel_id
        self._engine = engine
        self._on_event = on_event
        self._path = f"/web/{quote(channel_id, safe='')}"
        self._connection: str | None = None
        self._linked = False
        self._me_phone: str | None = None
        self._after: int | None = None
        self._keepalive_missed = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        """Whether a linked connection is open (sends are accepted)."""
        return self._connection is not None and self._linked

    async def start(self) -> None:
        """Dial once; ``ConnectFailed`` (sandbox unreachable), ``LoggedOut`` or
        ``TemporaryBan`` when that fails, else ``QrCode`` or ``Connected`` and the
        session runs (and redials after drops) until ``stop``."""
        await self._cancel_tasks()
        try:
            opened = await self._dial()
        except _Unreachable as unreachable:
            self._emit(ConnectFailed(str(unreachable)))
            return
        if opened:
            self._tasks = [
                asyncio.create_task(
                    self._supervised(self._run), name=f"web-session-{self.channel_id}"
                ),
                asyncio.create_task(
                    self._supervised(self._keepalives), name=f"web-keepalive-{self.channel_id}"
                ),
            ]

    async def pair_phone(self, phone: str) -> str:
        """Raises ``ValidationError`` for a number that is not one, ``ConflictError``
        when the session is not pairing, ``RetryableProviderError`` when unreachable."""
        e164 = normalize_phone(phone, field="phone")
        if self._connection is None or self._linked:
            raise ConflictError("a pairing code needs a session that is pairing (scan_qr)")
        status, answer = await self._call(
            "POST", "/pair-phone", body={"connection": self._connection, "phone": e164}
        )
        if status == 200:
            return str(answer["code"])
        if status == 409:
            raise ConflictError("a pairing code needs a session that is pairing (scan_qr)")
        raise PermanentProviderError(_message(answer), http_status=status)

    async def send(self, message: WebOutbound) -> SendResult:
        connection = self._connection
        if connection is None or not self._linked:
            raise RetryableProviderError("the web session is not connected")
        body: dict[str, Any] = {
            "connection": connection,
            "tracking_id": message.tracking_id,
            # Chosen, as WhatsApp lets a sender do: the receipts name our message by it
            # even if this process dies before it stores the answer, and a resend goes
            # under the same id.
            "id": provider_id_for(message.tracking_id),
            "to": message.to,
            "kind": message.kind,
            "text": message.text,
            "mimetype": message.mimetype,
            "filename": message.filename,
            "reply_to": message.reply_to,
        }
        if message.media is not None:
            body["media_b64"] = base64.b64encode(message.media).decode()
        try:
            status, answer = await self._engine.call("POST", f"{self._path}/send", body=body)
        except _Unreachable as unreachable:
            # The request may have been taken before the answer was lost.
            raise ProviderOutcomeUnknown(str(unreachable)) from None
        if status == 200:
            return SendResult(provider_message_id=str(answer["id"]), wa_id=message.to)
        error = answer.get("error", {})
        if status == 409 or status >= 500:
            raise RetryableProviderError(_message(answer), http_status=status)
        raise PermanentProviderError(
            _message(answer), provider_code=error.get("code"), http_status=status
        )

    async def list_groups(self) -> tuple[GroupInfo, ...]:
        connection = self._connection
        if connection is None or not self._linked:
            raise RetryableProviderError("the web session is not connected")
        status, answer = await self._call("GET", "/groups", params={"connection": connection})
        if status != 200:
            raise RetryableProviderError(_message(answer), http_status=status)
        return tuple(_group(raw, self._me_phone) for raw in answer["groups"])

    async def stop(self) -> None:
        """Disconnect, keeping the credentials; returns within ``stop_timeout_s``."""
        connection = self._connection
        self._connection = None
        await self._cancel_tasks()
        if connection is not None:
            with contextlib.suppress(_Unreachable, TimeoutError):
                async with asyncio.timeout(self._engine.stop_timeout_s):
                    await self._call("POST", "/disconnect", body={"connection": connection})

    async def logout(self) -> None:
        """Unlink the device at the sandbox (best effort) and delete the credentials;
        returns within ``stop_timeout_s``."""
        token = self._engine.read_token(self.channel_id)
        connection = self._connection
        self._connection = None
        await self._cancel_tasks()
        self._engine.delete_token(self.channel_id)
        self._linked = False
        with contextlib.suppress(_Unreachable, TimeoutError):
            async with asyncio.timeout(self._engine.stop_timeout_s):
                if token is not None:
                    await self._call("POST", "/logout", body={"token": token})
                elif connection is not None:
                    # Nothing linked yet: end the pairing, so no QR goes on rotating.
                    await self._call("POST", "/disconnect", body={"connection": connection})

    # -- the connection --------------------------------------------------------------------

    async def _dial(self) -> bool:
        """Open a connection; True when it is open. A refusal (logged out, banned) is
        reported as its event and gives False. Raises ``_Unreachable``."""
        token = self._engine.read_token(self.channel_id)
        status, answer = await self._call(
            "POST", "/connect", body={"token": token, "after": self._after}
        )
        error = answer.get("error", {})
        if status == 401:
            self._engine.delete_token(self.channel_id)
            self._linked = False
            self._emit(LoggedOut(_message(answer)))
            return False
        if status == 403 and error.get("code") == "banned":
            self._emit(TemporaryBan(_message(answer), error.get("details", {}).get("expires_in_s")))
            return False
        if status != 200:
            self._emit(ConnectFailed(f"the sandbox refused to connect: {_message(answer)}"))
            return False
        self._connection = str(answer["connection"])
        self._after = int(answer["acked"])
        self._keepalive_missed = False
        if answer["state"] == "pairing":
            self._linked = False
            self._emit(QrCode(str(answer["qr"]), float(answer["expires_in_s"])))
        else:
            self._connected_as(answer["me"])
        return True

    async def _supervised(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the session's loops; if it dies of a bug (a payload we do not
        understand, an ``on_event`` that raised), the session must not go on looking
        connected: it closes and reports ``ConnectFailed`` with the error."""
        try:
            await loop()
        except Exception as error:
            log.exception("web session %s: engine loop failed", self.channel_id)
            self._connection = None
            with contextlib.suppress(Exception):
                self._emit(ConnectFailed(f"sandbox engine error: {error!r}"))

    async def _run(self) -> None:
        """Poll events until the connection ends for good (or ``stop``)."""
        while True:
            closed = await self._poll_until_closed()
            if closed is None:
                if not await self._redial():
                    return
                continue
            kind = closed.get("kind")
            reason = str(closed.get("reason") or kind)
            self._connection = None
            if kind == "logged_out":
                self._engine.delete_token(self.channel_id)
                self._linked = False
                self._emit(LoggedOut(reason))
                return
            if kind == "stream_replaced":
                self._emit(StreamReplaced())
                return
            if kind == "banned":
                self._emit(TemporaryBan(reason, closed.get("expires_in_s")))
                return
            self._emit(Disconnected(reason))
            if not await self._redial():
                return

    async def _poll_until_closed(self) -> dict[str, Any] | None:
        """Hand events to ``on_event`` until the sandbox says the connection closed
        (its closure) or stops answering (None, after reporting ``Disconnected``)."""
        engine = self._engine
        while True:
            connection = self._connection
            if connection is None:
                return {"kind": "dropped", "reason": "connection closed"}
            params = {
                "connection": connection,
                "after": str(self._after or 0),
                "wait": str(engine.poll_wait_s),
            }
            try:
                status, answer = await self._call(
                    "GET",
                    "/events",
                    params=params,
                    timeout_s=engine.poll_wait_s + engine.request_timeout_s,
                )
            except _Unreachable as unreachable:
                self._connection = None
                self._emit(Disconnected(str(unreachable)))
                return None
            if status != 200:
                return {"kind": "dropped", "reason": _message(answer)}
            for event in answer["events"]:
                self._handle(event)
                self._after = int(event["seq"])
            if answer["closed"] is not None:
                closed: dict[str, Any] = answer["closed"]
                return closed

    async def _redial(self) -> bool:
        """Dial again with backoff until connected (True) or refused for good (False)."""
        delay = self._engine.redial_backoff_s
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._dial()
            except _Unreachable:
                delay = min(delay * 2, _REDIAL_BACKOFF_MAX_S)

    async def _keepalives(self) -> None:
        engine = self._engine
        while True:
            await asyncio.sleep(engine.keepalive_interval_s)
            connection = self._connection
            if connection is None or not self._linked:
                continue
            try:
                status, _ = await self._call("POST", "/keepalive", body={"connection": connection})
                answered = status == 200
                if status == 409:
                    continue  # the connection ended: the poll loop reports it
            except _Unreachable:
                answered = False
            if connection != self._connection:
                continue
            if not answered and not self._keepalive_missed:
                self._keepalive_missed = True
                self._emit(KeepAliveMissed())
            elif answered and self._keepalive_missed:
                self._keepalive_missed = False
                self._emit(KeepAliveRestored())

    # -- events ----------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "qr":
            self._emit(QrCode(str(event["code"]), float(event["expires_in_s"])))
        elif kind == "paired":
            # Stored before the event is acked (the next poll), so a crash here pairs
            # again rather than losing the device.
            self._engine.write_token(self.channel_id, str(event["token"]))
            self._connected_as(event["me"])
        elif kind == "message":
            sender_phone, sender_lid = event.get("sender_phone"), event.get("sender_lid")
            if sender_phone and sender_lid:
                self._emit(IdentityLinked(lid=sender_lid, phone=sender_phone))
            self._emit(MessageReceived(self._inbound(event), sender_lid=sender_lid))
        elif kind == "receipt":
            status = Status(event["status"])
            ids = event["ids"]
            statuses = tuple(
                StatusUpdate(
                    provider_message_id=message_id,
                    status=status,
                    timestamp=int(event["timestamp"]),
                    tracking_id=tracking_id_of(message_id),
                    recipient=event.get("chat_id"),
                )
                for message_id in ids
            )
            self._emit(ReceiptReceived(statuses))
        elif kind == "group":
            self._emit(
                GroupChanged(
                    chat_id=str(event["chat_id"]),
                    timestamp=int(event["timestamp"]),
                    name=event.get("name"),
                    joined=tuple(_participant(member) for member in event.get("joined", [])),
                    left=tuple(_participant(member) for member in event.get("left", [])),
                )
            )
        elif kind == "identity":
            self._emit(IdentityLinked(lid=str(event["lid"]), phone=str(event["phone"])))

    def _inbound(self, event: dict[str, Any]) -> InboundMessage:
        kind = event["kind"]
        content = {key: value for key, value in event.items() if key != "seq"}
        return InboundMessage(
            provider=PROVIDER,
            provider_message_id=str(event["id"]),
            chat_id=str(event["chat_id"]),
            timestamp=int(event["timestamp"]),
            type="text" if kind == "reply" else str(kind),
            content=content,
            sender_phone=event.get("sender_phone"),
            sender_name=event.get("push_name"),
            text=event.get("text"),
            reply_to_provider_id=event.get("reply_to"),
            reaction_to_provider_id=event.get("reaction_to"),
            from_me=bool(event.get("from_me")),
            channel_ref=self.channel_id,
        )

    def _connected_as(self, me: dict[str, Any]) -> None:
        self._linked = True
        self._me_phone = me.get("phone")
        self._emit(Connected(me.get("phone"), me.get("lid"), me.get("push_name")))

    def _emit(self, event: SessionEvent) -> None:
        self._on_event(event)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        return await self._engine.call(
            method, f"{self._path}{path}", body=body, params=params, timeout_s=timeout_s
        )

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _message(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "refused")
    return "unexpected answer from the sandbox"


def _participant(raw: dict[str, Any]) -> GroupParticipant:
    return GroupParticipant(
        phone=raw.get("phone"), lid=raw.get("lid"), rank=raw.get("rank", "member")
    )


def _group(raw: dict[str, Any], me_phone: str | None) -> GroupInfo:
    participants = tuple(_participant(member) for member in raw["participants"])
    return GroupInfo(
        chat_id=str(raw["chat_id"]),
        name=raw.get("name"),
        participants=participants,
        we_are_member=any(p.phone == me_phone for p in participants),
    )
