"""Prometheus metrics at ``/metrics``.

Queue depths (messages and inbox deliveries by status) are read from the database at
scrape time, so every process reports the shared truth. HTTP requests are counted by a
small ASGI middleware, labelled by route template (never the raw path, whose ids would
make one series per message).
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wahub.api.auth import HubDep
from wahub.domain.status import Status
from wahub.features.monitoring import Backlog, read_backlog
from wahub.store import inbox as inbox_q
from wahub.store import messages as messages_q
from wahub.store import subscriptions as subscriptions_q

router = APIRouter(tags=["health"])

INBOX_STATUSES = ("pending", "processed", "dead")

# (figure of GroupCache.health(), metric name, help)
GROUP_CACHE_GAUGES = (
    ("total_cached_members", "group_members_cached", "Group members in the cache."),
    ("accounts_with_cache", "accounts_with_cached_members", "Accounts with cached members."),
    (
        "accounts_without_members_count",
        "accounts_without_cached_members",
        "Accounts with a group but no cached member.",
    ),
    ("failed_syncs_count", "group_syncs_failed", "Groups whose last sync failed."),
    ("stale_groups_count", "groups_stale", "Groups not synced successfully for too long."),
    (
        "most_recent_sync",
        "group_sync_most_recent_timestamp_seconds",
        "Unix time of the most recent successful group sync (0: never).",
    ),
    (
        "oldest_sync",
        "group_sync_oldest_timestamp_seconds",
        "Unix time of the least recently synced group's last sync (0: never).",
    ),
)


class Metrics:
    """One registry per app, so several apps (tests, embedded stacks) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "wahub_http_requests",
            "HTTP requests by route template, method and response status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.messages = Gauge(
            "wahub_messages",
            "Messages by status.",
            ["status"],
            registry=self.registry,
        )
        self.inbox = Gauge(
            "wahub_inbox_deliveries",
            "Webhook deliveries in the inbox by status.",
            ["status"],
            registry=self.registry,
        )
        # Replication, per sink, as GET /v1/replication/status reports it.
        self.replication_lag = Gauge(
            "wahub_replication_lag_seconds",
            "Age of the oldest change a sink has not shipped (0: caught up).",
            ["sink"],
            registry=self.registry,
        )
        self.replication_pending = Gauge(
            "wahub_replication_pending_changes",
            "Changes in the log a sink has not shipped yet.",
            ["sink"],
            registry=self.registry,
        )
        self.replication_dead_letters = Gauge(
            "wahub_replication_dead_letters",
            "Changes a sink refused or kept failing, waiting for replay.",
            ["sink"],
            registry=self.registry,
        )
        # Event subscriptions (docs/events.md): a paused one (410, or a day of failures)
        # shows here; deliveries by state across subscriptions.
        self.subscriptions = Gauge(
            "wahub_subscriptions",
            "Event subscriptions by state (active, paused).",
            ["state"],
            registry=self.registry,
        )
        self.event_deliveries = Gauge(
            "wahub_event_deliveries",
            "Event deliveries by state (pending, delivered, dead).",
            ["state"],
            registry=self.registry,
        )
        # What waits, per channel, and who sends it (features/monitoring.py).
        self.channel_queue_depth = Gauge(
            "wahub_channel_queue_depth",
            "Queued messages of a channel (waiting for their first or next attempt).",
            ["channel_id", "channel"],
            registry=self.registry,
        )
        self.channel_oldest_queued_age = Gauge(
            "wahub_channel_oldest_queued_age_seconds",
            "Age of a channel's oldest queued message (0: nothing queued).",
            ["channel_id", "channel"],
            registry=self.registry,
        )
        self.channel_leased = Gauge(
            "wahub_channel_leased",
            "1 while a worker holds the channel's lease (sends it), else 0.",
            ["channel_id", "channel"],
            registry=self.registry,
        )
        self.live_workers = Gauge(
            "wahub_workers_live",
            "Workers holding at least one channel lease.",
            registry=self.registry,
        )
        self.inbox_backlog = Gauge(
            "wahub_inbox_backlog",
            "Webhook deliveries stored but not processed yet.",
            registry=self.registry,
        )
        self.inbox_oldest_pending_age = Gauge(
            "wahub_inbox_oldest_pending_age_seconds",
            "Age of the oldest webhook delivery not processed yet (0: none).",
            registry=self.registry,
        )
        self.inbox_dead_letters = Gauge(
            "wahub_inbox_dead_letters",
            "Webhook deliveries whose processing failed for good (dead letters).",
            registry=self.registry,
        )
        # The group member cache, as GET /v1/groups/health reports it.
        self.group_cache = {
            figure: Gauge(f"wahub_{name}", help_text, registry=self.registry)
            for figure, name, help_text in GROUP_CACHE_GAUGES
        }


