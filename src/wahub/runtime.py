"""The running hub: database, services, background workers, wired together once.

``serve`` (with workers), ``worker`` (no HTTP), ``demo`` and ``bench`` all build a
``Hub`` and differ only in what they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from wahub.config import Settings
from wahub.features.access import AccessControl
from wahub.features.channels import Channels
from wahub.features.messaging import Messaging
from wahub.pipeline.inbox import InboxProcessor
from wahub.pipeline.intake import WebhookIntake
from wahub.pipeline.outbox import OutboxWorker
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.registry import ProviderRegistry
from wahub.realtime.hub import RealtimeHub
from wahub.store.database import Database
from wahub.store.migrate import upgrade
from wahub.store.notify import EVENTS, INBOX, OUTBOX, Listener

log = logging.getLogger("wahub")


@dataclass
class Hub:
    settings: Settings
    db: Database
    access: AccessControl
    channels: Channels
    messaging: Messaging
    realtime: RealtimeHub
    providers: ProviderRegistry
    intake: WebhookIntake
    outbox_wakeup: Wakeup = field(default_factory=Wakeup)
    inbox_wakeup: Wakeup = field(default_factory=Wakeup)
    outbox: OutboxWorker | None = None
    inbox: InboxProcessor | None = None
    listener: Listener | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Hub:
        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        access = AccessControl(db)
        realtime = RealtimeHub(db)
        outbox_wakeup = Wakeup()
        inbox_wakeup = Wakeup()
        messaging = Messaging(
            db, access, default_region=settings.default_region, on_enqueued=outbox_wakeup.notify
        )
        return cls(
            settings=settings,
            db=db,
            access=access,
            channels=Channels(db),
            messaging=messaging,
            realtime=realtime,
            providers=ProviderRegistry(timeout_s=settings.provider_timeout_seconds),
            intake=WebhookIntake(db, on_stored=inbox_wakeup.notify),
            outbox_wakeup=outbox_wakeup,
            inbox_wakeup=inbox_wakeup,
        )

    async def start(self, *, workers: bool, realtime: bool = True) -> None:
        """Migrate, then start the realtime tail and (optionally) the pipeline."""
        result = await upgrade(self.db)
        if result["from"] != result["to"]:
            log.info("schema migrated from %s to %s", result["from"], result["to"])
        if realtime:
            await self.realtime.start()
        if not self.db.is_sqlite and (realtime or workers):
            # Other processes' commits wake our loops (PostgreSQL LISTEN/NOTIFY).
            handlers: dict[str, list[Callable[[], None]]] = {}
            if realtime:
                handlers[EVENTS] = [self.realtime.poke]
            if workers:
                handlers[OUTBOX] = [self.outbox_wakeup.notify]
                handlers[INBOX] = [self.inbox_wakeup.notify]
            self.listener = Listener(self.db.url, handlers)
            await self.listener.start()
        if workers:
            self.outbox = OutboxWorker(
                self.db,
                self.settings,
                self.providers,
                self.outbox_wakeup,
                on_change=self.realtime.poke,
            )
            self.inbox = InboxProcessor(self.db, self.inbox_wakeup, on_change=self._inbox_changed)
            self._tasks = [
                asyncio.create_task(self.outbox.run(), name="outbox"),
                asyncio.create_task(self.inbox.run(), name="inbox"),
            ]

    def _inbox_changed(self) -> None:
        # A status applied by a webhook can free a chat (sent) for its next message.
        self.outbox_wakeup.notify()
        self.realtime.poke()

    async def stop(self) -> None:
        """Graceful: finish in-flight sends, record their results, release leases."""
        if self.outbox is not None:
            self.outbox.stop()
        if self.inbox is not None:
            self.inbox.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.listener is not None:
            await self.listener.stop()
        await self.realtime.stop()
        await self.providers.close()
        await self.db.dispose()
