"""``/v1/conversations`` (the inbox a UI lists), ``/v1/notifications`` (what inbound
messages told the caller) and ``/v1/auto-replies`` (admin rules).

Conversations and notifications are read by every role; agents see the conversations
of chats assigned to their employee groups and those assigned to them, and only those
conversations' notifications; others get 404. Marking read needs a writer. Auto-reply
rules are admin-only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep, WriterDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ID_MAX_LENGTH, IdPath, IdQuery, RowIdPath
from wahub.api.records import set_fields
from wahub.api.responses import JsonResponse
from wahub.api.serializers import auto_reply_out, conversation_out, notification_out
from wahub.features.conversations import MAX_PAGE
from wahub.features.notifications import MAX_ID

# A conversation cursor: the sort time and the conversation id (``1733.5|conv_...``).
_CURSOR_MAX_LENGTH = 40 + ID_MAX_LENGTH

router = APIRouter(prefix="/v1", route_class=JsonBodyRoute)

MatchKind = Literal["keyword", "regex", "first_message", "outside_hours"]


@router.get("/conversations", tags=["conversations"], summary="Conversations, newest first")
async def list_conversations(
    hub: HubDep,
    actor: ActorDep,
    channel_id: IdQuery = None,
    unread: Annotated[bool, Query(description="Only conversations with unread messages.")] = False,
    cursor: Annotated[
        str | None,
        Query(max_length=_CURSOR_MAX_LENGTH, description="next_cursor of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    rows, next_cursor = await hub.conversations.list_page(
        actor, channel_id=channel_id, unread_only=unread, cursor=cursor, limit=limit
    )
    return JsonResponse({"data": [conversation_out(r) for r in rows], "next_cursor": next_cursor})


@router.get(
    "/conversations/{conversation_id}",
    tags=["conversations"],
    summary="One conversation with its contact, lead and newest messages",
)
async def get_conversation(
    conversation_id: IdPath,
    hub: HubDep,
    actor: ActorDep,
    messages: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    row = await hub.conversations.get(actor, conversation_id, messages=messages)
    return JsonResponse(conversation_out(row))


@router.post(
    "/conversations/{conversation_id}/read",
    tags=["conversations"],
    summary="Mark a conversation read (unread count to zero)",
)
async def mark_conversation_read(
    conversation_id: IdPath, hub: HubDep, actor: WriterDep
) -> Response:
    return JsonResponse(conversation_out(await hub.conversations.mark_read(actor, conversation_id)))


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assigned_user_id: str | None = Field(
        default=None, max_length=ID_MAX_LENGTH, description="A user id, or null to unassign."
    )
    read: StrictBool | None = Field(
        default=None,
        description="true: unread count to zero and its notifications read; false: flagged unread.",
    )


@router.patch(
    "/conversations/{conversation_id}",
    tags=["conversations"],
    summary="Assign a conversation or change its read state",
)
async def update_conversation(
    conversation_id: IdPath, body: ConversationPatch, hub: HubDep, actor: WriterDep
) -> Response:
    edited = await hub.records.update_conversation(actor, conversation_id, set_fields(body))
    hub.realtime.publish(edited.event)
    return JsonResponse(conversation_out(edited.row))


@router.get(
    "/notifications",
    tags=["notifications"],
    summary="The caller's notifications, newest first, and how many are unread",
)
async def list_notifications(
    hub: HubDep,
    actor: ActorDep,
    unread: Annotated[bool, Query(description="Only unread notifications.")] = False,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_before of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    page = await hub.notifications.list_page(actor, unread_only=unread, before=before, limit=limit)
    return JsonResponse(
        {
            "data": [notification_out(r) for r in page.rows],
            "next_before": page.next_before,
            "unread_count": page.unread_count,
        }
    )


@router.post(
    "/notifications/read-all",
    tags=["notifications"],
    summary="Mark every notification the caller sees read (of one conversation, if given)",
)
async def mark_all_notifications_read(
    hub: HubDep,
    actor: WriterDep,
    conversation_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            description="Only this conversation's notifications.",
        ),
    ] = None,
) -> Response:
    marked = await hub.notifications.mark_all_read(actor, conversation_id=conversation_id)
    return JsonResponse({"marked": marked})


@router.post(
    "/notifications/{notification_id}/read",
    tags=["notifications"],
    summary="Mark a notification read (a second time keeps the first read_at)",
)
async def mark_notification_read(
    notification_id: RowIdPath, hub: HubDep, actor: WriterDep
) -> Response:
    return JsonResponse(notification_out(await hub.notifications.mark_read(actor, notification_id)))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusinessHoursIn(_Body):
    timezone: str = Field(min_length=1, max_length=64, examples=["Europe/Berlin"])
    days: list[StrictInt] = Field(
        default=[0, 1, 2, 3, 4], max_length=7, description="0 = Monday ... 6 = Sunday"
    )
    start: str = Field(max_length=8, examples=["09:00"])
    end: str = Field(max_length=8, examples=["17:00"])


class AutoReplyCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    match_kind: MatchKind
    pattern: str | None = Field(
        default=None,
        max_length=500,
        description="keyword: comma-separated words, each matched as a whole word in any "
        "case; regex: searched case-insensitively.",
    )
    reply_text: str = Field(min_length=1, max_length=4096)
    channel_id: str | None = Field(
        default=None, max_length=ID_MAX_LENGTH, description="None: every channel."
    )
    business_hours: BusinessHoursIn | None = Field(
        default=None, description="Required for outside_hours."
    )
    enabled: StrictBool = True
    cooldown_seconds: StrictInt = Field(
        default=86400, ge=60, le=30 * 86400, description="At most one reply per chat per this."
    )


class AutoReplyUpdate(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    match_kind: MatchKind | None = None
    pattern: str | None = Field(default=None, max_length=500)
    reply_text: str | None = Field(default=None, min_length=1, max_length=4096)
    channel_id: str | None = Field(default=None, max_length=ID_MAX_LENGTH)
    business_hours: BusinessHoursIn | None = None
    enabled: StrictBool | None = None
    cooldown_seconds: StrictInt | None = Field(default=None, ge=60, le=30 * 86400)


def _fields(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)


@router.post("/auto-replies", status_code=201, tags=["auto-replies"], summary="Add a rule")
async def create_auto_reply(body: AutoReplyCreate, hub: HubDep, _admin: AdminDep) -> Response:
    return JsonResponse(auto_reply_out(await hub.auto_replies.create(_fields(body))), 201)


@router.get("/auto-replies", tags=["auto-replies"], summary="Every rule")
async def list_auto_replies(hub: HubDep, _admin: AdminDep) -> Response:
    return JsonResponse({"data": [auto_reply_out(r) for r in await hub.auto_replies.list_all()]})


@router.get("/auto-replies/{rule_id}", tags=["auto-replies"], summary="One rule")
async def get_auto_reply(rule_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    return JsonResponse(auto_reply_out(await hub.auto_replies.get(rule_id)))


@router.patch("/auto-replies/{rule_id}", tags=["auto-replies"], summary="Change a rule")
async def update_auto_reply(
    rule_id: IdPath, body: AutoReplyUpdate, hub: HubDep, _admin: AdminDep
) -> Response:
    return JsonResponse(auto_reply_out(await hub.auto_replies.update(rule_id, _fields(body))))


@router.delete(
    "/auto-replies/{rule_id}", status_code=204, tags=["auto-replies"], summary="Delete a rule"
)
async def delete_auto_reply(rule_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    await hub.auto_replies.delete(rule_id)
    return Response(status_code=204)
