"""Channels (``/ui/channels``): the list with each channel's state, add (Cloud API,
WHAPI, Periskope, web), pause and resume; for a web channel its pairing page: the QR
(a PNG made like the session API's, refreshed as it rotates) or a pairing code, which
flips to "working" with our number without a reload, and start and logout.

The same feature calls as ``/v1/channels`` and ``/v1/channels/{id}/session``: every role
sees the channels its key may use; only admins add, pause, pair or log out.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from wahub.api.errors import status_for
from wahub.api.sessions import PAIRING_WAIT_S, qr_png
from wahub.domain.errors import ConflictError, NotFound, PermissionDenied, WahubError
from wahub.providers import catalog
from wahub.providers.spec import Capability
from wahub.ui.auth import Page, SignedIn, checked_form, hub_of, text_field
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)

FIELDS = ("kind", "name", "access_token", "phone_number_id", "phone_number", "base_url")
SESSION_ACTIONS = ("start", "logout")


def _require_admin(page: Page) -> None:
    if not page.is_admin:
        raise PermissionDenied(
            f"only admins change channels (you are signed in as {page.actor.role.value})"
        )


def _is_web(channel: dict[str, Any]) -> bool:
    spec = catalog.spec_for(str(channel["kind"]))
    return spec is not None and spec.supports(Capability.SESSION)


async def _visible(request: Request, page: Page, channel_id: str) -> dict[str, Any]:
    channel = await hub_of(request).channels.get(channel_id)
    if not page.actor.may_use_channel(channel["id"]):
        raise NotFound(f"no channel {channel_id}")
    return channel


@router.get("/channels")
async def channels_page(request: Request, page: SignedIn) -> Response:
    """Every channel the actor may use with its state (and, for admins, the add form)."""
    return await _list(request, page)


@router.post("/channels")
async def add_channel(request: Request, page: SignedIn) -> Response:
    """Add a channel; a web channel goes to its pairing page. A bad field is named
    beside it with what was typed kept (never the token)."""
    _require_admin(page)
    form = await checked_form(request, page.session)
    typed = {f: text_field(form, f) for f in FIELDS}
    try:
        channel = await hub_of(request).channels.create(
            kind=typed["kind"],
            name=typed["name"][:200],
            access_token=typed["access_token"],
            phone_number_id=typed["phone_number_id"] or None,
            phone_number=typed["phone_number"] or None,
            base_url=typed["base_url"] or None,
        )
    except WahubError as exc:
        field = str(exc.details.get("field", "name"))
        typed["access_token"] = ""  # a secret is never sent back
        return await _list(
            request,
            page,
            errors={field if field in FIELDS else "name": exc.message},
            typed=typed,
            status_code=status_for(exc),
        )
    return RedirectResponse(f"/ui/channels/{channel['id']}", status_code=303)


@router.get("/channels/{channel_id}")
async def channel_page(request: Request, page: SignedIn, channel_id: str) -> Response:
    """A channel; for a web channel, its session with the live pairing panel."""
    return await _channel(request, page, channel_id)


@router.get("/channels/{channel_id}/pairing")
async def pairing_fragment(request: Request, page: SignedIn, channel_id: str) -> Response:
    """The session panel alone (the page fetches it to follow the QR and the state)."""
    channel = await _visible(request, page, channel_id)
    return render("channel_pairing.html", await _pairing(request, page, channel))


@router.get("/channels/{channel_id}/qr.png")
async def qr_image(request: Request, page: SignedIn, channel_id: str) -> Response:
    """The QR to scan now as a PNG (admins, as ``GET .../session/qr``; 409 when none)."""
    _require_admin(page)
    channel = await _visible(request, page, channel_id)
    qr = await hub_of(request).web_sessions.qr(channel["id"])
    return Response(qr_png(qr.code), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/channels/{channel_id}/pairing-code")
async def pairing_code(request: Request, page: SignedIn, channel_id: str) -> Response:
    """Ask for a code to type on the phone instead of scanning; shown on the page, or
    the refusal beside the phone field with what was typed kept."""
    _require_admin(page)
    form = await checked_form(request, page.session)
    channel = await _visible(request, page, channel_id)
    phone = text_field(form, "phone")[:40]
    try:
        code = await hub_of(request).web_sessions.request_pairing_code(
            channel["id"], phone, wait_s=PAIRING_WAIT_S
        )
    except WahubError as exc:
        return await _channel(
            request,
            page,
            channel_id,
            errors={"phone": exc.message},
            phone=phone,
            status_code=status_for(exc),
        )
    return await _channel(request, page, channel_id, code=code, phone=phone)


@router.post("/channels/{channel_id}/{action}")
async def act(request: Request, page: SignedIn, channel_id: str, action: str) -> Response:
    """pause / resume (its messages wait in the queue, or go again); start / logout of a
    web channel's session."""
    _require_admin(page)
    await checked_form(request, page.session)
    hub = hub_of(request)
    channel = await _visible(request, page, channel_id)
    if action in ("pause", "resume"):
        await hub.channels.update(channel["id"], paused=action == "pause")
    elif action in SESSION_ACTIONS and _is_web(channel):
        await getattr(hub.web_sessions, action)(channel["id"])
    else:
        raise NotFound(f"no action {action} for channel {channel['name']}")
    return RedirectResponse(f"/ui/channels/{channel['id']}", status_code=303)


async def _session_state(request: Request, channel: dict[str, Any]) -> dict[str, Any] | None:
    return await hub_of(request).web_sessions.status(channel["id"]) if _is_web(channel) else None


async def _pairing(request: Request, page: Page, channel: dict[str, Any]) -> dict[str, Any]:
    """The pairing panel's context: the session, and the QR's address while one is shown
    (versioned by the code, so the browser fetches each new QR and only new ones)."""
    session = await _session_state(request, channel)
    qr_version: str | None = None
    qr_error: str | None = None
    if session is not None and page.is_admin and session["state"] == "scan_qr":
        try:
            qr = await hub_of(request).web_sessions.qr(channel["id"])
            qr_version = hashlib.sha256(qr.code.encode()).hexdigest()[:16]
        except ConflictError as exc:  # rotated out between the two reads: the next poll
            qr_error = exc.message
    return {
        "channel": channel,
        "session": session,
        "qr_version": qr_version,
        "qr_error": qr_error,
        "is_admin": page.is_admin,
        "now": time.time(),
    }


async def _list(
    request: Request,
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    rows = []
    for channel in await hub_of(request).channels.list_all():
        if page.actor.may_use_channel(channel["id"]):
            rows.append({**channel, "session": await _session_state(request, channel)})
    return render(
        "channels.html",
        page.context(
            title="Channels",
            rows=rows,
            kinds=catalog.kinds(),
            errors=errors or {},
            typed=typed or {f: "" for f in FIELDS} | {"kind": "cloudapi"},
        ),
        status_code=status_code,
    )


async def _channel(
    request: Request,
    page: Page,
    channel_id: str,
    *,
    code: str | None = None,
    phone: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    channel = await _visible(request, page, channel_id)
    return render(
        "channel.html",
        page.context(
            title=channel["name"],
            code=code,
            phone=phone,
            errors=errors or {},
            web=_is_web(channel),
            **await _pairing(request, page, channel),
        ),
        status_code=status_code,
    )