class RequestMetricsMiddleware:
    """Counts HTTP requests. Pure ASGI: one closure and one counter increment per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app dies before answering, the server answers 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router stores the matched route in the scope; unmatched paths share a label.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http_requests.labels(route, scope["method"], str(status)).inc()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, hub: HubDep) -> Response:
    app_metrics: Metrics = request.app.state.metrics
    async with hub.db.read() as conn:
        by_status = await messages_q.count_by_status(conn)
        inbox_by_status = await inbox_q.count_by_status(conn)
    # Set every known status, so one that emptied reads 0 instead of its last value.
    for status in {*(s.value for s in Status), *by_status}:
        app_metrics.messages.labels(status).set(by_status.get(status, 0))
    for status in {*INBOX_STATUSES, *inbox_by_status}:
        app_metrics.inbox.labels(status).set(inbox_by_status.get(status, 0))
    app_metrics.inbox_dead_letters.set(inbox_by_status.get("dead", 0))
    _set_backlog(app_metrics, await read_backlog(hub.db), time.time())
    figures = await hub.groups.health()
    for figure, gauge in app_metrics.group_cache.items():
        gauge.set(figures[figure] or 0)
    async with hub.db.read() as conn:
        subscriptions = await conn.run_sync(subscriptions_q.subscription_counts_sync)
        deliveries = await conn.run_sync(subscriptions_q.delivery_counts_sync)
    for state, count in subscriptions.items():
        app_metrics.subscriptions.labels(state).set(count)
    for state in subscriptions_q.STATES:
        app_metrics.event_deliveries.labels(state).set(
            sum(per_state[state] for per_state in deliveries.values())
        )
    replication = await hub.replication.status()
    for sink in replication["sinks"]:
        app_metrics.replication_lag.labels(sink["name"]).set(sink["lag_seconds"])
        app_metrics.replication_pending.labels(sink["name"]).set(sink["pending"])
        app_metrics.replication_dead_letters.labels(sink["name"]).set(sink["dead_letters"])
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _set_backlog(app_metrics: Metrics, backlog: Backlog, now: float) -> None:
    # Cleared first: a removed or renamed channel must not keep reporting its last value.
    per_channel = (
        app_metrics.channel_queue_depth,
        app_metrics.channel_oldest_queued_age,
        app_metrics.channel_leased,
    )
    for gauge in per_channel:
        gauge.clear()
    for channel in backlog.channels:
        labels = (channel.channel_id, channel.name)
        app_metrics.channel_queue_depth.labels(*labels).set(channel.queued)
        age = 0.0 if channel.oldest_queued_at is None else now - channel.oldest_queued_at
        app_metrics.channel_oldest_queued_age.labels(*labels).set(max(age, 0.0))
        app_metrics.channel_leased.labels(*labels).set(1 if channel.held_at(now) else 0)
    app_metrics.live_workers.set(backlog.live_workers(now))
    inbox = backlog.inbox
    app_metrics.inbox_backlog.set(inbox.pending)
    oldest = inbox.oldest_received_at
    app_metrics.inbox_oldest_pending_age.set(0.0 if oldest is None else max(now - oldest, 0.0))
