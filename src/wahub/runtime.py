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
from functools import cached_property

from wahub.config import Settings
from wahub.features.access import AccessControl
from wahub.features.accounts import Accounts
from wahub.features.auto_replies import AutoReplies
from wahub.features.campaigns import Campaigns
from wahub.features.channels import Channels, WebPacing
from wahub.features.chat_names import ChatNames
from wahub.features.conversations import Conversations, InboundPolicy
from wahub.features.groups import GroupCache, GroupSync
from wahub.features.inbound_media import DownloadPolicy, MediaDownloads
from wahub.features.inbox import Inbox
from wahub.features.media import MediaLibrary
from wahub.features.messaging import Messaging
from wahub.features.notifications import Notifications
from wahub.features.passwords import Passwords
from wahub.features.records import RecordEdits
from wahub.features.subscriptions import Subscriptions
from wahub.features.web_sessions import WebSessions
from wahub.media import MediaStore, media_store_from_settings
from wahub.pipeline.campaigns import CampaignDispatcher
from wahub.pipeline.event_deliveries import DeliveryPolicy, DeliveryWorker
from wahub.pipeline.event_fanout import fanout_shipper
from wahub.pipeline.inbox import InboxProcessor
from wahub.pipeline.intake import WebhookIntake
from wahub.pipeline.outbox import OutboxWorker
from wahub.pipeline.scheduler import PeriodicJob, Scheduler
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.registry import ProviderRegistry
from wahub.realtime.hub import RealtimeHub
from wahub.replication.service import Replication
from wahub.replication.shipper import Shipper
from wahub.store.database import Database
from wahub.store.migrate import upgrade
from wahub.store.notify import EVENTS, INBOX, OUTBOX, Listener
from wahub.store.secret_key import load_cipher

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
    group_sync: GroupSync
    groups: GroupCache
    accounts: Accounts
    outbox_wakeup: Wakeup = field(default_factory=Wakeup)
    inbox_wakeup: Wakeup = field(default_factory=Wakeup)
    media_wakeup: Wakeup = field(default_factory=Wakeup)
    campaign_wakeup: Wakeup = field(default_factory=Wakeup)
    events_wakeup: Wakeup = field(default_factory=Wakeup)
    deliveries: DeliveryWorker | None = None
    fanout: Shipper | None = None
    dispatcher: CampaignDispatcher | None = None
    outbox: OutboxWorker | None = None
    inbox: InboxProcessor | None = None
    media_downloads: MediaDownloads | None = None
    listener: Listener | None = None
    scheduler: Scheduler | None = None
    _scheduler_task: asyncio.Task[None] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Set when a pipeline loop died of an unexpected error: the process keeps serving
    # but no longer sends, so ``wahub worker``/``serve`` exit non-zero and let their
    # supervisor restart them, instead of idling as a zombie.
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    chat_names: ChatNames = field(init=False)
    _warm_task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.chat_names = ChatNames(
            self.db,
            self.providers,
            negative_ttl_s=self.settings.chat_name_negative_ttl_seconds,
            default_region=self.settings.default_region,
        )

    # Stateless services over the database: built on first use.
    @cached_property
    def conversations(self) -> Conversations:
        return Conversations(self.db, self.access)

    @cached_property
    def inbox_view(self) -> Inbox:
        return Inbox(self.db, self.conversations)

    @cached_property
    def passwords(self) -> Passwords:
        return Passwords(self.db)

    @cached_property
    def media_store(self) -> MediaStore:
        return media_store_from_settings(self.settings)

    @cached_property
    def media(self) -> MediaLibrary:
        return MediaLibrary(self.db, self.media_store, max_bytes=self.settings.media_max_bytes)

    @cached_property
    def records(self) -> RecordEdits:
        return RecordEdits(self.db)

    @cached_property
    def notifications(self) -> Notifications:
        return Notifications(self.db)

    @cached_property
    def web_sessions(self) -> WebSessions:
        return WebSessions(
            self.db,
            default_daily_cap=self.settings.web_new_number_daily_cap,
            keepalive_timeout_s=self.settings.session_keepalive_timeout_seconds,
        )

    @cached_property
    def auto_replies(self) -> AutoReplies:
        return AutoReplies(self.db)

    @cached_property
    def campaigns(self) -> Campaigns:
        return Campaigns(
            self.db,
            default_region=self.settings.default_region,
            reply_window_hours=self.settings.campaign_reply_window_hours,
            chunk_size=self.settings.campaign_chunk_size,
            max_backlog=self.settings.campaign_max_backlog,
            on_started=self.campaign_wakeup.notify,
            on_enqueued=self.outbox_wakeup.notify,
        )

    @cached_property
    def replication(self) -> Replication:
        return Replication(
            self.db,
            sinks=self.settings.replication_sinks,
            lag_threshold_seconds=self.settings.replication_lag_threshold_seconds,
            retention_hours=self.settings.replication_retention_hours,
            poll_interval=self.settings.replication_poll_interval_seconds,
            lease_seconds=self.settings.replication_lease_seconds,
        )

    @cached_property
    def delivery_policy(self) -> DeliveryPolicy:
        s = self.settings
        return DeliveryPolicy(
            timeout_seconds=s.subscription_timeout_seconds,
            retry_seconds=s.subscription_retry_hours * 3600,
            pause_after_seconds=s.subscription_pause_after_hours * 3600,
            backoff_max_seconds=s.subscription_backoff_max_seconds,
        )

    @cached_property
    def subscriptions(self) -> Subscriptions:
        return Subscriptions(
            self.db,
            self.channels.cipher,
            self.delivery_policy,
            on_due=self.events_wakeup.notify,
        )

    @classmethod
    def build(cls, settings: Settings) -> Hub:
        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        cipher = load_cipher(secret_key, settings.database_url)
        access = AccessControl(db)
        realtime = RealtimeHub(db)
        outbox_wakeup = Wakeup()
        inbox_wakeup = Wakeup()
        messaging = Messaging(
            db,
            access,
            default_region=settings.default_region,
            on_enqueued=outbox_wakeup.notify,
            web_daily_cap=settings.web_new_number_daily_cap,
            web_keepalive_timeout_s=settings.session_keepalive_timeout_seconds,
        )
        providers = ProviderRegistry(cipher, timeout_s=settings.provider_timeout_seconds)
        group_sync = GroupSync(
            db,
            providers.groups_for_channel,
            rate_per_second=settings.group_sync_rate_per_second,
            burst=settings.group_sync_burst,
            max_attempts=settings.group_sync_max_attempts,
            max_retry_wait=settings.group_sync_max_retry_wait_seconds,
            concurrency=settings.group_sync_concurrency,
        )
        return cls(
            settings=settings,
            db=db,
            access=access,
            channels=Channels(
                db,
                cipher,
                web_pacing=WebPacing(
                    rate_per_second=settings.web_rate_per_second,
                    chat_interval_seconds=settings.web_chat_interval_seconds,
                    chat_jitter_seconds=settings.web_chat_jitter_seconds,
                ),
            ),
            messaging=messaging,
            realtime=realtime,
            providers=providers,
            intake=WebhookIntake(db, on_stored=inbox_wakeup.notify),
            group_sync=group_sync,
            groups=GroupCache(
                db,
                access,
                default_region=settings.default_region,
                stale_after_seconds=settings.group_stale_hours * 3600,
            ),
            accounts=Accounts(db, group_sync),
            outbox_wakeup=outbox_wakeup,
            inbox_wakeup=inbox_wakeup,
        )

    async def start(self, *, workers: bool, realtime: bool = True) -> None:
        """Migrate, then start the realtime tail and (optionally) the pipeline."""
        result = await upgrade(self.db, cipher=self.channels.cipher)
        if result["from"] != result["to"]:
            log.info("schema migrated from %s to %s", result["from"], result["to"])
        # A wrong key must not stop the hub (the fix, a new token by API or CLI, needs it
        # running); each such channel is named here, and its sends fail saying why.
        for problem in await self.channels.unreadable():
            log.error("%s", problem)
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
        if self.settings.cache_on_startup:
            # In the background: a slow or dead provider must not delay health checks.
            self._warm_task = asyncio.create_task(self.chat_names.warm(), name="chat-names-warm")
        if workers:
            self.outbox = OutboxWorker(
                self.db,
                self.settings,
                self.providers,
                self.outbox_wakeup,
                on_change=self.realtime.poke,
            )
            self.inbox = InboxProcessor(
                self.db,
                self.inbox_wakeup,
                on_change=self._inbox_changed,
                policy=InboundPolicy.from_settings(self.settings),
            )
            self.media_downloads = MediaDownloads(
                self.db,
                self.media_store,
                self.providers.for_channel,
                self.media_wakeup,
                DownloadPolicy(
                    max_bytes=self.settings.media_max_bytes,
                    timeout_s=self.settings.media_download_timeout_seconds,
                    retry_base_s=self.settings.media_download_retry_base_seconds,
                    retry_cap_s=self.settings.media_download_retry_cap_seconds,
                    max_attempts=self.settings.media_download_max_attempts,
                ),
                on_change=self.realtime.poke,
            )
            self.dispatcher = CampaignDispatcher(self.campaigns, self.campaign_wakeup)
            # Event subscriptions: the log read into their outboxes (one reader across
            # processes, a leased cursor), and deliveries claimed by every process.
            self.fanout = await fanout_shipper(
                self.db,
                owner=self.replication.owner,
                lease_seconds=self.settings.replication_lease_seconds,
                poll_interval=self.settings.replication_poll_interval_seconds,
                on_stored=self.events_wakeup.notify,
            )
            self.deliveries = DeliveryWorker(
                self.db, self.channels.cipher, self.events_wakeup, self.delivery_policy
            )
            self._tasks = [
                asyncio.create_task(self.outbox.run(), name="outbox"),
                asyncio.create_task(self.inbox.run(), name="inbox"),
                asyncio.create_task(self.media_downloads.run(), name="media-downloads"),
                asyncio.create_task(self.dispatcher.run(), name="campaigns"),
                asyncio.create_task(self.fanout.run(), name="event-fanout"),
                asyncio.create_task(self.deliveries.run(), name="event-deliveries"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._pipeline_task_done)
            # One shipper per sink runs across all processes (the sink's cursor is
            # leased); a sink that is down or misconfigured is reported, never fatal.
            await self.replication.start()
            if self.settings.group_sync_cron:
                self.scheduler = Scheduler(
                    self.db,
                    [PeriodicJob("group-sync", self.settings.group_sync_cron, self._daily_sync)],
                )
                self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="scheduler")

    async def _daily_sync(self) -> None:
        report = await self.group_sync.sync_accounts()
        log.info(
            "scheduled group sync: %d synced, %d failed",
            report.success_count,
            report.fail_count,
        )

    def _pipeline_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.critical(
            "pipeline loop %r died; this process no longer sends",
            task.get_name(),
            exc_info=task.exception(),
        )
        self.failed.set()

    def _inbox_changed(self) -> None:
        # A status applied by a webhook can free a chat (sent) for its next message;
        # an inbound message may have queued an auto-reply or a media download.
        self.outbox_wakeup.notify()
        self.media_wakeup.notify()
        self.realtime.poke()

    async def stop(self) -> None:
        """Graceful: finish in-flight sends, record their results, release leases."""
        if self.outbox is not None:
            self.outbox.stop()
        if self.inbox is not None:
            self.inbox.stop()
        if self.media_downloads is not None:
            self.media_downloads.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.fanout is not None:
            self.fanout.stop()
        if self.deliveries is not None:
            self.deliveries.stop()
        if "replication" in self.__dict__:
            await self.replication.stop()
        if self._scheduler_task is not None:
            # A scheduled sync in progress is cut short, not waited for: its groups keep
            # their last good members, and the next slot syncs them again.
            self._scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler_task
            self._scheduler_task = None
        await self.group_sync.close()
        for task in self._tasks:
            # A loop that died was logged when it died; stopping must still finish.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.listener is not None:
            await self.listener.stop()
        await self.realtime.stop()
        if self._warm_task is not None:
            self._warm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_task
            self._warm_task = None
        await self.chat_names.close()
        if self.media_downloads is not None:
            await self.media_downloads.close()
        await self.providers.close()
        await self.db.dispose()
