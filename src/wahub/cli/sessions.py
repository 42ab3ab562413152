"""``wahub sessions``: the WhatsApp Web session process.

It holds the linked phones of web channels (one session process per phone, by lease),
records their state, stores what they receive in the inbox and sends their messages.
``wahub serve`` starts it as a child process in the embedded default; in the scale-out
topology run it as a service of its own (several may run: they share the phones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Annotated

import typer

from wahub.cli.common import DatabaseOpt, run, settings_for
from wahub.cli.lifecycle import stop_on_signals

log = logging.getLogger("wahub")


def sessions(
    database: DatabaseOpt = None,
    max_channels: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Hold at most this many phones, leaving the rest to other session "
            "processes (default: $WAHUB_SESSIONS_MAX_CHANNELS).",
        ),
    ] = None,
    exit_with_parent: Annotated[
        bool,
        typer.Option(
            "--exit-with-parent",
            hidden=True,
            help="Stop when the parent process dies (serve's child must not outlive it).",
        ),
    ] = False,
) -> None:
    """Hold the WhatsApp Web sessions of web channels: link, stay connected, receive,
    send. SIGTERM closes the connections (keeping the links) and exits."""
    settings = settings_for(database, sessions_max_channels=max_channels)

    async def go() -> None:
        from wahub.sessions.process import SessionProcess
        from wahub.store.database import Database
        from wahub.store.migrate import upgrade
        from wahub.store.notify import OUTBOX, SESSIONS, Listener
        from wahub.store.secret_key import load_cipher

        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        await upgrade(db, cipher=load_cipher(secret_key, settings.database_url))
        process = SessionProcess(db, settings)
        listener = None
        if not db.is_sqlite:
            listener = Listener(
                settings.database_url,
                {SESSIONS: [process.wakeup.notify], OUTBOX: [process.outbox_wakeup.notify]},
            )
            await listener.start()
        stop = stop_on_signals()
        watcher = (
            asyncio.create_task(_stop_when_orphaned(stop), name="parent-watch")
            if exit_with_parent
            else None
        )
        task = asyncio.create_task(process.run(), name="sessions")
        log.info("session process %s started", process.owner)
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            process.stop()
            stopper.cancel()
            if watcher is not None:
                watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if listener is not None:
                await listener.stop()
            await db.dispose()
            log.info("session process %s stopped", process.owner)

    run(go)


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    # A parent killed with SIGKILL cannot stop us; being re-parented says it died.
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            log.warning("the parent process (pid %d) died: stopping", parent)
            stop.set()
