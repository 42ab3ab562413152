"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from wahub.api.auth import HubDep
from wahub.api.responses import JsonResponse
from wahub.domain.errors import StoreUnavailable, WahubError
from wahub.features.monitoring import read_backlog, stalled_channels

log = logging.getLogger("wahub.api")

router = APIRouter(tags=["health"])

_ROOT = JsonResponse({"message": "wahub is running", "status": "ok"})


@router.get("/", summary="Is the server up (seed 002's root)")
async def root() -> Response:
    return _ROOT


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
    reasons: list[str] = []
    try:
        replication = await hub.replication.status()
    except WahubError as exc:
        log.warning("replication status unavailable: %s", exc.message)
        replication = {"status": "unknown", "lagging": []}
    if replication["status"] == "degraded":
        lagging = ", ".join(replication["lagging"]) or "no sink"
        errors = "; ".join(replication.get("config_errors", [])) or "no error"
        reasons.append(f"replication lagging ({lagging}) or misconfigured ({errors})")
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
        reasons.extend(channel.reason for channel in stalled)
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
    if reasons:
        log.warning("health degraded: %s", "; ".join(reasons))
        body.update(status="degraded", reasons=reasons)
    return JsonResponse(body)
