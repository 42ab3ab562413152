"""Event subscriptions over HTTP (admins only: a subscription sees every chat's events).

``POST /v1/subscriptions`` answers with the signing secret, the only time it is shown;
deliveries carry Standard Webhooks headers signed with it (docs/events.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt
from starlette.responses import Response

from wahub.api.auth import AdminDep, HubDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ID_MAX_LENGTH, IdPath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import iso
from wahub.domain.ids import MAX_SQL_INT
from wahub.domain.subscription_events import EVENT_TYPES

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], route_class=JsonBodyRoute)

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
ChannelIds = list[Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH)]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionCreate(_Body):
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http(s) URL receiving the events; link-local (metadata) hosts are refused.",
    )
    event_types: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    channel_ids: ChannelIds | None = Field(
        default=None,
        max_length=1000,
        description="Only events of these channels (events of no channel always come). "
        "Default: every channel.",
    )
    description: str | None = Field(default=None, max_length=500)


class SubscriptionUpdate(_Body):
    """Only the fields given change (``channel_ids: null``: every channel again)."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, max_length=len(EVENT_TYPES)
    )
    channel_ids: ChannelIds | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=500)


class ReplayRequest(_Body):
    """One delivery (``delivery_id``), or the delivered and dead deliveries created in a
    time range (unix seconds; ``until`` open-ended when left out)."""

    delivery_id: StrictInt | None = Field(default=None, ge=1, le=MAX_SQL_INT)
    since: StrictFloat | StrictInt | None = Field(default=None, ge=0, le=1e11)
    until: StrictFloat | StrictInt | None = Field(default=None, ge=0, le=1e11)


class DeliveryCounts(BaseModel):
    pending: int
    delivered: int
    dead: int


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    channel_ids: list[str] | None
    description: str | None
    paused: bool
    paused_reason: str | None
    paused_at: str | None
    failing_since: str | None
    last_success_at: str | None
    created_at: str
    updated_at: str
    deliveries: DeliveryCounts | None = None


class CreatedSubscriptionOut(SubscriptionOut):
    secret: str = Field(description="whsec_... (Standard Webhooks); shown only here.")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_type: str
    ordering_key: str
    channel_id: str | None
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class AttemptOut(BaseModel):
    id: int
    delivery_id: int
    webhook_id: str
    event_type: str
    attempt: int
    status_code: int | None
    latency_ms: float
    error: str | None
    attempted_at: str


class AttemptList(BaseModel):
    attempts: list[AttemptOut]


class ReplayOut(BaseModel):
    queued: int


class PingOut(BaseModel):
    webhook_id: str
    ok: bool
    outcome: Literal["delivered", "refused", "gone", "retry"]
    status_code: int | None
    latency_ms: float
    error: str | None


def subscription_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        **row,
        **{
            k: iso(row[k])
            for k in ("paused_at", "failing_since", "last_success_at", "created_at", "updated_at")
        },
    }
    return out


def delivery_out(row: dict[str, Any]) -> dict[str, Any]:
    fields = DeliveryOut.model_fields
    out = {k: v for k, v in row.items() if k in fields}
    for k in ("next_attempt_at", "created_at", "delivered_at"):
        out[k] = iso(row[k])
    return out


def attempt_out(row: dict[str, Any]) -> dict[str, Any]:
    fields = AttemptOut.model_fields
    out = {k: v for k, v in row.items() if k in fields}
    out["attempted_at"] = iso(row["attempted_at"])
    return out


@router.post("", status_code=201, response_model=CreatedSubscriptionOut)
async def create_subscription(body: SubscriptionCreate, hub: HubDep, _admin: AdminDep) -> Response:
    """Create a subscription; the answer has its ``secret``, never shown again."""
    created = await hub.subscriptions.create(
        url=body.url,
        event_types=body.event_types,
        channel_ids=body.channel_ids,
        description=body.description,
    )
    return JsonResponse(subscription_out(created), status_code=201)


@router.get("", response_model=SubscriptionList)
async def list_subscriptions(hub: HubDep, _admin: AdminDep) -> Response:
    """Every subscription with its deliveries by state."""
    rows = await hub.subscriptions.all()
    return JsonResponse({"subscriptions": [subscription_out(r) for r in rows]})


@router.get("/{subscription_id}", response_model=SubscriptionOut)
async def get_subscription(subscription_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    return JsonResponse(subscription_out(await hub.subscriptions.get(subscription_id)))


@router.patch("/{subscription_id}", response_model=SubscriptionOut)
async def update_subscription(
    subscription_id: IdPath, body: SubscriptionUpdate, hub: HubDep, _admin: AdminDep
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    for required in ("url", "event_types"):
        if required in changes and changes[required] is None:
            del changes[required]
    updated = await hub.subscriptions.update(subscription_id, changes)
    return JsonResponse(subscription_out(updated))


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Delete it with its pending deliveries and its log."""
    await hub.subscriptions.delete(subscription_id)
    return Response(status_code=204)


@router.post("/{subscription_id}/pause", response_model=SubscriptionOut)
async def pause_subscription(subscription_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Stop delivering; events keep being stored for it."""
    return JsonResponse(subscription_out(await hub.subscriptions.set_paused(subscription_id, True)))


@router.post("/{subscription_id}/resume", response_model=SubscriptionOut)
async def resume_subscription(subscription_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Deliver again, starting with what waited (due at once)."""
    resumed = await hub.subscriptions.set_paused(subscription_id, False)
    return JsonResponse(subscription_out(resumed))


@router.post("/{subscription_id}/ping", response_model=PingOut)
async def ping_subscription(subscription_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """POST a signed ``ping`` event now and report the receiver's answer (bounded by
    the delivery timeout). A 410 pauses the subscription."""
    return JsonResponse(await hub.subscriptions.ping(subscription_id))


@router.get("/{subscription_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    subscription_id: IdPath,
    hub: HubDep,
    _admin: AdminDep,
    state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Deliveries newest first; ``state=dead`` lists the dead letters."""
    rows = await hub.subscriptions.deliveries(
        subscription_id, state=state, before_id=before_id, limit=limit
    )
    return JsonResponse({"deliveries": [delivery_out(r) for r in rows]})


@router.get("/{subscription_id}/attempts", response_model=AttemptList)
async def list_attempts(
    subscription_id: IdPath,
    hub: HubDep,
    _admin: AdminDep,
    delivery_id: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The delivery log: status code, latency and error of every attempt, newest first."""
    rows = await hub.subscriptions.attempts(subscription_id, delivery_id=delivery_id, limit=limit)
    return JsonResponse({"attempts": [attempt_out(r) for r in rows]})


@router.post("/{subscription_id}/replay", response_model=ReplayOut)
async def replay_deliveries(
    subscription_id: IdPath, body: ReplayRequest, hub: HubDep, _admin: AdminDep
) -> Response:
    """Send again one delivery or a time range (same ``webhook-id``: receivers dedupe)."""
    queued = await hub.subscriptions.replay(
        subscription_id,
        delivery_id=body.delivery_id,
        since=None if body.since is None else float(body.since),
        until=None if body.until is None else float(body.until),
    )
    return JsonResponse({"queued": queued})
