"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from wahub.api.auth import HubDep
from wahub.api.responses import JsonResponse
from wahub.domain.errors import StoreUnavailable, WahubError
from wahub.features.monitoring import health_reasons, read_backlog, stalled_channels

log = logging.getLogger("wahub.api")

router = APIRouter(tags=["health"])

_ROOT = JsonResponse({"message": "wahub is running", "status": "ok"})


@router.get(
    "/",
    summary="Is the server up (seed 002's root)",
    responses={307: {"description": "A browser (Accept: text/html first) goes to /ui"}},
)
async def root(request: Request) -> Response:
    """The health answer seed 002's clients expect; a browser (one that asks for HTML
    before JSON) is sent to the dashboard instead."""
    if _prefers_html(request.headers.get("accept", "")):
        return RedirectResponse("/ui", status_code=307)
    return _ROOT


def _prefers_html(accept: str) -> bool:
    # Browsers list text/html first; API clients ask for JSON or anything (*/*).
    accept = accept.lower()
    html = accept.find("text/html")
    json = accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


@router.get("/healthz", summary="Can the server reach its database")
async def healthz(hub: HubDep) -> Response:
    """200 ``{"status": "ok", "database": "ok"}``; 200 ``"degraded"`` with ``reasons``
    (and a ``replication`` or ``queues`` part) when a sink lags or a channel's queued
    messages have had no worker for ``WAHUB_STALLED_QUEUE_SECONDS``; 503 with the
    database error when the database cannot be reached."""
    try:
        async with hub.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # a probe must answer whatever broke
        error = exc if isinstance(exc, WahubError) else StoreUnavailable(type(exc).__name__)
        log.warning("health check failed: %s", error.message)
        return JsonResponse(
            {
                "status": "error",
                "database": "unavailable",
                "error": {"code": error.code, "message": error.message, "details": {}},
            },
            status_code=503,
        )
    # A lagging sink or a stalled queue degrades the hub but does not make it unready:
    # it still takes messages, and nothing is lost while the cause is fixed.
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    try:
        replication = await hub.replication.status()
    except WahubError as exc:
        log.warning("replication status unavailable: %s", exc.message)
        replication = {"status": "unknown", "lagging": []}
    if replication["status"] == "degraded":
        body["replication"] = {
            "status": "degraded",
            "lagging": replication["lagging"],
            "config_errors": replication.get("config_errors", []),
        }
    try:
        stalled = stalled_channels(
            await read_backlog(hub.db),
            now=time.time(),
            threshold_seconds=hub.settings.stalled_queue_seconds,
        )
    except WahubError as exc:
        log.warning("queue backlog unavailable: %s", exc.message)
        stalled = []
    if stalled:
        body["queues"] = {
            "status": "degraded",
            "stalled_channels": [
                {
                    "channel_id": c.channel_id,
                    "name": c.name,
                    "queued": c.queued,
                    "unattended_seconds": round(c.unattended_seconds, 1),
                }
                for c in stalled
            ],
        }
    reasons = health_reasons(replication, stalled)
    if reasons:
        log.warning("health degraded: %s", "; ".join(reasons))
        body.update(status="degraded", reasons=reasons)
    return JsonResponse(body)
