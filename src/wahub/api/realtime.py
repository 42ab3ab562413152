"""Live message status: WebSocket ``/v1/stream`` and the SSE fallback ``/v1/stream/sse``.

Both send JSON objects with a ``type``: first ``subscribed`` (from then on no event is
missed), then ``message.status`` events as ``RealtimeHub`` publishes them, and
``events.dropped`` if this client fell so far behind that its queue overflowed (re-read
the messages it cares about). Admins and viewers see every event; agents see events of
chats assigned to them and of messages they sent. Heartbeats every
``HEARTBEAT_SECONDS`` keep proxies from closing idle streams, notice gone clients, and
re-read an agent's assignments so a new one applies without reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from wahub.api.auth import HubDep, get_hub, key_from_connection, stream_actor
from wahub.api.serializers import iso
from wahub.domain.actors import Actor
from wahub.domain.errors import AuthenticationFailed, WahubError
from wahub.realtime.hub import Subscription
from wahub.runtime import Hub

log = logging.getLogger("wahub.api.realtime")

router = APIRouter(prefix="/v1/stream", tags=["realtime"])

HEARTBEAT_SECONDS = 15.0
WS_UNAUTHORIZED = 4401  # 4000-4999 are application codes; 4401 mirrors HTTP 401
WS_INTERNAL_ERROR = 1011


class Visibility:
    """Which events one actor may receive. ``accepts`` runs in the hub's fan-out loop for
    every event, so it only reads a prepared set."""

    def __init__(self, hub: Hub, actor: Actor) -> None:
        self._hub = hub
        self.actor = actor
        self._chat_ids: frozenset[str] | None = frozenset()

    @classmethod
    async def load(cls, hub: Hub, actor: Actor) -> Visibility:
        visibility = cls(hub, actor)
        await visibility.refresh()
        return visibility

    async def refresh(self) -> None:
        chat_ids = await self._hub.access.visible_chat_ids(self.actor)
        self._chat_ids = None if chat_ids is None else frozenset(chat_ids)

    def accepts(self, event: dict[str, Any]) -> bool:
        chat_ids = self._chat_ids
        if chat_ids is None or event.get("chat_id") in chat_ids:
            return True
        return event.get("_sender_user_id") == self.actor.user_id


def public_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event without private keys (``_sender_user_id``), its time as ISO 8601."""
    out = {k: v for k, v in event.items() if not k.startswith("_")}
    if isinstance(out.get("at"), int | float):
        out["at"] = iso(out["at"])
    return out


def subscribed_event(actor: Actor) -> dict[str, Any]:
    return {"type": "subscribed", "user_id": actor.user_id, "role": actor.role.value}


async def feed(sub: Subscription, visibility: Visibility) -> AsyncIterator[dict[str, Any] | None]:
    """The client's events in order; ``None`` when a heartbeat is due."""
    next_beat = time.monotonic() + HEARTBEAT_SECONDS
    dropped = 0
    while True:
        timeout = next_beat - time.monotonic()
        event: dict[str, Any] | None = None
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(sub.queue.get(), timeout)
        if event is None:
            next_beat = time.monotonic() + HEARTBEAT_SECONDS
            await visibility.refresh()
            yield None
            continue
        if sub.dropped != dropped:
            yield {"type": "events.dropped", "count": sub.dropped - dropped}
            dropped = sub.dropped
        yield public_event(event)


# --- WebSocket ---------------------------------------------------------------------------


@router.websocket("")
async def stream_websocket(websocket: WebSocket) -> None:
    """Authenticated by header or ``?api_key=``; a bad key closes the socket with 4401."""
    hub = get_hub(websocket)
    # Accept first: a close before accepting becomes an HTTP 403 and loses the code.
    await websocket.accept()
    try:
        actor = await hub.access.authenticate(key_from_connection(websocket))
        visibility = await Visibility.load(hub, actor)
    except AuthenticationFailed as exc:
        await websocket.close(code=WS_UNAUTHORIZED, reason=exc.message[:120])
        return
    except WahubError as exc:
        log.warning("stream setup failed: %s", exc.message)
        await websocket.close(code=WS_INTERNAL_ERROR, reason=exc.code)
        return
    sub = hub.realtime.subscribe(visibility.accepts)
    pump = asyncio.create_task(_pump(websocket, sub, visibility))
    listen = asyncio.create_task(_until_disconnect(websocket))
    try:
        done, _ = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.realtime.unsubscribe(sub)
        for task in (pump, listen):
            task.cancel()
        await asyncio.gather(pump, listen, return_exceptions=True)
    error = None if listen in done or pump.cancelled() else pump.exception()
    if error is not None and not isinstance(error, WebSocketDisconnect):
        # The client is still there but we cannot serve it (e.g. the database is gone).
        log.warning("stream for %s ended: %r", visibility.actor.user_id, error)
        with contextlib.suppress(Exception):
            await websocket.close(code=WS_INTERNAL_ERROR)


async def _pump(websocket: WebSocket, sub: Subscription, visibility: Visibility) -> None:
    await websocket.send_text(_json(subscribed_event(visibility.actor)))
    async for item in feed(sub, visibility):
        await websocket.send_text(_json(item if item is not None else {"type": "heartbeat"}))


async def _until_disconnect(websocket: WebSocket) -> None:
    # Clients have nothing to say; reading is how a closed socket is noticed.
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


# --- Server-sent events ------------------------------------------------------------------


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that runs ``on_close`` however the stream ends."""

    def __init__(self, frames: AsyncIterator[bytes], *, on_close: Callable[[], None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            # no-transform/X-Accel-Buffering: proxies must pass each frame on at once.
            headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
        )
        self._frames = frames
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


@router.get(
    "/sse",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "data: <json>\\n\\n"},
    },
    summary="Live message status as server-sent events",
)
async def stream_sse(hub: HubDep, actor: Annotated[Actor, Depends(stream_actor)]) -> Response:
    """``data: <json>`` frames, and a ``: heartbeat`` comment every 15 s."""
    return await sse_response(hub, actor)


async def sse_response(hub: Hub, actor: Actor) -> Response:
    """The SSE stream of what ``actor`` may see: this route's, and the dashboard's (which
    authenticates by its session cookie instead of a key)."""
    visibility = await Visibility.load(hub, actor)
    sub = hub.realtime.subscribe(visibility.accepts)
    return EventStreamResponse(
        _sse_frames(sub, visibility), on_close=lambda: hub.realtime.unsubscribe(sub)
    )


async def _sse_frames(sub: Subscription, visibility: Visibility) -> AsyncIterator[bytes]:
    yield _frame(subscribed_event(visibility.actor))
    async for item in feed(sub, visibility):
        yield _frame(item) if item is not None else b": heartbeat\n\n"


def _frame(value: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"
