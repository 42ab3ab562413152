"""Who is calling: API key -> ``Actor``, and the role checks routes depend on.

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Streams also
accept ``?api_key=`` because browsers cannot set headers on WebSocket or EventSource
requests. Unauthenticated: ``GET /``, ``/healthz``, ``/docs``, ``/openapi.json``,
``/metrics`` and the provider webhooks (which check a signature instead).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from wahub.domain.actors import Actor, Role
from wahub.domain.errors import PermissionDenied
from wahub.runtime import Hub

# auto_error=False everywhere: a missing key must produce our 401 shape, not FastAPI's 403.
bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
api_key_header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`"
)
api_key_query_scheme = APIKeyQuery(
    name="api_key", auto_error=False, description="`?api_key=<key>` (streams only)"
)


def get_hub(conn: HTTPConnection) -> Hub:
    """The running hub (set on ``app.state.hub`` by ``create_app``)."""
    hub: Hub = conn.app.state.hub
    return hub


async def _hub(conn: HTTPConnection) -> Hub:
    # async, so FastAPI resolves it on the event loop: a plain def dependency is run in
    # the thread pool, a thread hop on every request (every webhook) for one attribute.
    return get_hub(conn)


hub_dependency = _hub  # what routes depend on to reach the store (OpenAPI declares 503)
HubDep = Annotated[Hub, Depends(_hub)]


def key_from_headers(conn: HTTPConnection) -> str | None:
    """The key in ``Authorization: Bearer`` or, failing that, ``X-API-Key``."""
    authorization = conn.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return conn.headers.get("x-api-key") or None


def key_from_connection(conn: HTTPConnection) -> str | None:
    """Header key, or the ``api_key`` query parameter (for browser streams)."""
    return key_from_headers(conn) or conn.query_params.get("api_key") or None


async def current_actor(
    hub: HubDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    header_key: Annotated[str | None, Security(api_key_header_scheme)],
) -> Actor:
    """The authenticated caller. Raises AuthenticationFailed (401)."""
    key = bearer.credentials if bearer is not None else header_key
    return await hub.access.authenticate(key)


ActorDep = Annotated[Actor, Depends(current_actor)]


async def require_writer(actor: ActorDep) -> Actor:
    """An admin or agent key that is not read-only. Raises PermissionDenied (403)."""
    if actor.read_only:
        raise PermissionDenied("this key is read-only: this needs a key that may write")
    if not actor.can_write:
        raise PermissionDenied("viewer keys are read-only: this needs an agent or admin key")
    return actor


async def require_admin(conn: HTTPConnection, actor: ActorDep) -> Actor:
    """An admin key acting on every channel (read-only ones for reads). Raises
    PermissionDenied (403) for agents, viewers and channel-scoped keys: a key limited to
    some channels must not create channels or an unlimited key."""
    if actor.role != Role.ADMIN:
        raise PermissionDenied(f"this needs an admin key (yours is {actor.role.value})")
    if actor.channel_scoped:
        raise PermissionDenied("this needs an admin key for every channel; yours is limited")
    if actor.read_only and conn.scope.get("method") not in ("GET", "HEAD"):
        raise PermissionDenied("this key is read-only: this needs a key that may write")
    return actor


WriterDep = Annotated[Actor, Depends(require_writer)]
AdminDep = Annotated[Actor, Depends(require_admin)]


async def stream_actor(
    conn: HTTPConnection,
    hub: HubDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    _header_key: Annotated[str | None, Security(api_key_header_scheme)],
    _query_key: Annotated[str | None, Security(api_key_query_scheme)],
) -> Actor:
    """Like ``current_actor`` but also takes ``?api_key=``. The Security parameters only
    document the schemes in OpenAPI; the key is read by ``key_from_connection``."""
    return await hub.access.authenticate(key_from_connection(conn))
