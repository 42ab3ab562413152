"""``create_app(settings)``: the FastAPI application over a ``Hub``.

The app owns the hub it builds (started in the lifespan, stopped on shutdown). A hub
passed in is the caller's: the app uses it but never starts or stops it, which is how
``wahub serve``, the embedded stack and the tests share one hub with the HTTP layer.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from wahub import __version__
from wahub.api import (
    admin,
    campaigns,
    chat_names,
    compat,
    conversations,
    groups,
    health,
    media,
    messages,
    metrics,
    realtime,
    records,
    replication,
    search,
    sessions,
    subscriptions,
    webhooks,
)
from wahub.api.docs import install_docs
from wahub.api.errors import CrashGuard, install_error_handlers
from wahub.api.metrics import Metrics, RequestMetricsMiddleware
from wahub.api.openapi import install_error_responses
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.ui import install_ui

DESCRIPTION = """\
Self-hosted WhatsApp messaging hub: durable outbox, verified webhooks, realtime status.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Errors are always `{"error": {"code", "message", "details"}}`.
"""


def fastapi_telemetry() -> TelemetryConfig | None:
    """FastAPI's native OpenTelemetry, only when the environment configures OpenTelemetry.

    Left on, FastAPI asks on every request whether a tracer, meter or logger provider
    has been configured (environment lookups included): about 15 % of a webhook's time
    in the server, for nothing when nobody collects traces.
    """
    configured = any(name.startswith("OTEL_") for name in os.environ)
    if configured or os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return None  # FastAPI's defaults
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings, *, hub: Hub | None = None, start_workers: bool | None = None
) -> FastAPI:
    """The HTTP API. Without ``hub``, the lifespan builds and starts one from ``settings``
    (workers per ``settings.run_workers`` unless ``start_workers`` says otherwise) and stops
    it on shutdown. With ``hub``, it is used as given (``start_workers`` is ignored)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if hub is not None:
            yield
            return
        owned = Hub.build(settings)
        workers = settings.run_workers if start_workers is None else start_workers
        try:
            await owned.start(workers=workers)
            app.state.hub = owned
            yield
        finally:
            await owned.stop()

    app = FastAPI(
        telemetry=fastapi_telemetry(),
        title="wahub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by wahub.api.docs from the package, not from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    if hub is not None:
        app.state.hub = hub
    app.state.metrics = Metrics()
    app.state.metrics.registry.register(
        chat_names.ChatNameCollector(lambda: getattr(app.state, "hub", None))
    )
    install_error_handlers(app)
    # Added last = outermost: the metrics middleware also counts the 500s CrashGuard writes.
    app.add_middleware(CrashGuard)
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    # The hot routes first: FastAPI tries the routes in order, and with some sixty routes
    # matching a path cost more than a webhook's own work (1.2-1.4 -> 0.8-1.0 ms CPU per
    # webhook request once webhooks came first). Search must precede messages: its
    # /v1/messages/search would otherwise match /v1/messages/{message_id}.
    hot = (webhooks, search, messages)
    routers = (
        health,
        metrics,
        conversations,
        records,
        media,
        admin,
        sessions,
        groups,
        campaigns,
        compat,
    )
    for module in (*hot, *routers, replication, subscriptions, chat_names, realtime):
        app.include_router(module.router)
    install_docs(app)
    install_ui(app)
    install_error_responses(app)
    return app
