"""``/v1/messages``: send, read, list and retry outbound messages.

``POST /v1/messages`` is the hot path: one key lookup, one write transaction, no
response re-validation. ``202`` means the message row is committed (invariant 1).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from wahub.api.auth import ActorDep, HubDep, WriterDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import CHAT_ID_MAX_LENGTH, IdPath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import MessageOut, MessagePage, message_out
from wahub.domain.content import SendRequest
from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.features.messaging import MAX_PAGE

router = APIRouter(prefix="/v1/messages", tags=["messages"], route_class=JsonBodyRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry-safe sends: the same key and body return the same message (200); "
        "the same key with another body is 409. Scoped to the caller's user.",
    ),
]


def accepted_response(message: dict[str, Any], *, created: bool) -> JsonResponse:
    """202 for a new message, 200 for an idempotent replay; ``Location`` points at it."""
    return JsonResponse(
        message_out(message),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/messages/{message['id']}"},
    )


@router.post(
    "",
    status_code=202,
    response_model=MessageOut,
    responses={200: {"model": MessageOut, "description": "Idempotent replay"}},
    summary="Queue a message",
)
async def send_message(
    body: SendRequest,
    hub: HubDep,
    actor: WriterDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Validate and store one outbound message; it is sent by the workers."""
    accepted = await hub.messaging.send(actor, body, idempotency_key=idempotency_key)
    return accepted_response(accepted.message, created=accepted.created)


@router.get("", response_model=MessagePage, summary="List messages, newest first")
async def list_messages(
    hub: HubDep,
    actor: ActorDep,
    chat: Annotated[
        str | None,
        Query(min_length=1, max_length=CHAT_ID_MAX_LENGTH, description="Phone number or chat id."),
    ] = None,
    status: Status | None = None,
    cursor: Annotated[
        str | None,
        Query(max_length=19, pattern=r"^[0-9]+$", description="next_cursor of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    """Agents see messages to their assigned chats and messages they sent."""
    rows, next_seq = await hub.messaging.list_page(
        actor,
        chat=chat,
        status=status.value if status is not None else None,
        cursor=_parse_cursor(cursor),
        limit=limit,
    )
    return JsonResponse(
        {
            "data": [message_out(r) for r in rows],
            "next_cursor": str(next_seq) if next_seq is not None else None,
        }
    )


def _parse_cursor(cursor: str | None) -> int | None:
    """The message seq in ``cursor``; the range is checked by ``Messaging.list_page``."""
    if cursor is None:
        return None
    if not cursor.isascii() or not cursor.isdigit():
        raise ValidationError(
            "cursor: not a cursor returned by this API (use next_cursor as given)",
            details={"field": "cursor"},
        )
    return int(cursor)


@router.get("/{message_id}", response_model=MessageOut, summary="One message with its history")
async def get_message(message_id: IdPath, hub: HubDep, actor: ActorDep) -> Response:
    """404 also when the caller may not see the message (no existence leak)."""
    return JsonResponse(message_out(await hub.messaging.get(actor, message_id)))


@router.post(
    "/{message_id}/retry",
    status_code=202,
    response_model=MessageOut,
    summary="Queue a failed message again",
)
async def retry_message(message_id: IdPath, hub: HubDep, actor: WriterDep) -> Response:
    """409 unless the message is failed (and was never delivered)."""
    return JsonResponse(message_out(await hub.messaging.retry(actor, message_id)), status_code=202)
