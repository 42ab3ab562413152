"""Campaigns (``/ui/campaigns``): the list, a campaign's page with its funnel per
template drawn here as SVG bars (refreshed live from ``/ui/campaigns/{id}/funnel``),
start/pause/resume/cancel, and create from a CSV upload.

Creating stores the campaign ``scheduled`` (nothing is sent until Start) and answers
with its page showing the per-line report of the upload: what was accepted and each
rejected line with its reason. Everything goes through ``features.campaigns`` and the
API's own parsing (``campaign_model``, ``require_utf8``, ``visible_campaign``): admins
manage, every role reads, a channel-scoped key sees its channels' campaigns only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response

from wahub.api.bodies import require_utf8
from wahub.api.campaigns import campaign_model, visible_campaign
from wahub.api.errors import status_for
from wahub.domain.campaigns import FUNNEL, RowError, transition
from wahub.domain.errors import (
    ConflictError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationError,
    WahubError,
)
from wahub.features.campaigns import Created
from wahub.ui.auth import Page, SignedIn, checked_form, hub_of, text_field
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)

ACTIONS = ("start", "pause", "resume", "cancel")
# The funnel's stages in the order a message goes through them, total first.
STAGES = ("total", *FUNNEL)
BAR_WIDTH = 420  # px of the longest bar (the template's total)
CSV_TYPES = ("text/csv", "text/plain", "application/vnd.ms-excel", "application/csv")
TEMPLATES_EXAMPLE = '[{"name": "spring_offer", "language": "en", "parameters": ["name"]}]'


def funnel_bars(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Per template (and the totals when there are several): its name and one bar per
    stage with the count, the width in px relative to the template's total, and the
    stage's rate (a fraction of the stage before, None before anything got there)."""
    groups = [(t["template_name"], t) for t in stats["templates"]]
    if len(groups) > 1:
        groups.append(("all templates", stats["totals"]))
    drawn = []
    for name, counts in groups:
        total = max(int(counts["total"]), 1)
        bars = [
            {
                "stage": stage,
                "count": int(counts[stage]),
                "width": round(BAR_WIDTH * int(counts[stage]) / total, 1),
                "rate": counts["rates"].get(stage),
            }
            for stage in STAGES
        ]
        drawn.append({"name": name, "bars": bars, "skipped": int(counts["skipped"])})
    return drawn


def _require_admin(page: Page) -> None:
    if not page.is_admin:
        raise PermissionDenied(
            f"only admins manage campaigns (you are signed in as {page.actor.role.value})"
        )


@router.get("/campaigns")
async def campaigns_page(request: Request, page: SignedIn) -> Response:
    """Campaigns newest first (and, for admins, the create form)."""
    return await _list(request, page)


@router.post("/campaigns")
async def create_campaign(request: Request, page: SignedIn) -> Response:
    """Create a campaign from the form and its CSV file; answer with its page and the
    per-line report. A bad field or file is named beside it, what was typed kept."""
    _require_admin(page)
    form = await checked_form(request, page.session)
    hub = hub_of(request)
    typed = {
        "name": text_field(form, "name")[:200],
        "channel_id": text_field(form, "channel_id"),
        "templates": text_field(form, "templates"),
        "start_at": text_field(form, "start_at"),
    }
    try:
        csv_text = await _audience(form.get("audience"), hub.settings.max_upload_bytes)
        raw: dict[str, Any] = {
            "name": typed["name"],
            "templates": _templates(typed["templates"]),
            "start_at": _start_at(typed["start_at"], now=time.time()),
        }
        if typed["channel_id"]:
            raw["channel_id"] = typed["channel_id"]
        created = await hub.campaigns.create(page.actor, campaign_model(raw), csv_text)
    except WahubError as exc:  # a field, the file, the channel: all said on the form
        field = str(exc.details.get("field", "audience")).split(".")[0].split("[")[0]
        if field not in typed:
            field = "audience"
        line_errors = exc.details.get("errors", [])
        return await _list(
            request,
            page,
            errors={field: exc.message},
            line_errors=[RowError(e["line"], e["code"], e["message"]) for e in line_errors],
            typed=typed,
            status_code=status_for(exc),
        )
    return await _campaign(request, page, created.campaign["id"], created=created)


