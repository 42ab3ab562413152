"""One sandbox WhatsApp Web session: the linked device, its connection and its event log.

A session is keyed by a name (the hub's channel id). It is either unlinked (a client that
connects without a device token gets rotating QR codes, and a simulated scan or pairing
code links it) or linked (a device token resumes it without a QR). At most one connection
is open at a time: a second connect closes the first as ``stream_replaced``, as WhatsApp
does.

Everything the client must hear about (QR codes, the pairing, messages, receipts, group
changes, identities) goes into one log with a sequence number per session. The log
outlives connections: a client polls ``after`` the last event it processed, which acks
everything up to it, so a reconnect (or a new process) resumes without losing or
repeating an acked event. How a connection ended is kept per connection id, so a client
polling a closed connection learns why (dropped, logged out, replaced, banned).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from wahub.providers.sandbox.whapi_directory import lid_for

# Why a connection was closed by the sandbox; the client maps each to an event.
DROPPED = "dropped"
LOGGED_OUT = "logged_out"
STREAM_REPLACED = "stream_replaced"
BANNED = "banned"
CLOSED_BY_CLIENT = "closed_by_client"


class WebRefusal(Exception):
    """A request the session cannot take: ``status`` is the HTTP status, ``code`` the
    machine-readable reason (``not_connected``, ``not_pairing``, ``logged_out``...)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(slots=True)
class Device:
    """The linked device: its token and whom it is logged in as."""

    token: str
    phone: str  # E.164
    lid: str
    push_name: str


@dataclass(slots=True)
class Closure:
    kind: str
    reason: str
    expires_in_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "expires_in_s": self.expires_in_s}


