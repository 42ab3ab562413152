"""Cross-process wake-ups on PostgreSQL: ``NOTIFY`` when work appears, ``LISTEN`` to hear it.

A notification carries no data and is only a hint: the rows are the truth, and every
loop that listens also polls, so a lost notification (listener reconnecting, PostgreSQL
restarting) costs at most one poll interval, never a message. What a hint buys is
latency: an idle ``wahub worker`` starts sending the moment a ``serve`` process on another
host commits a message, and a WebSocket client on ``serve`` A sees a status that
``serve`` B (or a worker) applied without waiting for A's next poll.

PostgreSQL delivers a ``NOTIFY`` issued inside a transaction only when it commits, and
folds identical ones of the same transaction into one, so notifying from the repository
function that writes the rows is both exact and cheap. On SQLite all of this is a no-op:
its writers share one process (in-process pokes) or poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

import asyncpg
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url

log = logging.getLogger("wahub.notify")

# Something may have become claimable: a message was queued, or a result freed a chat.
OUTBOX = "wahub_outbox"
# A webhook delivery was stored and waits to be processed.
INBOX = "wahub_inbox"
# A message status event was recorded (realtime subscribers).
EVENTS = "wahub_events"
# An operator asked something of a WhatsApp Web session (start, stop, a pairing code...).
SESSIONS = "wahub_sessions"

# How the listening connections show in pg_stat_activity.
LISTENER_NAME = "wahub-listen"

_NOTIFY: dict[tuple[str, ...], TextClause] = {
    channels: text("SELECT " + ", ".join(f"pg_notify('{c}', '')" for c in channels))
    for channels in ((OUTBOX,), (INBOX,), (EVENTS,), (OUTBOX, EVENTS), (SESSIONS,))
}


def notify_sync(conn: SyncConnection, *channels: str) -> None:
    """Queue wake-ups, sent by PostgreSQL when (and only if) the transaction commits."""
    if conn.dialect.name != "postgresql" or not channels:
        return
    conn.execute(_NOTIFY[tuple(channels)])


def listen_dsn(url: str) -> str:
    """The plain libpq-style DSN asyncpg takes, from any SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One dedicated connection that LISTENs and calls the handlers of each channel.

    It reconnects by itself (PostgreSQL restarted, network cut) with capped backoff, and
    after every (re)connect calls every handler once, because notifications sent while it
    was away are gone and there may be work waiting.
    """

    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Iterable[Callable[[], None]]],
        *,
        keepalive_seconds: float = 15.0,
    ) -> None:
        self._dsn = listen_dsn(url)
        self._handlers = {channel: list(fns) for channel, fns in handlers.items()}
        self._keepalive = keepalive_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notification(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        for handler in self._handlers.get(channel, ()):
            handler()

    def _wake_all(self) -> None:
        for handlers in self._handlers.values():
            for handler in handlers:
                handler()

    async def _run(self) -> None:
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings={"application_name": LISTENER_NAME}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._handlers:
                    await conn.add_listener(channel, self._on_notification)
                if self.reconnects:
                    log.info("listening again for wake-ups after a lost connection")
                self.connected.set()
                self._wake_all()
                delay = 0.2
                while not lost.is_set():
                    # A connection whose peer vanished (host down, no FIN) is noticed
                    # only when we write to it: ping now and then.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._keepalive):
                            await lost.wait()
                    if not lost.is_set():
                        await conn.execute("SELECT 1", timeout=10)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "wake-up listener lost its connection (%s); polling until it is back",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
