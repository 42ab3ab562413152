"""Replication over HTTP: sink status and lag, pause and resume (admins only: status
shows where data goes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from wahub.api.auth import AdminDep, HubDep
from wahub.api.params import NamePath
from wahub.api.responses import JsonResponse

router = APIRouter(prefix="/v1/replication", tags=["replication"])


@router.get("/status", summary="Every sink's cursor, backlog, lag and last error")
async def replication_status(hub: HubDep, _admin: AdminDep) -> Response:
    """``{"status": "ok"|"degraded", "head_seq", "lag_threshold_seconds", "lagging",
    "config_errors", "sinks": [{"name", "kind", "target", "paused", "last_seq",
    "pending", "lag_seconds", "dead_letters", "last_error", ...}]}``. Degraded when a
    sink lags more than the threshold or a sink entry is invalid."""
    return JsonResponse(await hub.replication.status())


async def _set_paused(hub: Any, name: str, paused: bool) -> Response:
    await hub.replication.set_paused(name, paused)
    return JsonResponse({"sink": name, "paused": paused})


@router.post("/sinks/{name}/pause", summary="Stop shipping to a sink (the log keeps its changes)")
async def pause_sink(name: NamePath, hub: HubDep, _admin: AdminDep) -> Response:
    return await _set_paused(hub, name, True)


@router.post("/sinks/{name}/resume", summary="Ship to a paused sink again, from its cursor")
async def resume_sink(name: NamePath, hub: HubDep, _admin: AdminDep) -> Response:
    return await _set_paused(hub, name, False)
