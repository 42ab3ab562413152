"""The inbox (``/ui/inbox``): conversations unread first, a thread whose delivery ticks
change live, and a reply box that offers templates when the 24-hour window is closed.

Every read goes through ``features.inbox`` (the API's visibility rules), every send
through ``Messaging.send`` (the API's permission and window checks): an agent cannot see
or answer a chat that is not theirs, by link or by typing its URL, and a viewer sends
nothing. Live ticks come from the realtime feed behind ``/v1/stream``, served here as
``/ui/stream`` so the session cookie authenticates it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pydantic
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from wahub.api.errors import status_for
from wahub.api.realtime import sse_response
from wahub.domain.content import SendRequest
from wahub.domain.errors import WahubError
from wahub.ui.auth import Page, SignedIn, checked_form, hub_of, text_field
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)

MAX_TEXT = 4096


@router.get("/inbox")
async def inbox_page(request: Request, page: SignedIn) -> Response:
    """Conversations, unread first."""
    rows = await hub_of(request).inbox_view.page(page.actor)
    return render("inbox.html", page.context(title="Inbox", rows=rows, now=time.time()))


@router.get("/inbox/{conversation_id}")
async def thread_page(request: Request, page: SignedIn, conversation_id: str) -> Response:
    """One conversation (404 when it is not the actor's to see)."""
    return await _thread(request, page, conversation_id)


@router.post("/inbox/{conversation_id}/reply")
async def reply(request: Request, page: SignedIn, conversation_id: str) -> Response:
    """Send a text, or a template (``kind=template``), to the conversation's chat; a
    refusal is shown beside the reply box with what was typed kept."""
    form = await checked_form(request, page.session)
    hub = hub_of(request)
    thread = await hub.inbox_view.thread(page.actor, conversation_id, now=time.time())
    conversation = thread.conversation
    kind = text_field(form, "kind")
    target = {"to": conversation["chat_id"], "channel_id": conversation["channel_id"]}
    field = "template" if kind == "template" else "text"
    typed = form.get("text") if isinstance(form.get("text"), str) else ""
    try:
        body = _template_body(form, thread.templates) if kind == "template" else _text_body(form)
        send = SendRequest.model_validate({**target, **body})
        key = f"ui:{page.actor.user_id}:{text_field(form, 'once')}"
        await hub.messaging.send(page.actor, send, idempotency_key=key)
    except _FieldError as exc:
        return await _thread(
            request,
            page,
            conversation_id,
            errors={field: str(exc)},
            typed=str(typed),
            status_code=422,
        )
    except pydantic.ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        return await _thread(
            request,
            page,
            conversation_id,
            errors={field: reason},
            typed=str(typed),
            status_code=422,
        )
    except WahubError as exc:
        return await _thread(
            request,
            page,
            conversation_id,
            errors={field: exc.message},
            typed=str(typed),
            status_code=status_for(exc),
        )
    return RedirectResponse(f"/ui/inbox/{conversation_id}", status_code=303)


@router.get("/stream")
async def stream(request: Request, page: SignedIn) -> Response:
    """The live events this actor may see (``/v1/stream/sse``'s, by session cookie)."""
    return await sse_response(hub_of(request), page.actor)


class _FieldError(Exception):
    """A reply form's field is missing or wrong."""


def _text_body(form: FormData) -> dict[str, Any]:
    text = form.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _FieldError("write a message first")
    if len(text) > MAX_TEXT:
        raise _FieldError(f"a message has at most {MAX_TEXT} characters")
    return {"text": {"body": text}}


def _template_body(form: FormData, templates: list[dict[str, Any]]) -> dict[str, Any]:
    name, _, language = text_field(form, "template").partition("|")
    chosen = next((t for t in templates if (t["name"], t["language"]) == (name, language)), None)
    if chosen is None:
        raise _FieldError("choose one of this channel's templates")
    parameters = []
    for n in range(1, int(chosen["body_parameters"]) + 1):
        value = form.get(f"param{n}")
        if not isinstance(value, str) or not value.strip():
            raise _FieldError(f"fill in parameter {n} of the template {name}")
        parameters.append({"type": "text", "text": value.strip()[:MAX_TEXT]})
    components = [{"type": "body", "parameters": parameters}] if parameters else []
    return {"template": {"name": name, "language": {"code": language}, "components": components}}


async def _thread(
    request: Request,
    page: Page,
    conversation_id: str,
    *,
    errors: dict[str, str] | None = None,
    typed: str = "",
    status_code: int = 200,
) -> Response:
    now = time.time()
    thread = await hub_of(request).inbox_view.thread(page.actor, conversation_id, now=now)
    return render(
        "thread.html",
        page.context(
            title=thread.name,
            thread=thread,
            now=now,
            errors=errors or {},
            typed=typed,
            once=secrets.token_urlsafe(12),
        ),
        status_code=status_code,
    )
