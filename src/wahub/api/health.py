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
    return JsonResponse({"status": "ok", "database": "ok"})
