"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from wahub.api.auth import HubDep
from wahub.api.responses import JsonResponse
from wahub.domain.errors import StoreUnavailable, WahubError

log = logging.getLogger("wahub.api")

router = APIRouter(tags=["health"])

_ROOT = JsonResponse({"message": "wahub is running", "status": "ok"})


@router.get("/", summary="Is the server up (seed 002's root)")
async def root() -> Response:
    return _ROOT


@router.get("/healthz", summary="Can the server reach its database")
async def healthz(hub: HubDep) -> Response:
    """200 ``{"status": "ok", "database": "ok"}``, or 503 with the database error."""
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
    # A lagging sink degrades the hub but does not make it unready: it still takes
    # and sends messages, and the log keeps every change until the sink catches up.
    try:
        replication = await hub.replication.status()
    except WahubError as exc:
        log.warning("replication status unavailable: %s", exc.message)
        replication = {"status": "unknown", "lagging": []}
    if replication["status"] == "degraded":
        log.warning(
            "health degraded: replication lagging (%s) or misconfigured (%s)",
            ", ".join(replication["lagging"]) or "no sink",
            "; ".join(replication.get("config_errors", [])) or "no error",
        )
        return JsonResponse(
            {
                "status": "degraded",
                "database": "ok",
                "replication": {
                    "status": "degraded",
                    "lagging": replication["lagging"],
                    "config_errors": replication.get("config_errors", []),
                },
            }
        )
    return JsonResponse({"status": "ok", "database": "ok"})
