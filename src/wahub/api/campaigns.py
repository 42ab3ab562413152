"""``/v1/campaigns``: create (JSON, a text/csv body or multipart with the audience
file), read, list, start/pause/resume/cancel, and the funnel (``/stats``).

Admins manage campaigns; every role reads them (a funnel shows counts, no chats).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError as PydanticValidationError
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep
from wahub.api.bodies import form_parts, read_limited_body, require_media_type, require_utf8
from wahub.api.params import IdPath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import iso
from wahub.domain.actors import Actor
from wahub.domain.campaigns import CampaignStatus
from wahub.domain.errors import NotFound, ValidationError
from wahub.features.campaigns import MAX_AUDIENCE_CHARS, MAX_PAGE, CampaignCreate
from wahub.runtime import Hub

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

_CREATE_MEDIA_TYPES = ("application/json", "text/csv", "multipart/form-data")
_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CampaignCreate.model_json_schema()},
            "text/csv": {
                "schema": {"type": "string", "maxLength": MAX_AUDIENCE_CHARS},
                "description": "The audience; the campaign in the query: name, templates "
                "(a JSON list), channel_id, start_at, reply_window_hours.",
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "campaign": {
                            "type": "string",
                            "maxLength": MAX_AUDIENCE_CHARS,
                            "description": "The JSON object.",
                        },
                        "audience": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


def campaign_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        key: row[key]
        for key in (
            "id",
            "name",
            "channel_id",
            "status",
            "templates",
            "audience_source",
            "created_by",
            "error",
        )
    }
    out["reply_window_hours"] = row["reply_window_seconds"] / 3600.0
    for key in ("start_at", "created_at", "updated_at", "started_at", "finished_at"):
        out[key] = iso(row[key])
    if "stats" in row:
        out["stats"] = row["stats"]
    return out


def campaign_model(raw: Any) -> CampaignCreate:
    """``raw`` as a CampaignCreate; ValidationError naming the first wrong field."""
    try:
        return CampaignCreate.model_validate(raw)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationError(f"{where}: {first['msg']}", details={"field": where}) from None


def _json(raw: bytes | str, what: str) -> Any:
    if isinstance(raw, bytes):
        require_utf8(raw, what)  # 400 naming the part, not "not valid JSON"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationError(f"{what}: not valid JSON", details={"field": what}) from None


def _from_multipart(content_type: str, body: bytes) -> tuple[Any, str | None]:
    """(campaign JSON, audience CSV) from a multipart/form-data body: the standard
    library's MIME parser, no form-parsing dependency for one route."""
    campaign: Any = None
    audience: str | None = None
    for part in form_parts(content_type, body):
        if part.name == "campaign":
            campaign = _json(part.data, "campaign")
        elif part.name == "audience":
            audience = require_utf8(part.data, "audience")
    if campaign is None:
        raise ValidationError(
            "multipart: a 'campaign' field with the JSON object is required",
            details={"field": "campaign"},
        )
    return campaign, audience


@router.post("", status_code=201, summary="Create a campaign", openapi_extra=_CREATE_BODY)
async def create_campaign(request: Request, hub: HubDep, actor: AdminDep) -> Response:
    """The audience is a CSV (``phone`` plus the template variables as columns) or the
    contacts. Unusable rows are listed in ``rejected`` (line, code, message) and left
    out; 422 when no row is usable or a template is not approved on the channel."""
    media = require_media_type(request, _CREATE_MEDIA_TYPES)
    body = await read_limited_body(
        request, hub.settings.max_upload_bytes, setting="WAHUB_MAX_UPLOAD_BYTES"
    )
    csv_text: str | None = None
    if media == "multipart/form-data":
        raw, csv_text = _from_multipart(request.headers["content-type"], body)
    elif media == "text/csv":
        csv_text = require_utf8(body, "body")
        params = request.query_params
        raw = {k: params[k] for k in ("name", "channel_id", "audience") if k in params}
        raw["templates"] = _json(params.get("templates", "null"), "templates")
        for key in ("start_at", "reply_window_hours"):
            if key in params:
                raw[key] = params[key]
    else:
        raw = _json(body or b"null", "body")
    created = await hub.campaigns.create(actor, campaign_model(raw), csv_text)
    return JsonResponse(
        {
            "campaign": campaign_out(created.campaign),
            "accepted": created.accepted,
            "rejected": [e.as_json() for e in created.rejected],
        },
        status_code=201,
        headers={"Location": f"/v1/campaigns/{created.campaign['id']}"},
    )


@router.get("", summary="List campaigns, newest first")
async def list_campaigns(
    hub: HubDep,
    actor: ActorDep,
    status: CampaignStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    rows = await hub.campaigns.list_campaigns(
        status=status.value if status is not None else None, limit=limit
    )
    # A key limited to channels sees their campaigns (the page may then hold fewer).
    rows = [r for r in rows if actor.may_use_channel(r["channel_id"])]
    return JsonResponse({"data": [campaign_out(r) for r in rows]})


async def visible_campaign(hub: Hub, actor: Actor, campaign_id: str) -> dict[str, Any]:
    """The campaign with its funnel; NotFound when the actor's key may not use its channel."""
    campaign = await hub.campaigns.get(campaign_id)
    if not actor.may_use_channel(campaign["channel_id"]):
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


@router.get("/{campaign_id}", summary="A campaign with its funnel")
async def get_campaign(campaign_id: IdPath, hub: HubDep, actor: ActorDep) -> Response:
    return JsonResponse(campaign_out(await visible_campaign(hub, actor, campaign_id)))


@router.get("/{campaign_id}/stats", summary="The funnel per template, totals and rates")
async def campaign_stats(campaign_id: IdPath, hub: HubDep, actor: ActorDep) -> Response:
    """Counters kept in the transaction of every status change: exact and live, one
    indexed read whatever the campaign's size."""
    if actor.channel_scoped:
        await visible_campaign(hub, actor, campaign_id)
    return JsonResponse(await hub.campaigns.stats(campaign_id))


def _action(action: str) -> Any:
    async def act(campaign_id: IdPath, hub: HubDep, actor: AdminDep) -> Response:
        return JsonResponse(campaign_out(await hub.campaigns.act(actor, campaign_id, action)))

    act.__name__ = f"{action}_campaign"
    act.__doc__ = (
        f"{action.capitalize()} the campaign; repeating it is a no-op, 409 when its state "
        "does not allow it."
    )
    return act


for _name in ("start", "pause", "resume", "cancel"):
    router.add_api_route(
        f"/{{campaign_id}}/{_name}",
        _action(_name),
        methods=["POST"],
        summary=f"{_name.capitalize()} a campaign",
    )
