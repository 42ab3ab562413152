"""The web session engine on neonize (whatsmeow): real phones linked by QR or pairing code.

How it keeps neonize's hazards away from the session process:

- Every call into the Go library runs on the session's own thread pool, never on the
  event loop and never on the loop's default executor (neonize's asyncio client parks a
  default-executor thread per connection for its whole life and sends every call there).
  We use neonize's synchronous client: its ``connect`` blocks for the life of the
  connection, on one of our threads.
- A Go panic aborts the whole process, and some calls panic on a client that is not
  connected (``get_pn_from_lid``, ``get_me``). Those calls are made only while this
  session saw ``Connected`` and no disconnect since, and ``stop`` waits for calls in
  flight before it releases the Go client.
- Media is only ever bytes (``WebOutbound.media``); a string would make neonize fetch a
  URL with no timeout, so the protobufs are built here (``neonize_outbound``).
- Every wait is bounded: a dial that neither connects nor shows a QR within
  ``dial_timeout_s`` becomes ``ConnectFailed``; calls time out after ``call_timeout_s``;
  ``stop`` returns after ``stop_timeout_s`` whatever Go does.

neonize calls our handlers on its own threads; each handler maps the protobuf to port
events (``neonize_events``, pure) and hops onto the loop that started the session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from neonize._binder import ProxySettings
from neonize.client import NewClient
from neonize.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    GroupInfoEv,
    JoinedGroupEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)

from wahub.domain.errors import (
    ConflictError,
    PermanentProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
)
from wahub.domain.phones import normalize_phone
from wahub.providers.base import GroupInfo, SendResult
from wahub.providers.web import neonize_events as mapping
from wahub.providers.web.neonize_outbound import (
    MEDIA_KINDS,
    build_jid,
    media_message,
    text_message,
)
from wahub.providers.web.neonize_store import CredentialStore, credential_store
from wahub.providers.web.session import (
    Connected,
    ConnectFailed,
    Disconnected,
    IdentityLinked,
    KeepAliveMissed,
    KeepAliveRestored,
    LoggedOut,
    MessageReceived,
    OnEvent,
    QrCode,
    SessionEvent,
    StreamReplaced,
    TemporaryBan,
    WebOutbound,
)

__all__ = ["NeonizeEngine", "NeonizeSession", "build_engine"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# whatsmeow shows the first QR code for about 60 s, each next one for about 20 s.
_FIRST_QR_S = 60.0
_NEXT_QR_S = 20.0

Mapper = Callable[[Any], list[SessionEvent]]

# Events whose mapping needs nothing from the session: neonize event type -> mapper.
_PLAIN_EVENTS: dict[Any, Mapper] = {
    MessageEv: mapping.map_message,
    ReceiptEv: mapping.map_receipt,
    GroupInfoEv: mapping.map_group_change,
    JoinedGroupEv: mapping.map_joined_group,
    TemporaryBanEv: mapping.map_temporary_ban,
    ConnectFailureEv: mapping.map_connect_failure,
    PairStatusEv: mapping.map_pair_status,
    DisconnectedEv: mapping.map_disconnected,
    KeepAliveTimeoutEv: lambda _e: [KeepAliveMissed()],
    KeepAliveRestoredEv: lambda _e: [KeepAliveRestored()],
    StreamReplacedEv: lambda _e: [StreamReplaced()],
    ClientOutdatedEv: lambda _e: [ConnectFailed(reason="WhatsApp says this client is outdated")],
}

# After these the connection is gone and whatsmeow does not come back by itself (or, for
# Disconnected, not yet): calls that need a live client must wait.
_CONNECTION_LOST = (Disconnected, LoggedOut, StreamReplaced, TemporaryBan, ConnectFailed)


class _CallTimedOut(RetryableProviderError):
    """A neonize call did not return within ``call_timeout_s`` (its thread goes on)."""


def _device_jid(jid: Any) -> str | None:
    if jid is None or not jid.User:
        return None
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


class NeonizeSession:
    """One channel's connection through neonize. Build it with ``NeonizeEngine.open``."""

    def __init__(
        self,
        channel_id: str,
        *,
        store: CredentialStore,
        on_event: OnEvent,
        dial_timeout_s: float,
        call_timeout_s: float,
        stop_timeout_s: float,
        proxy: str | None = None,
    ) -> None:
        self.channel_id = channel_id
        self._proxy = ProxySettings(proxy_address=proxy) if proxy else None
        self._store = store
        self._on_event = on_event
        self._dial_timeout_s = dial_timeout_s
        self._call_timeout_s = call_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None
        self._connection: asyncio.Future[Any] | None = None
        self._dial_timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._stop_task: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Only touched on the loop (handlers hop there first).
        self._connected = False
        self._pairing = False
        self._qr_count = 0
        self._stopping = False
        self._failed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Dial: resume the stored device, or begin pairing (``QrCode`` events). Returns
        once the dial is under way; its outcome arrives as events."""
        if self._client is not None:
            await self.stop()
        self._loop = asyncio.get_running_loop()
        self._stopping = self._connected = self._pairing = self._failed = False
        self._qr_count = 0
        await self._store.prepare()
        device = await self._store.device_of(self.channel_id)
        # Without a device id whatsmeow resumes the first device in the store, which on
        # the shared PostgreSQL store may be another channel's: ask for a new one.
        client = NewClient(
            self._store.neonize_name(self.channel_id),
            jid=build_jid(device) if device else None,
            uuid=self.channel_id,
            new_device=device is None,
        )
        executor = self.attach(client)
        dialing = executor.submit(client.connect, self._proxy)
        connection = asyncio.wrap_future(dialing, loop=self._loop)
        connection.add_done_callback(self._connection_ended)
        self._connection = connection
        self._dial_timer = self._loop.call_later(self._dial_timeout_s, self._dial_timed_out)

    def attach(self, client: Any) -> ThreadPoolExecutor:
        """Take ``client`` (a neonize ``NewClient``) as this session's: its events now
        arrive as port events on the running loop. ``start`` attaches the client it
        dials; tests attach an unconnected one and feed it events through neonize's own
        dispatcher. Returns the session's thread pool."""
        self._loop = asyncio.get_running_loop()
        self._client = client
        self._register_handlers(client)
        # Our own pool: one thread stays in ``connect`` for the life of the connection,
        # the others carry calls (sends, group lists) while it does.
        self._executor = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=f"neonize-{self.channel_id}"
        )
        return self._executor

    async def stop(self) -> None:
        """Disconnect and keep the credentials. Returns within about twice
        ``stop_timeout_s`` whatever the Go side does. Stops asked for at once (the dial
        timer's and the caller's) share one."""
        self._stopping = True
        self._connected = False
        self._cancel_dial_timer()
        if self._client is None:
            return
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._release())
        await asyncio.shield(self._stop_task)

    async def _release(self) -> None:
        client, executor, connection = self._client, self._executor, self._connection
        # A call still inside Go when the client is released could meet a nil client
        # and panic: let calls in flight finish first (bounded).
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=self._stop_timeout_s)
        try:
            await asyncio.wait_for(_in_own_thread(client.stop), self._stop_timeout_s)
            if connection is not None:
                await asyncio.wait_for(asyncio.shield(connection), self._stop_timeout_s)
        except TimeoutError:
            log.warning("neonize session %s did not stop in time; left behind", self.channel_id)
        except Exception:
            # The connection's own outcome was already reported by _connection_ended.
            log.debug("neonize session %s ended with an error", self.channel_id, exc_info=True)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._client = self._executor = self._connection = None
        self._stop_task = None

    async def logout(self) -> None:
        """Unlink this device from the phone (when connected) and delete the stored
        credentials. Returns within the engine's timeouts."""
        if self._connected:
            try:
                await self._call(self._client.logout)
            except RetryableProviderError as error:
                # The credentials go anyway: the phone drops a device it no longer
                # hears from, and keeping them would resume a session asked to end.
                log.warning("neonize logout of %s failed: %s", self.channel_id, error)
        await self.stop()
        await self._store.forget(self.channel_id)

    # -- operations ------------------------------------------------------------------------

    async def pair_phone(self, phone: str) -> str:
        """A pairing code for ``phone`` (E.164). Raises ``ValidationError`` for a number
        that is not one, ``ConflictError`` when the session is not pairing (no QR shown
        yet, or already linked)."""
        digits = normalize_phone(phone, field="phone")[1:]
        if not self._pairing or self._connected or self._client is None:
            raise ConflictError(
                "a pairing code can only be requested while the session shows QR codes"
            )
        code: str = await self._call(self._client.PairPhone, digits, True)
        return code

    async def send(self, message: WebOutbound) -> SendResult:
        """Send ``message``. Raises ``RetryableProviderError`` while not connected,
        ``PermanentProviderError`` for a message that cannot be built,
        ``ProviderOutcomeUnknown`` when WhatsApp did not answer in time."""
        to = build_jid(message.to)
        quoted_sender = message.to if message.reply_to and "@g.us" not in message.to else None
        # Checked before anything leaves: a message that cannot be built never will be.
        if message.kind == "text":
            if not message.text:
                raise PermanentProviderError("a text message needs text")
        elif message.kind in MEDIA_KINDS:
            if not isinstance(message.media, bytes) or not message.media:
                # Never a URL: neonize would fetch it itself, with no timeout.
                raise PermanentProviderError(f"a {message.kind} message needs its media as bytes")
        else:
            raise PermanentProviderError(f"cannot send a {message.kind!r} message")
        client = self._live_client()
        if message.kind == "text":
            body = text_message(message.text or "", message.reply_to, quoted_sender)
        else:
            upload = await self._call(client.upload, message.media, MEDIA_KINDS[message.kind])
            body = media_message(
                message.kind,
                upload,
                mimetype=message.mimetype,
                caption=message.text,
                filename=message.filename,
                reply_to=message.reply_to,
                quoted_sender=quoted_sender,
            )
        try:
            response = await self._call(client.send_message, to, body)
        except _CallTimedOut as error:
            raise ProviderOutcomeUnknown(f"the send may have left: {error}") from error
        except RetryableProviderError as error:
            # whatsmeow gives up waiting for the server's ack with "timed out": the
            # message may be out, and a resend could deliver it twice.
            if "timed out" in str(error):
                raise ProviderOutcomeUnknown(f"the send may have left: {error}") from error
            raise
        wa_id = to.User if to.Server == mapping.PERSON_SERVER else None
        return SendResult(provider_message_id=response.ID, wa_id=wa_id)

    async def list_groups(self) -> tuple[GroupInfo, ...]:
        client = self._live_client()
        groups = await self._call(client.get_joined_groups)
        found = (mapping.group_info(group) for group in groups)
        return tuple(group for group in found if group is not None)

    async def phone_for_lid(self, lid: str) -> str | None:
        """The phone whatsmeow has stored for linked id ``lid``, or None. Asked only of a
        connected client: on any other neonize's ``get_pn_from_lid`` panics in Go and
        aborts the process, so here it answers None instead."""
        client = self._client
        if not await self._really_connected():
            return None
        jid = await self._call(client.get_pn_from_lid, build_jid(lid))
        return mapping.jid_phone(jid)

    async def _really_connected(self) -> bool:
        """Connected by our events and by the Go client's own word (asking it is safe
        on any client): both, before a call that panics on an unconnected one."""
        client = self._client
        if not self._connected or client is None:
            return False
        return bool(await self._call(lambda: client.is_connected))

    async def _learn_phone(self, lid: str) -> None:
        try:
            phone = await self.phone_for_lid(lid)
        except RetryableProviderError as error:
            log.warning("neonize session %s: no phone for %s: %s", self.channel_id, lid, error)
            return
        if phone is not None:
            self._emit(IdentityLinked(lid=lid, phone=phone))

    # -- plumbing --------------------------------------------------------------------------

    def _live_client(self) -> Any:
        if not self._connected or self._client is None:
            raise RetryableProviderError(f"web session {self.channel_id} is not connected")
        return self._client

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking neonize call on our pool, bounded by ``call_timeout_s``.
        Raises ``RetryableProviderError`` when it times out or neonize raises."""
        if self._executor is None or self._loop is None:
            raise RetryableProviderError(f"web session {self.channel_id} is not started")
        future = self._loop.run_in_executor(self._executor, lambda: function(*args))
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._call_timeout_s)
        except TimeoutError as error:
            raise _CallTimedOut(
                f"WhatsApp did not answer within {self._call_timeout_s:g} s"
            ) from error
        except Exception as error:
            raise RetryableProviderError(f"WhatsApp refused: {error}") from error

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop, keeping a reference until it ends (the loop keeps
        only weak ones)."""
        if self._loop is None:
            work.close()
            return
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _register_handlers(self, client: Any) -> None:
        for event_type, mapper in _PLAIN_EVENTS.items():
            client.event(event_type)(self._threadsafe_handler(mapper))
        client.event(LoggedOutEv)(self._on_logged_out)
        client.event(ConnectedEv)(self._threadsafe_handler(lambda _e: [], self._connected_soon))
        client.event.qr(self._on_qr)

    def _threadsafe_handler(
        self, mapper: Mapper, after: Callable[[], None] | None = None
    ) -> Callable[[Any, Any], None]:
        """A neonize handler (called on a Go thread) that maps the event and hands the
        result to the loop."""

        def handle(_client: Any, event: Any) -> None:
            try:
                events = mapper(event)
            except Exception:
                # Never swallowed silently: a mapping bug is loud in the log, with the
                # event's type, and the connection goes on.
                log.exception("neonize %s event not understood", type(event).__name__)
                return
            self._to_loop(events, after)

        return handle

    def _on_qr(self, _client: Any, data: bytes) -> None:
        self._to_loop([], self._qr_soon(data.decode("utf-8", "replace")))

    def _qr_soon(self, code: str) -> Callable[[], None]:
        def on_loop() -> None:
            self._cancel_dial_timer()
            self._pairing = True
            expires = _FIRST_QR_S if self._qr_count == 0 else _NEXT_QR_S
            self._qr_count += 1
            self._emit(QrCode(code=code, expires_in_s=expires))

        return on_loop

    def _to_loop(self, events: list[SessionEvent], after: Callable[[], None] | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._deliver, events, after)
        except RuntimeError:
            return  # the loop closed between the check and the call: nobody to tell

    def _deliver(self, events: list[SessionEvent], after: Callable[[], None] | None) -> None:
        for event in events:
            self._emit(event)
        if after is not None:
            after()

    def _emit(self, event: SessionEvent) -> None:
        if isinstance(event, _CONNECTION_LOST):
            self._connected = False
            self._cancel_dial_timer()
        if isinstance(event, ConnectFailed):
            self._failed = True
        self._on_event(event)
        if (
            isinstance(event, MessageReceived)
            and event.sender_lid
            and event.message.sender_phone is None
            and self._connected
            and self._loop is not None
        ):
            # Stored under the LID now; the phone, when whatsmeow knows it, merges it.
            self._spawn(self._learn_phone(event.sender_lid))

    def _on_logged_out(self, _client: Any, event: Any) -> None:
        unlinked = mapping.map_logged_out(event)
        self._to_loop([], lambda: self._unlinked_soon(unlinked))

    def _unlinked_soon(self, unlinked: list[SessionEvent]) -> None:
        self._connected = False
        self._spawn(self._unlinked(unlinked))

    async def _unlinked(self, unlinked: list[SessionEvent]) -> None:
        """The phone (or WhatsApp) unlinked us: the credentials are worthless now, so
        they go before ``LoggedOut`` is told, and a restart pairs anew."""
        await self.stop()
        await self._store.forget(self.channel_id)
        for event in unlinked:
            self._emit(event)

    def _connected_soon(self) -> None:
        self._cancel_dial_timer()
        self._connected = True
        self._pairing = False
        self._spawn(self._announce_connected())

    async def _announce_connected(self) -> None:
        me: Any = None
        client = self._client
        try:
            if await self._really_connected():
                me = await self._call(client.get_me)
        except RetryableProviderError as error:
            log.warning("neonize session %s: who am I? %s", self.channel_id, error)
        phone = mapping.jid_phone(me.JID) if me is not None else None
        lid = mapping.jid_lid(me.LID) if me is not None else None
        device = _device_jid(me.JID) if me is not None else None
        if device is not None:
            await self._store.remember(self.channel_id, device)
        push_name = (me.PushName or None) if me is not None else None
        self._emit(Connected(me_phone=phone, me_lid=lid, push_name=push_name))

    def _dial_timed_out(self) -> None:
        self._dial_timer = None
        if self._connected or self._pairing or self._failed or self._stopping:
            return
        self._emit(
            ConnectFailed(reason=f"WhatsApp did not answer within {self._dial_timeout_s:g} s")
        )
        self._spawn(self.stop())

    def _cancel_dial_timer(self) -> None:
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None

    def _connection_ended(self, connection: asyncio.Future[Any]) -> None:
        """neonize's ``connect`` returned: by our ``stop``, or because the dial failed
        (it raises with whatsmeow's reason, e.g. a DNS or TLS error)."""
        if self._stopping or connection.cancelled():
            return
        error = connection.exception()
        reason = f"could not connect to WhatsApp: {error}" if error else "the connection ended"
        if not self._failed:
            self._emit(ConnectFailed(reason=reason))
        # Nothing runs for this session any more: release its client and threads now
        # rather than when (or if) the session process asks.
        self._spawn(self.stop())


