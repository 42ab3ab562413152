"""WhatsApp Web sessions as the API and CLI see them: their state, and what an operator
asks of them (start, stop, restart, logout, a QR, a pairing code).

The API process holds no connection. It writes what is wanted on the channel row
(``session_desired``, ``session_epoch``, ``session_logout_requested``, ``pair_phone``)
and wakes the session process (``wahub sessions``), which alone holds the phone and
writes back what happened (state, QR, pairing code). Both sides read the row: it is the
truth, the wake-up only saves a poll interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.domain.errors import (
    ConflictError,
    DailyCapReached,
    NotFound,
    SessionLinked,
    SessionNotWorking,
    ValidationError,
)
from wahub.domain.phones import normalize_phone
from wahub.providers.web.session import SessionState
from wahub.store import channels as channel_q
from wahub.store import sessions as q
from wahub.store.database import Database
from wahub.store.notify import SESSIONS, notify_sync

RUNNING = "running"
STOPPED = "stopped"
# States in which the phone is linked: no QR or pairing code to give.
LINKED = frozenset({SessionState.WORKING, SessionState.DEGRADED})
# A young number is capped for this long after it was first linked.
NEW_NUMBER_SECONDS = 7 * 24 * 3600
DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class QrView:
    code: str
    expires_at: float | None


def effective_state(
    channel: dict[str, Any], *, now: float, keepalive_timeout_s: float
) -> tuple[str, str | None]:
    """The session's state and reason as they are now: a ``working`` session whose
    process stopped vouching for it (``last_keepalive_at`` older than the timeout: the
    process died, or its connection hangs) is ``degraded``, never shown as working."""
    state = channel.get("session_state") or SessionState.STOPPED.value
    reason = channel.get("session_reason")
    if state == SessionState.WORKING:
        last = channel.get("last_keepalive_at")
        silent = None if last is None else now - float(last)
        if silent is None or silent > keepalive_timeout_s:
            since = "ever" if silent is None else f"{silent:.0f} s"
            return (
                SessionState.DEGRADED.value,
                f"no keep-alive for {since}: is the session process (wahub sessions) running?",
            )
    return state, reason


def session_view(
    channel: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    now: float,
    keepalive_timeout_s: float,
) -> dict[str, Any]:
    """A web channel's session as the API shows it (times as unix seconds)."""
    state, reason = effective_state(channel, now=now, keepalive_timeout_s=keepalive_timeout_s)
    me = None
    if channel.get("me_phone") or channel.get("me_lid"):
        me = {
            "phone": channel.get("me_phone"),
            "lid": channel.get("me_lid"),
            "push_name": channel.get("push_name"),
        }
    return {
        "channel_id": channel["id"],
        "name": channel["name"],
        "state": state,
        "reason": reason,
        "since": channel.get("session_state_at"),
        "desired": channel.get("session_desired") or STOPPED,
        "me": me,
        "last_keepalive_at": channel.get("last_keepalive_at"),
        "linked_at": channel.get("linked_at"),
        "held_by": channel.get("session_lease_owner"),
        "history": [{"state": h["state"], "reason": h["reason"], "at": h["at"]} for h in history],
    }