@dataclass(slots=True)
class WebSessionState:
    """The sandbox side of one session. Not thread-safe: used on the server's loop."""

    name: str
    device: Device | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    next_seq: int = 1
    acked: int = 0
    connection: str | None = None
    closures: dict[str, Closure] = field(default_factory=dict)
    qr: str | None = None
    qr_serial: int = 0
    qr_rotated_at: float = 0.0
    pairing_codes: dict[str, str] = field(default_factory=dict)
    keepalive_answered: bool = True
    banned_until: float | None = None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Set and replaced whenever the log grows or the connection closes: long polls wait
    # on the one they saw.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pairing(self) -> bool:
        return self.connection is not None and self.device is None

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.device is not None

    def state(self) -> str:
        """``unlinked``, ``pairing``, ``connected``, ``disconnected`` or ``banned``."""
        if self.banned_until is not None and time.time() < self.banned_until:
            return "banned"
        if self.connection is None:
            return "disconnected" if self.device is not None else "unlinked"
        return "connected" if self.device is not None else "pairing"

    def notify(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()

    def append(self, event: dict[str, Any]) -> int:
        """Add ``event`` to the log with the next sequence number; return it."""
        seq = self.next_seq
        self.next_seq += 1
        self.log.append({"seq": seq, **event})
        self.notify()
        return seq

    def ack(self, after: int) -> None:
        """The client processed every event up to ``after``: forget them."""
        if after > self.acked:
            self.acked = min(after, self.next_seq - 1)
            self.log = [event for event in self.log if event["seq"] > self.acked]

    def events_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        return [event for event in self.log if event["seq"] > after][:limit]

    # -- connections -------------------------------------------------------------------

    def connect(self, token: str | None, qr_rotate_s: float) -> dict[str, Any]:
        """Open a connection (closing the current one as replaced) and describe it.

        With ``token``: resume the linked device (401 ``logged_out`` when the token is
        not this session's). Without: begin pairing with a fresh QR. 403 ``banned``
        while a temporary ban lasts.
        """
        now = time.time()
        if self.banned_until is not None:
            if now < self.banned_until:
                raise WebRefusal(
                    403,
                    "banned",
                    "the number is temporarily banned",
                    expires_in_s=self.banned_until - now,
                )
            self.banned_until = None
        if token is not None and (self.device is None or token != self.device.token):
            raise WebRefusal(401, "logged_out", "this device is not linked (logged out)")
        if self.connection is not None:
            self.close(STREAM_REPLACED, "another client opened this session")
        connection = secrets.token_hex(8)
        self.connection = connection
        self.keepalive_answered = True
        answer: dict[str, Any] = {"connection": connection, "acked": self.acked}
        if self.device is None:
            self._drop_stale_qrs()
            self.rotate_qr(qr_rotate_s)
            answer.update(state="pairing", qr=self.qr, expires_in_s=qr_rotate_s)
        else:
            answer.update(state="connected", me=self.me())
        return answer

    def close(self, kind: str, reason: str, expires_in_s: float | None = None) -> None:
        """Close the open connection (if any), remembering why for its next poll."""
        if self.connection is None:
            return
        self.closures[self.connection] = Closure(kind, reason, expires_in_s)
        self.connection = None
        self.qr = None
        self.pairing_codes.clear()
        self.notify()

    def check_connection(self, connection: str | None) -> None:
        """Raises ``WebRefusal`` 409 unless ``connection`` is the open, linked one."""
        if connection is None or connection != self.connection:
            closure = self.closures.get(connection or "")
            reason = closure.kind if closure is not None else "unknown connection"
            raise WebRefusal(409, "not_connected", f"connection is not open ({reason})")
        if self.device is None:
            raise WebRefusal(409, "not_connected", "the session is pairing, not linked yet")

    def me(self) -> dict[str, Any]:
        device = self.device
        assert device is not None
        return {"phone": device.phone, "lid": device.lid, "push_name": device.push_name}

    # -- pairing -----------------------------------------------------------------------

    def rotate_qr(self, expires_in_s: float) -> None:
        """Issue the next QR string (and log it, so the client shows the new one)."""
        self.qr_serial += 1
        self.qr = f"2@{secrets.token_urlsafe(24)},{self.name},{self.qr_serial}"
        self.qr_rotated_at = time.monotonic()
        if self.qr_serial > 1:
            self.append({"type": "qr", "code": self.qr, "expires_in_s": expires_in_s})

    def _drop_stale_qrs(self) -> None:
        # QR codes logged for an earlier pairing connection are dead; a client must not
        # show one after reconnecting.
        self.log = [event for event in self.log if event["type"] != "qr"]

    def request_pairing_code(self, phone: str) -> str:
        if not self.pairing:
            raise WebRefusal(409, "not_pairing", "a pairing code needs a session that is pairing")
        code = secrets.token_hex(4).upper()
        self.pairing_codes[code] = phone
        return f"{code[:4]}-{code[4:]}"

    def link(self, phone: str | None) -> Device:
        """Link the pairing connection's device (a scan or an entered code)."""
        if not self.pairing:
            raise WebRefusal(409, "not_pairing", f"session is {self.state()}, not pairing")
        phone = phone or default_phone(self.name)
        device = Device(
            token=secrets.token_urlsafe(24),
            phone=phone,
            lid=lid_for(phone),
            push_name=f"Sandbox {phone[-4:]}",
        )
        self.device = device
        self.qr = None
        self.pairing_codes.clear()
        self._drop_stale_qrs()
        if not self.groups:
            self.groups = default_groups(self.name, device)
        self.append({"type": "paired", "token": device.token, "me": self.me()})
        return device

    def logout(self, reason: str) -> None:
        """Unlink the device: its token stops working and its unacked events go."""
        self.close(LOGGED_OUT, reason)
        self.device = None
        self.log.clear()
        self.acked = self.next_seq - 1


def default_phone(name: str) -> str:
    """A stable sandbox number for session ``name`` (the phone that scans by default)."""
    digits = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100_000_000
    # A German mobile range, so the number passes phonenumbers' validity check.
    return f"+49151{digits:08d}"


def default_groups(name: str, device: Device) -> dict[str, dict[str, Any]]:
    """Two groups a freshly linked number is in, with a member known only by LID."""
    serial = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10**8
    groups = {}
    for index, title in enumerate(("Artists", "Clients"), start=1):
        chat_id = f"1203630{serial:08d}{index:03d}@g.us"
        groups[chat_id] = {
            "chat_id": chat_id,
            "name": f"Sandbox {title}",
            "participants": [
                {"phone": device.phone, "lid": device.lid, "rank": "creator"},
                {"phone": "+4915123456789", "lid": lid_for("+4915123456789"), "rank": "admin"},
                {"phone": None, "lid": f"7669967701{index:04d}@lid", "rank": "member"},
            ],
        }
    return groups


MESSAGE_IDS = itertools.count(1)


def new_message_id() -> str:
    """A WhatsApp-looking message id (``3EB0`` + hex), unique in this process."""
    return f"3EB0{secrets.token_hex(6).upper()}{next(MESSAGE_IDS):06X}"
