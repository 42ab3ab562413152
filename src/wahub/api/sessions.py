"""WhatsApp Web sessions of web channels: state, start/stop/restart/logout, the QR
code to scan and pairing codes (shaped after WAHA's and Evolution API's session routes).

The API holds no connection: it writes what is wanted and the session process
(``wahub sessions``) acts on it, so these routes answer at once with the state as it
is; GET .../session shows what the session process made of it.
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import segno
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ChannelPath
from wahub.api.responses import JsonResponse

router = APIRouter(prefix="/v1", tags=["sessions"], route_class=JsonBodyRoute)

# How long POST .../pairing-code waits for the session process to get a code.
PAIRING_WAIT_S = 15.0


class MeOut(BaseModel):
    phone: str | None = Field(description="Our own number (E.164) once linked.")
    lid: str | None
    push_name: str | None


class StateChangeOut(BaseModel):
    state: str
    reason: str | None
    at: float = Field(description="Unix seconds.")


class SessionOut(BaseModel):
    channel_id: str
    name: str
    state: str = Field(
        description="stopped, starting, scan_qr, working, degraded (keep-alives missed), "
        "failed (see reason) or logged_out."
    )
    reason: str | None
    since: float | None
    desired: str = Field(description="running or stopped: what was last asked.")
    me: MeOut | None
    last_keepalive_at: float | None
    linked_at: float | None
    held_by: str | None = Field(description="The session process holding the phone.")
    history: list[StateChangeOut] = Field(description="Latest state changes, newest first.")


class QrOut(BaseModel):
    code: str = Field(description="The string a QR encodes (render it yourself).")
    expires_at: float | None


class PairingCodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str = Field(min_length=1, max_length=40, description="The phone to link (E.164).")


class PairingCodeOut(BaseModel):
    code: str = Field(description="Enter it on the phone: Linked devices > Link with number.")


def qr_png(code: str) -> bytes:
    """The QR code of ``code`` as a PNG a phone's camera reads from a screen."""
    png = io.BytesIO()
    segno.make(code, error="l").save(png, kind="png", scale=6, border=4)
    return png.getvalue()


def _session(view: dict[str, Any]) -> Response:
    return JsonResponse(view)


@router.get("/channels/{channel}/session", response_model=SessionOut)
async def get_session(channel: ChannelPath, hub: HubDep, _actor: ActorDep) -> Response:
    """The session's state with its reason, our number once linked, and its history."""
    return _session(await hub.web_sessions.status(channel))


@router.post("/channels/{channel}/session/start", response_model=SessionOut)
async def start_session(channel: ChannelPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Want it running: it resumes from stored credentials, else shows QR codes."""
    return _session(await hub.web_sessions.start(channel))


@router.post("/channels/{channel}/session/stop", response_model=SessionOut)
async def stop_session(channel: ChannelPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Want it stopped; the link is kept, so a start resumes without a QR. Queued
    messages wait."""
    return _session(await hub.web_sessions.stop(channel))


@router.post("/channels/{channel}/session/restart", response_model=SessionOut)
async def restart_session(channel: ChannelPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Close the connection and open it again (a cure for a stuck session)."""
    return _session(await hub.web_sessions.restart(channel))


@router.post("/channels/{channel}/session/logout", response_model=SessionOut)
async def logout_session(channel: ChannelPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Unlink the phone and delete the session's credentials; a start pairs anew."""
    return _session(await hub.web_sessions.logout(channel))


@router.get(
    "/channels/{channel}/session/qr",
    response_model=QrOut,
    responses={200: {"content": {"image/png": {}}}},
)
async def session_qr(
    channel: ChannelPath,
    hub: HubDep,
    _admin: AdminDep,
    format: Annotated[
        Literal["image", "raw"],
        Query(description="image: a PNG; raw: the string as JSON, to render yourself."),
    ] = "image",
) -> Response:
    """The QR code to scan now (it rotates: ask again after ``expires_at``). 409
    ``session_linked`` when a phone is linked, 409 ``session_not_working`` when the
    session shows no QR (not started, failed...)."""
    qr = await hub.web_sessions.qr(channel)
    if format == "raw":
        return JsonResponse({"code": qr.code, "expires_at": qr.expires_at})
    return Response(qr_png(qr.code), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/channels/{channel}/session/pairing-code", response_model=PairingCodeOut)
async def pairing_code(
    channel: ChannelPath, body: PairingCodeIn, hub: HubDep, _admin: AdminDep
) -> Response:
    """A code to link the phone without scanning (422 for a number we cannot read, 409
    when linked or when the session process gives none)."""
    code = await hub.web_sessions.request_pairing_code(channel, body.phone, wait_s=PAIRING_WAIT_S)
    return JsonResponse({"code": code})
