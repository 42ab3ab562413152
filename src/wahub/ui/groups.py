"""Groups (``/ui/groups``): the phone lookup (a number in any form -> the accounts whose
groups have it as a member) and the member cache's sync status: failed, stale and
never-synced groups; ``/ui/groups/{chat_id}`` shows one group's members.

Everything goes through ``GroupCache`` (the API's ``POST /v1/lookup``, ``GET
/v1/groups/health`` and ``GET /v1/groups/{id}/members``): an agent sees the members of
assigned groups only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from wahub.domain.errors import ValidationError
from wahub.ui.auth import SignedIn, hub_of
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/groups")
async def groups_page(request: Request, page: SignedIn, phone: str | None = None) -> Response:
    """Sync status, and the lookup's answer when a phone was given (a number that is not
    one is named beside the field, what was typed kept)."""
    hub = hub_of(request)
    typed = (phone or "").strip()[:64]
    lookup: Any = None
    error: str | None = None
    if typed:
        try:
            lookup = await hub.groups.lookup(typed)
        except ValidationError as exc:
            error = exc.message
    return render(
        "groups.html",
        page.context(
            title="Groups",
            health=await hub.groups.health(),
            typed=typed,
            lookup=lookup,
            error=error,
        ),
        status_code=422 if error else 200,
    )


@router.get("/groups/{chat_id}")
async def group_page(request: Request, page: SignedIn, chat_id: str) -> Response:
    """One group's cached members (404 when an agent may not see it)."""
    chat, members = await hub_of(request).groups.members(page.actor, chat_id)
    return render(
        "group.html",
        page.context(title=chat["name"] or chat["chat_id"], chat=chat, members=members),
    )