def _in_own_thread(function: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run ``function`` on a fresh daemon thread: used for ``stop``, which must not
    queue behind calls that fill the session's pool."""
    future: Future[Any] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return  # nobody waits any more (the caller was cancelled)
        try:
            result = function()
        except BaseException as error:
            future.set_exception(error)
        else:
            future.set_result(result)

    threading.Thread(target=run, name="neonize-stop", daemon=True).start()
    return asyncio.wrap_future(future)


class NeonizeEngine:
    """Builds neonize sessions whose credentials live in ``store``: a directory (one
    SQLite file per channel) or a PostgreSQL URL (schema ``wahub_sessions``).
    ``proxy`` (``socks5://host:port`` or ``http://host:port``) carries every session's
    traffic to WhatsApp when set."""

    name = "neonize"

    def __init__(
        self,
        store: str | Path,
        *,
        dial_timeout_s: float = 30.0,
        call_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        proxy: str | None = None,
    ) -> None:
        self._store = credential_store(store)
        self._proxy = proxy
        self._dial_timeout_s = dial_timeout_s
        self._call_timeout_s = call_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._sessions: set[NeonizeSession] = set()

    def open(self, channel_id: str, *, on_event: OnEvent) -> NeonizeSession:
        session = NeonizeSession(
            channel_id,
            store=self._store,
            on_event=on_event,
            dial_timeout_s=self._dial_timeout_s,
            call_timeout_s=self._call_timeout_s,
            stop_timeout_s=self._stop_timeout_s,
            proxy=self._proxy,
        )
        self._sessions.add(session)
        return session

    async def has_credentials(self, channel_id: str) -> bool:
        return await self._store.device_of(channel_id) is not None

    async def close(self) -> None:
        """Stop every session still open, then release the store."""
        for session in list(self._sessions):
            await session.stop()
        self._sessions.clear()
        await self._store.close()


class _DatabaseSettings(Protocol):
    database_url: str


def build_engine(settings: _DatabaseSettings, state_dir: Path) -> NeonizeEngine:
    """The engine the session process uses for real phones: on PostgreSQL (scale-out)
    credentials go to schema ``wahub_sessions`` of wahub's own database, so any session
    process resumes any phone; on SQLite (embedded) to one file per channel under
    ``state_dir/whatsapp``, beside the database."""
    url = settings.database_url
    if url.startswith(("postgres://", "postgresql")):
        return NeonizeEngine(url)
    return NeonizeEngine(state_dir / "whatsapp")