def daily_cap_resets_at(now: float) -> float:
    """The next midnight UTC: when a day's sends stop counting."""
    return (now // DAY_SECONDS + 1) * DAY_SECONDS


def effective_daily_cap(channel: dict[str, Any], default_cap: int, now: float) -> int | None:
    """The cap that holds for ``channel`` now: its own ``daily_cap``, else ``default_cap``
    while its number was linked less than a week ago; None when it is uncapped."""
    if channel.get("daily_cap") is not None:
        return int(channel["daily_cap"])
    linked_at = channel.get("linked_at")
    if linked_at is None or now - float(linked_at) < NEW_NUMBER_SECONDS:
        return default_cap
    return None


class WebSessions:
    """Control and state of web channels' sessions; every method takes a channel's id
    or name and raises NotFound for none, ValidationError for a channel not ``web``."""

    def __init__(
        self,
        db: Database,
        *,
        on_request: Callable[[], None] | None = None,
        default_daily_cap: int = 200,
        keepalive_timeout_s: float = 10.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self.db = db
        self.keepalive_timeout_s = keepalive_timeout_s
        self.on_request = on_request or (lambda: None)
        self.default_daily_cap = default_daily_cap
        self.poll_seconds = poll_seconds

    async def _web_channel(self, ref: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            channel = await channel_q.find_channel(conn, ref)
        if channel is None:
            raise NotFound(f"no channel {ref!r} (by id or name)", details={"channel": ref})
        if channel["kind"] != "web":
            raise ValidationError(
                f"channel {channel['name']!r} is a {channel['kind']} channel: only web "
                "channels have a session",
                details={"field": "channel", "kind": channel["kind"]},
            )
        return channel

    async def status(self, ref: str) -> dict[str, Any]:
        channel = await self._web_channel(ref)
        async with self.db.read() as conn:
            history = await q.state_history(conn, channel["id"])
        return session_view(
            channel, history, now=time.time(), keepalive_timeout_s=self.keepalive_timeout_s
        )

    async def _request(self, ref: str, values: dict[str, Any]) -> dict[str, Any]:
        channel = await self._web_channel(ref)
        async with self.db.transaction() as conn:
            await channel_q.update_channel(conn, channel["id"], values)
            await conn.run_sync(notify_sync, SESSIONS)
        self.on_request()
        return await self.status(channel["id"])

    async def start(self, ref: str) -> dict[str, Any]:
        """Want the session running: it resumes from stored credentials, or pairs. A
        session that ended (failed, logged out) is opened anew."""
        channel = await self._web_channel(ref)
        values: dict[str, Any] = {"session_desired": RUNNING}
        if channel.get("session_state") in (SessionState.FAILED, SessionState.LOGGED_OUT):
            values["session_epoch"] = int(channel["session_epoch"]) + 1
        return await self._request(channel["id"], values)

    async def stop(self, ref: str) -> dict[str, Any]:
        """Want the session stopped; its credentials are kept (a start resumes)."""
        return await self._request(ref, {"session_desired": STOPPED})

    async def restart(self, ref: str) -> dict[str, Any]:
        """Want the session closed and opened again (a new epoch), then running."""
        channel = await self._web_channel(ref)
        return await self._request(
            channel["id"],
            {"session_desired": RUNNING, "session_epoch": int(channel["session_epoch"]) + 1},
        )

    async def logout(self, ref: str) -> dict[str, Any]:
        """Want the device unlinked and its credentials deleted; the session stays
        stopped until started again (which pairs anew)."""
        return await self._request(
            ref, {"session_desired": STOPPED, "session_logout_requested": True}
        )

    async def qr(self, ref: str) -> QrView:
        """The QR string to scan now. Raises SessionLinked (409) when the phone is linked,
        SessionNotWorking (409) naming the state when no QR is shown (not started yet)."""
        channel = await self._web_channel(ref)
        state = channel.get("session_state") or SessionState.STOPPED.value
        if state in LINKED:
            raise SessionLinked(
                f"channel {channel['name']!r} is linked ({state}) as "
                f"{channel.get('me_phone') or 'an unknown number'}: there is no QR to scan "
                "(log out first to link another phone)",
                details={"state": state},
            )
        now = time.time()
        expires = channel.get("qr_expires_at")
        if (
            state != SessionState.SCAN_QR
            or not channel.get("qr")
            or (expires is not None and expires < now)
        ):
            raise SessionNotWorking(
                f"channel {channel['name']!r} shows no QR code now (session {state}"
                f"{': ' + channel['session_reason'] if channel.get('session_reason') else ''}"
                "); start the session and ask again",
                details={"state": state},
            )
        return QrView(code=str(channel["qr"]), expires_at=expires)

    async def request_pairing_code(self, ref: str, phone: str, *, wait_s: float) -> str:
        """Ask the session process for a pairing code for ``phone`` and wait up to
        ``wait_s`` for it. Raises ValidationError (422) for an unparsable phone,
        SessionLinked (409) when linked, ConflictError (409) when the session process
        answered with a refusal or did not answer in time."""
        e164 = normalize_phone(phone, field="phone")
        channel = await self._web_channel(ref)
        state = channel.get("session_state") or SessionState.STOPPED.value
        if state in LINKED:
            raise SessionLinked(
                f"channel {channel['name']!r} is already linked ({state})",
                details={"state": state},
            )
        async with self.db.transaction() as conn:
            await channel_q.update_channel(
                conn,
                channel["id"],
                {
                    "pair_phone": e164,
                    "pairing_code": None,
                    "pairing_error": None,
                    "session_desired": RUNNING,
                },
            )
            await conn.run_sync(notify_sync, SESSIONS)
        self.on_request()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll_seconds)
            async with self.db.read() as conn:
                row = await channel_q.get_channel(conn, channel["id"])
            if row is None:
                break
            if row.get("pairing_code"):
                return str(row["pairing_code"])
            if row.get("pairing_error"):
                raise ConflictError(
                    f"no pairing code for {e164}: {row['pairing_error']}",
                    details={"state": row.get("session_state")},
                )
        raise ConflictError(
            f"no pairing code for {e164} within {wait_s:g} s: is `wahub sessions` running? "
            f"(session {state})",
            details={"state": state},
        )


# What a WhatsApp Web session can send (Cloud API templates, interactive messages and
# the like exist only on the Business API).
WEB_SENDABLE_TYPES = frozenset({"text", "image", "video", "audio", "document"})


def check_web_send_sync(
    conn: SyncConnection,
    channel: dict[str, Any],
    *,
    message_type: str,
    now: float,
    default_daily_cap: int,
    keepalive_timeout_s: float,
) -> None:
    """Refuse a send through web channel ``channel`` now, re-reading its row: a type a
    session cannot send (ValidationError, 422), a session not ``working``
    (SessionNotWorking naming its state, 409), a daily cap reached (DailyCapReached,
    409, saying when it resets)."""
    if message_type not in WEB_SENDABLE_TYPES:
        raise ValidationError(
            f"type: a web channel sends {', '.join(sorted(WEB_SENDABLE_TYPES))}, "
            f"not {message_type}",
            details={"field": "type", "value": message_type},
        )
    fresh = channel_q.get_channel_sync(conn, channel["id"]) or channel
    state, reason = effective_state(fresh, now=now, keepalive_timeout_s=keepalive_timeout_s)
    if state != SessionState.WORKING:
        raise SessionNotWorking(
            f"channel {fresh['name']!r} cannot send: its session is {state}"
            f"{' (' + reason + ')' if reason else ''}",
            details={"channel": fresh["id"], "state": state},
        )
    cap = effective_daily_cap(fresh, default_daily_cap, now)
    if cap is None:
        return
    sent = q.count_sends_since_sync(conn, fresh["id"], now // DAY_SECONDS * DAY_SECONDS)
    if sent >= cap:
        resets = daily_cap_resets_at(now)
        raise DailyCapReached(
            f"channel {fresh['name']!r} reached its daily cap of {cap} messages (a "
            "number linked less than a week ago is capped against bans); it resets at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(resets))}",
            details={"channel": fresh["id"], "cap": cap, "resets_at": resets},
        )