@router.get("/campaigns/{campaign_id}")
async def campaign_page(request: Request, page: SignedIn, campaign_id: str) -> Response:
    """One campaign: its state, the actions its state allows, the live funnel."""
    return await _campaign(request, page, campaign_id)


@router.get("/campaigns/{campaign_id}/funnel")
async def funnel_fragment(request: Request, page: SignedIn, campaign_id: str) -> Response:
    """The funnel alone (an HTML fragment the campaign page fetches to stay live)."""
    campaign = await visible_campaign(hub_of(request), page.actor, campaign_id)
    return render("campaign_funnel.html", {"campaign": campaign, **_funnel(campaign)})


@router.post("/campaigns/{campaign_id}/{action}")
async def act(request: Request, page: SignedIn, campaign_id: str, action: str) -> Response:
    """Start, pause, resume or cancel (what the state forbids is shown on the error page)."""
    _require_admin(page)
    await checked_form(request, page.session)
    if action not in ACTIONS:
        raise NotFound(f"no action {action}")
    hub = hub_of(request)
    await visible_campaign(hub, page.actor, campaign_id)
    await hub.campaigns.act(page.actor, campaign_id, action)
    return RedirectResponse(f"/ui/campaigns/{campaign_id}", status_code=303)


async def _audience(upload: Any, limit: int) -> str:
    """The uploaded CSV's text; ValidationError when no file, not CSV or not UTF-8,
    PayloadTooLarge above ``limit``."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ValidationError("choose the audience's CSV file", details={"field": "audience"})
    media = (upload.content_type or "").split(";")[0].strip().lower()
    if media not in CSV_TYPES and not upload.filename.lower().endswith(".csv"):
        raise ValidationError(
            f"audience: {upload.filename} is not a CSV file ({media or 'no type'}); "
            "upload a .csv with a phone column",
            details={"field": "audience"},
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"audience: the file is over {limit} bytes (WAHUB_MAX_UPLOAD_BYTES)",
            details={"field": "audience"},
        )
    return require_utf8(data, "audience")


def _templates(text: str) -> Any:
    if not text:
        raise ValidationError("templates: name at least one", details={"field": "templates"})
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValidationError(
            f"templates: not valid JSON; write it like {TEMPLATES_EXAMPLE}",
            details={"field": "templates"},
        ) from None


def _start_at(text: str, *, now: float) -> float | None:
    """The form's start time (``YYYY-MM-DDTHH:MM``, UTC) as unix seconds; None when empty
    (the campaign waits for Start). ValidationError for a bad or past time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValidationError(
            f"start_at: {text!r} is not a time; write it as 2026-12-24T09:00 (UTC)",
            details={"field": "start_at"},
        ) from None
    if moment <= now:
        # A past time would start at once: the upload's report would come too late.
        raise ValidationError(
            "start_at: that time has passed; leave it empty and press Start instead",
            details={"field": "start_at"},
        )
    return moment


def _funnel(campaign: dict[str, Any]) -> dict[str, Any]:
    return {"bars": funnel_bars(campaign["stats"]), "bar_width": BAR_WIDTH}


async def _list(
    request: Request,
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    line_errors: list[RowError] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    hub = hub_of(request)
    rows = [
        r
        for r in await hub.campaigns.list_campaigns()
        if page.actor.may_use_channel(r["channel_id"])
    ]
    channels = await hub.channels.list_all() if page.is_admin else []
    return render(
        "campaigns.html",
        page.context(
            title="Campaigns",
            rows=rows,
            channels=channels,
            errors=errors or {},
            line_errors=line_errors or [],
            typed=typed or {"name": "", "channel_id": "", "templates": "", "start_at": ""},
            example=TEMPLATES_EXAMPLE,
        ),
        status_code=status_code,
    )


async def _campaign(
    request: Request, page: Page, campaign_id: str, *, created: Created | None = None
) -> Response:
    campaign = await visible_campaign(hub_of(request), page.actor, campaign_id)
    return render(
        "campaign.html",
        page.context(
            title=campaign["name"],
            campaign=campaign,
            created=created,
            actions=_allowed(campaign["status"]),
            **_funnel(campaign),
        ),
        status_code=201 if created else 200,
    )


def _allowed(status: str) -> list[str]:
    """The actions that change this state (a forbidden or no-op one gets no button)."""
    allowed = []
    for action in ACTIONS:
        try:
            if transition(status, action) is not None:
                allowed.append(action)
        except ConflictError:
            continue
    return allowed
