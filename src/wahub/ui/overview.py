"""The overview (``/ui``): channels, queues, failures, webhooks, replication, health.

Reads what ``/metrics`` and ``/healthz`` read (``features.monitoring``), once per page,
and states each problem in red with its reason and where it is fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from wahub.features.monitoring import FAILURE_WINDOW_SECONDS, Overview, read_overview
from wahub.ui.auth import SignedIn, hub_of
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Problem:
    """A red line on the overview: what is wrong and where to fix it."""

    reason: str
    fix: str


def problems(overview: Overview) -> list[Problem]:
    """The health reasons, plus what is wrong without degrading health."""
    found = [Problem(reason, _fix_for(reason)) for reason in overview.reasons]
    for channel in overview.backlog.channels:
        if channel.status not in ("connected", "unverified"):
            found.append(
                Problem(
                    f"channel {channel.name} ({channel.channel_id}) is {channel.status}",
                    f"wahub channels check {channel.name}",
                )
            )
    if overview.dead_letters:
        found.append(
            Problem(
                f"{overview.dead_letters} webhook deliveries failed for good (dead letters)",
                "the hub's log names each with its reason ('dead-lettered'); see docs/operating.md",
            )
        )
    return found


def _fix_for(reason: str) -> str:
    if reason.startswith("replication"):
        return "wahub replicate status, then wahub replicate replay SINK; see docs/replication.md"
    return "start a worker (wahub worker) or check the workers' logs; see docs/operating.md"


@router.get("")
async def overview_page(request: Request, page: SignedIn) -> Response:
    """The overview page."""
    hub = hub_of(request)
    replication = await hub.replication.status()
    overview = await read_overview(
        hub.db,
        replication,
        now=time.time(),
        stalled_threshold=hub.settings.stalled_queue_seconds,
    )
    return render(
        "overview.html",
        page.context(
            title="Overview",
            overview=overview,
            problems=problems(overview),
            window_minutes=int(FAILURE_WINDOW_SECONDS // 60),
        ),
    )
