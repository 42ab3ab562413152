"""Routes for teams moving from the systems wahub replaces (seed 001's queue API).

``POST /api/messages/send {"groupJid", "content"}`` -> ``202 {"success": true,
"messageId", "status": "pending"}``. Authentication, group permissions and the error
shape are the same as on ``/v1``; only the request and success shapes are the old ones.

``POST /functions/v1/lookup-whatsapp-groups`` and ``POST
/functions/v1/sync-whatsapp-group-members`` are seed 000's group cache functions: the
same request and success shapes ("artists" are our accounts, group ids without
``@g.us``), answered from wahub's synced members.

``POST /periskopewebhook`` (seed 002's receiver) is ``POST /v1/webhooks/periskope``
under its old path, so a Periskope webhook set up for the old system keeps working.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from wahub.api.auth import ActorDep, HubDep, WriterDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.messages import IdempotencyKey
from wahub.api.responses import JsonResponse
from wahub.api.webhooks import receive_docs, receive_handler
from wahub.domain.content import TEXT_LIMIT, SendRequest, TextBody
from wahub.domain.errors import ValidationError
from wahub.domain.phones import bare_group_id, canonical_chat_id, is_group_chat
from wahub.providers.periskope.spec import RECEIVER as PERISKOPE_RECEIVER

router = APIRouter(tags=["compat"], route_class=JsonBodyRoute)

# The seed systems' vocabulary: they call our "queued" (and the in-flight states) "pending".
_SEED_STATUS = {"queued": "pending", "sending": "pending", "uncertain": "pending"}


def seed_status(status: str) -> str:
    return _SEED_STATUS.get(status, status)


class CompatSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_jid: str = Field(alias="groupJid", min_length=1, max_length=120)
    content: str = Field(min_length=1, max_length=TEXT_LIMIT)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class CompatAccepted(BaseModel):
    success: bool
    messageId: str  # the seed API's field name
    status: str


@router.post(
    "/api/messages/send",
    status_code=202,
    response_model=CompatAccepted,
    summary="Send text to a group (seed-compatible)",
)
async def compat_send(
    body: CompatSend, hub: HubDep, actor: WriterDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Queue a text message to a group. Agents need the group assigned (403 otherwise)."""
    chat_id = canonical_chat_id(body.group_jid, field="groupJid")
    if not is_group_chat(chat_id):
        raise ValidationError(
            "groupJid: expected a group id like 120363012345678901@g.us",
            details={"field": "groupJid", "value": body.group_jid},
        )
    request = SendRequest(to=chat_id, type="text", text=TextBody(body=body.content))
    try:
        accepted = await hub.messaging.send(actor, request, idempotency_key=idempotency_key)
    except ValidationError as exc:
        raise _renamed_to_group_jid(exc) from None
    message = accepted.message
    return JsonResponse(
        {"success": True, "messageId": message["id"], "status": seed_status(message["status"])},
        status_code=202 if accepted.created else 200,
    )


router.add_api_route(
    "/periskopewebhook",
    receive_handler(PERISKOPE_RECEIVER),
    methods=["POST"],
    **receive_docs(PERISKOPE_RECEIVER),
    summary="Receive Periskope webhooks (seed-compatible path)",
    description="The same receiver as `POST /v1/webhooks/periskope`.",
)


def _renamed_to_group_jid(exc: ValidationError) -> ValidationError:
    """The service names the recipient ``to``; this API calls it ``groupJid``."""
    if exc.details.get("field") != "to":
        return exc
    message = exc.message
    if message.startswith("to:"):
        message = "groupJid:" + message[len("to:") :]
    return ValidationError(message, details={**exc.details, "field": "groupJid"})


# --- seed 000: the group members cache --------------------------------------------------


class CompatLookup(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone: str = Field(min_length=1, max_length=64)


class CompatArtist(BaseModel):
    id: str
    name: str
    whatsapp_group_id: str
    whatsapp_group_name: str | None
    member_rank: str


class CompatLookupOut(BaseModel):
    success: bool
    artists: list[CompatArtist]
    count: int
    cached: bool


class CompatSync(BaseModel):
    model_config = ConfigDict(extra="ignore")

    artist_id: str | None = Field(default=None, max_length=40)


class CompatSyncResult(BaseModel):
    artist_id: str
    artist_name: str
    status: str
    members_synced: int


class CompatSyncOut(BaseModel):
    success: bool
    message: str
    total_artists: int
    success_count: int
    fail_count: int
    results: list[CompatSyncResult]


@router.post(
    "/functions/v1/lookup-whatsapp-groups",
    response_model=CompatLookupOut,
    summary="Accounts by member phone (seed-compatible)",
)
async def compat_lookup(body: CompatLookup, hub: HubDep, _actor: ActorDep) -> Response:
    """One entry per account and group the phone is a member of; 422 for a bad phone."""
    found = await hub.groups.lookup(body.phone)
    artists = [
        {
            "id": m["account_id"],
            "name": m["account_name"],
            "whatsapp_group_id": bare_group_id(m["chat_id"]),
            "whatsapp_group_name": m["group_name"],
            "member_rank": m["rank"],
        }
        for m in found.matches
    ]
    return JsonResponse(
        {"success": True, "artists": artists, "count": len(artists), "cached": True}
    )


@router.post(
    "/functions/v1/sync-whatsapp-group-members",
    response_model=CompatSyncOut,
    summary="Sync accounts' group members (seed-compatible)",
)
async def compat_sync(body: CompatSync, hub: HubDep, _writer: WriterDep) -> Response:
    """Sync one account's groups (``artist_id``) or every account's, now. An account
    succeeds when all its groups synced; a failed group keeps its last good members."""
    report = await hub.group_sync.sync_accounts(body.artist_id)
    succeeded = sum(1 for a in report.accounts if a.status == "success")
    return JsonResponse(
        {
            "success": True,
            "message": f"Synced {succeeded} artist groups successfully",
            "total_artists": len(report.accounts),
            "success_count": succeeded,
            "fail_count": len(report.accounts) - succeeded,
            "results": [
                {
                    "artist_id": a.account_id,
                    "artist_name": a.account_name,
                    "status": a.status,
                    "members_synced": a.members_synced,
                }
                for a in report.accounts
            ],
        }
    )
