"""The session process: holds the WhatsApp Web connections of the web channels it
leases, keeps their state on the channel rows, stores their events in the inbox and
sends their messages.

- Ownership: a session lease per phone (``store/sessions.py``), renewed every half
  second; a phone whose lease another process holds is never opened here, so two
  processes never fight over one session ("stream replaced").
- Control: the API writes what is wanted on the row (desired state, epoch, logout, a
  pairing phone); each pass reconciles every held session with it.
- Events: data events (messages, receipts, group changes, LID links) are journaled
  (``spool.py``) before the engine acknowledges them, then stored in the inbox under
  provider ``web``; the inbox processor applies them. State events become the row's
  state, with a history row for each change.
- Truth: ``working`` only after ``Connected`` and while no keep-alive is missed; the
  process stamps ``last_keepalive_at`` of its working sessions every pass, so a reader
  sees a session of a dead process go stale (``effective_state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wahub.config import Settings
from wahub.domain.errors import RetryableProviderError, WahubError
from wahub.features.identities import store_session_groups_sync
from wahub.pipeline.intake import WebhookIntake
from wahub.pipeline.outbox import worker_identity
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.registry import ProviderRegistry
from wahub.providers.web import events as codec
from wahub.providers.web.provider import MediaFetcher, WebProvider
from wahub.providers.web.session import (
    Connected,
    ConnectFailed,
    Disconnected,
    KeepAliveMissed,
    KeepAliveRestored,
    LoggedOut,
    QrCode,
    SessionEvent,
    SessionState,
    StreamReplaced,
    TemporaryBan,
    WebSession,
)
from wahub.sessions.engines import Engines
from wahub.sessions.sender import SessionSender
from wahub.sessions.spool import EventSpool
from wahub.store import sessions as q
from wahub.store.database import Database
from wahub.store.secret_key import load_cipher

log = logging.getLogger("wahub.sessions")

CONTROL_SECONDS = 0.5
# Events that end a connection for good: it is not reopened until asked (a restart, a
# start) or until another process takes the phone, so a ban or a replaced stream does
# not turn into a reconnect loop.
_ENDING = (LoggedOut, StreamReplaced, TemporaryBan, ConnectFailed)
_UNLINKED: dict[str, Any] = {
    "me_phone": None,
    "me_lid": None,
    "push_name": None,
    "linked_at": None,
    "qr": None,
    "qr_expires_at": None,
    "pair_phone": None,
    "pairing_code": None,
}


@dataclass
class _Live:
    session: WebSession
    epoch: int
    token: object
    state: SessionState = SessionState.STARTING
    ended: bool = False
    pairing_for: str | None = None


@dataclass(frozen=True)
class _Write:
    channel_id: str
    state: str | None
    reason: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    linked: bool = False
    at: float = field(default_factory=time.time)


def transition(event: SessionEvent, now: float) -> tuple[SessionState, str | None, dict[str, Any]]:
    """The state a session is in after a state event, its reason, and the channel
    columns the event sets."""
    if isinstance(event, QrCode):
        return (
            SessionState.SCAN_QR,
            None,
            {"qr": event.code, "qr_expires_at": now + event.expires_in_s},
        )
    if isinstance(event, Connected):
        return (
            SessionState.WORKING,
            None,
            {
                "qr": None,
                "qr_expires_at": None,
                "me_phone": event.me_phone,
                "me_lid": event.me_lid,
                "push_name": event.push_name,
                "last_keepalive_at": now,
                "status": "connected",
                "verified_at": now,
                "pair_phone": None,
            },
        )
    if isinstance(event, KeepAliveMissed):
        return SessionState.DEGRADED, "keep-alive missed: the connection may be dead", {}
    if isinstance(event, KeepAliveRestored):
        return SessionState.WORKING, None, {"last_keepalive_at": now}
    if isinstance(event, Disconnected):
        return SessionState.STARTING, f"disconnected ({event.reason}); reconnecting", {}
    if isinstance(event, LoggedOut):
        return SessionState.LOGGED_OUT, event.reason or "logged out", dict(_UNLINKED)
    if isinstance(event, StreamReplaced):
        return (
            SessionState.FAILED,
            "stream replaced: another client opened this phone's session",
            {},
        )
    if isinstance(event, TemporaryBan):
        lasting = f" for {event.expires_in_s:.0f} s" if event.expires_in_s else ""
        return SessionState.FAILED, f"temporarily banned{lasting}: {event.reason}", {}
    if isinstance(event, ConnectFailed):
        return SessionState.FAILED, event.reason, {}
    raise TypeError(f"not a state event: {event!r}")


class SessionProcess:
    """Run with ``run()`` until ``stop()``; ``wakeup.notify()`` makes the next control
    pass come at once (an operator's request, a notification)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        engines: Engines | None = None,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner or f"sessions@{worker_identity()}"
        self.engines = engines or Engines(settings)
        self.wakeup = Wakeup()
        self.outbox_wakeup = Wakeup()
        self.intake = WebhookIntake(db)
        self.spool = EventSpool(self.engines.state_dir / "journal")
        self.media = MediaFetcher(
            max_bytes=settings.web_media_max_bytes, timeout_s=settings.web_media_timeout_seconds
        )
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.providers = ProviderRegistry(load_cipher(secret_key, settings.database_url))
        self.providers.serve_session_channels(self._provider_for)
        self.sender = SessionSender(
            db,
            settings,
            self.providers,
            self.outbox_wakeup,
            sendable=self.working_channels,
            worker_id=self.owner,
        )
        self._live: dict[str, _Live] = {}
        self._writes: asyncio.Queue[_Write] = asyncio.Queue()
        self._spooled = Wakeup()
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.stored_events = 0
        self.group_syncs = 0

    # -- what the sender sees --------------------------------------------------------------

    def working_channels(self) -> set[str]:
        return {
            cid
            for cid, live in self._live.items()
            if live.state == SessionState.WORKING and not live.ended
        }

    def held_channels(self) -> set[str]:
        return set(self._live)

    def _provider_for(self, channel_id: str) -> WebProvider:
        live = self._live.get(channel_id)
        if live is None or live.ended:
            raise RetryableProviderError(f"the session of channel {channel_id} is not open here")
        return WebProvider(live.session, self.media)

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        await self._drain()  # what a killed predecessor journaled, first
        writer = asyncio.create_task(self._write_states(), name="sessions-states")
        drainer = asyncio.create_task(self._drain_loop(), name="sessions-journal")
        sender = asyncio.create_task(self.sender.run(), name="sessions-sender")
        try:
            while not self._stopping.is_set():
                try:
                    await self._control_pass()
                except WahubError as exc:
                    log.warning("session control pass failed: %s", exc.message)
                await self.wakeup.wait(CONTROL_SECONDS)
        finally:
            self.sender.stop()
            with contextlib.suppress(Exception):
                await sender
            for background in list(self._background):
                background.cancel()
            for channel_id in list(self._live):
                await self._close(channel_id)
                self._writes.put_nowait(
                    _Write(channel_id, SessionState.STOPPED, "the session process stopped")
                )
            await self._writes.join()
            writer.cancel()
            drainer.cancel()
            for task in (writer, drainer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._drain()
            self.spool.close()
            with contextlib.suppress(WahubError):
                async with self.db.transaction() as conn:
                    await q.release_session_leases(conn, owner=self.owner)
            await self.engines.close()
            await self.media.close()
            await self.providers.close()

    # -- control ---------------------------------------------------------------------------

    async def _control_pass(self) -> None:
        now = time.time()
        async with self.db.transaction() as conn:
            rows = await q.acquire_session_leases(
                conn,
                owner=self.owner,
                now=now,
                lease_seconds=self.settings.session_lease_seconds,
                limit=self.settings.sessions_max_channels,
            )
            working = sorted(self.working_channels() & {r["id"] for r in rows})
            if working:
                await q.stamp_keepalives(conn, working, now)
        held = {row["id"]: row for row in rows}
        for channel_id in list(self._live):
            if channel_id not in held:
                log.warning("session lease lost", extra={"channel_id": channel_id})
                await self._close(channel_id)
        for row in rows:
            try:
                await self._reconcile(row)
            except WahubError as exc:
                self._writes.put_nowait(_Write(row["id"], SessionState.FAILED, exc.message))

    async def _reconcile(self, row: dict[str, Any]) -> None:
        channel_id = row["id"]
        live = self._live.get(channel_id)
        if row["session_logout_requested"]:
            await self._logout(row)
            return
        if row["session_desired"] != "running":
            if live is not None:
                await self._close(channel_id)
            if live is not None or row["session_state"] not in (
                None,
                SessionState.STOPPED,
                SessionState.LOGGED_OUT,
            ):
                self._writes.put_nowait(_Write(channel_id, SessionState.STOPPED, None))
            return
        if live is not None and live.epoch != int(row["session_epoch"]):
            await self._close(channel_id)
            live = None
        if live is None:
            await self._open(row)
            return
        phone = row["pair_phone"]
        if (
            phone
            and live.pairing_for != phone
            and live.state == SessionState.SCAN_QR
            and not row["pairing_code"]
        ):
            live.pairing_for = phone
            try:
                code = await live.session.pair_phone(phone)
            except WahubError as exc:
                self._writes.put_nowait(
                    _Write(channel_id, None, values={"pairing_error": exc.message})
                )
            else:
                self._writes.put_nowait(_Write(channel_id, None, values={"pairing_code": code}))

    async def _open(self, row: dict[str, Any]) -> None:
        channel_id = row["id"]
        engine = self.engines.for_channel(row)
        token = object()
        session = engine.open(
            channel_id, on_event=functools.partial(self._on_event, channel_id, token)
        )
        self._live[channel_id] = _Live(session, int(row["session_epoch"]), token)
        self._writes.put_nowait(
            _Write(
                channel_id,
                SessionState.STARTING,
                None,
                {"pairing_code": None, "pairing_error": None},
            )
        )
        log.info("opening session", extra={"channel_id": channel_id, "engine": engine.name})
        # In the background: a dial may take the engine's whole timeout, and the control
        # loop must keep renewing every lease meanwhile, or another process would take
        # this phone while it dials and the two would replace each other's stream.
        task = asyncio.create_task(self._start(channel_id, token, session))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start(self, channel_id: str, token: object, session: WebSession) -> None:
        try:
            await session.start()
        except WahubError as exc:
            self._on_event(channel_id, token, ConnectFailed(exc.message))
        except OSError as exc:
            self._on_event(channel_id, token, ConnectFailed(f"{type(exc).__name__}: {exc}"))

    async def _close(self, channel_id: str) -> None:
        live = self._live.pop(channel_id, None)
        if live is None:
            return
        try:
            await live.session.stop()
        except (WahubError, OSError) as exc:
            log.warning("stopping session %s: %s", channel_id, exc)

    async def _logout(self, row: dict[str, Any]) -> None:
        channel_id = row["id"]
        live = self._live.pop(channel_id, None)
        if live is None:
            token = object()
            session = self.engines.for_channel(row).open(
                channel_id, on_event=functools.partial(self._on_event, channel_id, token)
            )
        else:
            session = live.session
        try:
            await session.logout()
        except (WahubError, OSError) as exc:
            log.warning("logging out session %s: %s", channel_id, exc)
        self._writes.put_nowait(
            _Write(
                channel_id,
                SessionState.LOGGED_OUT,
                "logged out on request",
                {**_UNLINKED, "session_logout_requested": False},
            )
        )
        await self._writes.join()

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, channel_id: str, token: object, event: SessionEvent) -> None:
        """Called by the engine on our loop. Data events are journaled before this
        returns (the engine acknowledges them then); state events of a session that was
        closed meanwhile are dropped."""
        if isinstance(event, codec.DATA_EVENTS):
            key, body = codec.encode(channel_id, event)
            self.spool.append(key, body)
            self._spooled.notify()
            return
        live = self._live.get(channel_id)
        if live is None or live.token is not token:
            return
        now = time.time()
        state, reason, values = transition(event, now)
        live.state = state
        if isinstance(event, _ENDING):
            live.ended = True
        self._writes.put_nowait(
            _Write(channel_id, state, reason, values, linked=isinstance(event, Connected), at=now)
        )
        if state == SessionState.WORKING:
            self.outbox_wakeup.notify()
        if isinstance(event, Connected):
            # The group directory and the lookup come from the phone itself: no WHAPI.
            task = asyncio.create_task(self._sync_groups(channel_id, token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _sync_groups(self, channel_id: str, token: object) -> None:
        live = self._live.get(channel_id)
        if live is None or live.token is not token:
            return
        try:
            groups = await live.session.list_groups()
            now = time.time()
            await self.db.write(
                lambda conn: store_session_groups_sync(conn, channel_id, groups, now)
            )
        except (WahubError, OSError) as exc:
            # The next connect tries again; group changes keep arriving as events.
            log.warning("listing the groups of session %s failed: %s", channel_id, exc)
            return
        self.group_syncs += 1
        log.info("session %s: %d groups in the directory", channel_id, len(groups))

    async def _write_states(self) -> None:
        while True:
            write = await self._writes.get()
            delay = 0.2
            try:
                while True:
                    try:
                        await self._write(write)
                        break
                    except WahubError as exc:
                        # Kept in order: a later state must not be overtaken by this one.
                        log.warning("recording session state failed, retrying: %s", exc.message)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
            finally:
                self._writes.task_done()

    async def _write(self, write: _Write) -> None:
        async with self.db.transaction() as conn:
            if write.state is None:
                await q.update_session_values(conn, write.channel_id, write.values)
            else:
                changed = await q.record_session_state(
                    conn,
                    write.channel_id,
                    state=write.state,
                    reason=write.reason,
                    now=write.at,
                    values=write.values,
                )
                if changed:
                    log.info(
                        "session %s: %s%s",
                        write.channel_id,
                        write.state,
                        f" ({write.reason})" if write.reason else "",
                    )
            if write.linked:
                await q.mark_linked(conn, write.channel_id, write.at)

    async def _drain_loop(self) -> None:
        backlog = False
        while True:
            await self._spooled.wait(CONTROL_SECONDS)
            if self.spool.pending or backlog:
                try:
                    await self._drain()
                    backlog = False
                except Exception:
                    backlog = True
                    # Journaled events stay on disk; the next drain stores them. Dying
                    # here would leave a process that connects but stores nothing.
                    log.exception("storing session events failed, retrying")
                    await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        self.stored_events += await self.spool.drain(self._store)

    async def _store(self, entries: Sequence[tuple[str, bytes]]) -> None:
        """Store a burst of journaled events, in order. Submitted together, the intake's
        WriteBatcher writes them as one multi-row insert in one transaction, not one
        transaction each. Raises the first error once every submission has ended."""
        results = await asyncio.gather(
            *(
                self.intake.store(provider=codec.PROVIDER, dedupe_key=key, headers={}, body=body)
                for key, body in entries
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
