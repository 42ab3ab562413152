"""``GET /v1/messages/search``: full-text search over stored messages.

Mounted before the messages router, whose ``/v1/messages/{message_id}`` would otherwise
take ``search`` for a message id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from wahub.api.auth import ActorDep, HubDep
from wahub.api.responses import JsonResponse
from wahub.api.serializers import MessageOut, message_out
from wahub.domain.errors import ValidationError
from wahub.features.search import MAX_LIMIT, MessageSearch, SearchQuery

router = APIRouter(prefix="/v1/messages", tags=["messages"])


class SearchHitOut(BaseModel):
    message: MessageOut
    chat_name: str | None
    snippet: str | None
    score: float


class SearchPage(BaseModel):
    data: list[SearchHitOut]


TimeQuery = Annotated[
    str | None,
    Query(description="ISO 8601 (2025-06-01T12:00:00Z) or unix seconds.", max_length=40),
]


@router.get("/search", response_model=SearchPage, summary="Full-text search over messages")
async def search_messages(
    hub: HubDep,
    actor: ActorDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=500,
            description="Words to find (all of them, as word prefixes) in the message "
            "text, template name or chat name. Operators and punctuation are ignored.",
        ),
    ],
    chat_id: Annotated[str | None, Query(max_length=120)] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
) -> Response:
    """Best matches first; ``snippet`` marks the matched words with ``[[`` and ``]]``.
    Agents find messages of the chats assigned to them and messages they sent."""
    search = MessageSearch(hub.db, hub.access, default_region=hub.settings.default_region)
    hits = await search.search(
        actor,
        SearchQuery(
            q=q,
            chat_id=chat_id,
            since=_moment(since, "since"),
            until=_moment(until, "until"),
            limit=limit,
        ),
    )
    data: list[dict[str, Any]] = [
        {
            "message": message_out(hit.message),
            "chat_name": hit.chat_name,
            "snippet": hit.snippet,
            "score": hit.score,
        }
        for hit in hits
    ]
    return JsonResponse({"data": data})


def _moment(value: str | None, field: str) -> float | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{field}: expected ISO 8601 or unix seconds, got {value!r}",
            details={"field": field},
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(
            f"{field}: give a time zone (e.g. Z or +02:00), got {value!r}",
            details={"field": field},
        )
    return moment.timestamp()
