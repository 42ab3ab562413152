"""The messages log (``/ui/messages``) and a message's page with its status history,
the provider's error in words, and retry for a failed one.

Reads and the retry go through ``Messaging`` (the API's ``GET /v1/messages``, ``GET
/v1/messages/{id}`` and ``POST .../retry``): an agent sees messages of their chats and
the ones they sent, a viewer retries nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from wahub.api.errors import status_for
from wahub.domain.errors import ValidationError, WahubError
from wahub.domain.status import Status
from wahub.ui.auth import Page, SignedIn, checked_form, hub_of
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE = 50
STATUSES = [s.value for s in Status]


@router.get("/messages")
async def messages_page(
    request: Request,
    page: SignedIn,
    chat: str | None = None,
    status: str | None = None,
    before: str | None = None,
) -> Response:
    """Messages newest first, filtered by chat (any phone form or chat id) and status;
    a bad filter is named beside its field, the rest of the form kept."""
    filters = {"chat": (chat or "").strip()[:120], "status": (status or "").strip()}
    errors: dict[str, str] = {}
    if filters["status"] and filters["status"] not in STATUSES:
        errors["status"] = f"one of {', '.join(STATUSES)}"
    cursor = int(before) if before and before.isascii() and before.isdigit() else None
    rows: list[dict[str, object]] = []
    next_cursor: int | None = None
    status_code = 200
    if not errors:
        try:
            rows, next_cursor = await hub_of(request).messaging.list_page(
                page.actor,
                chat=filters["chat"] or None,
                status=filters["status"] or None,
                cursor=cursor,
                limit=PAGE,
            )
        except ValidationError as exc:
            field = str(exc.details.get("field", "chat"))
            errors[field if field in filters else "chat"] = exc.message
    if errors:
        status_code = 422
    return render(
        "messages.html",
        page.context(
            title="Messages",
            rows=rows,
            filters=filters,
            errors=errors,
            statuses=STATUSES,
            next_cursor=next_cursor,
        ),
        status_code=status_code,
    )


@router.get("/messages/{message_id}")
async def message_page(request: Request, page: SignedIn, message_id: str) -> Response:
    """One message (404 when it is not the actor's to see)."""
    return await _message(request, page, message_id)


@router.post("/messages/{message_id}/retry")
async def retry(request: Request, page: SignedIn, message_id: str) -> Response:
    """Queue a failed message again; a refusal (not failed, viewer) is shown on its page."""
    await checked_form(request, page.session)
    try:
        await hub_of(request).messaging.retry(page.actor, message_id)
    except WahubError as exc:
        if status_for(exc) == 404:
            raise
        return await _message(
            request, page, message_id, error=exc.message, status_code=status_for(exc)
        )
    return RedirectResponse(f"/ui/messages/{message_id}", status_code=303)


async def _message(
    request: Request,
    page: Page,
    message_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    message = await hub_of(request).messaging.get(page.actor, message_id)
    return render(
        "message.html",
        page.context(title=f"Message {message_id}", message=message, error=error),
        status_code=status_code,
    )
