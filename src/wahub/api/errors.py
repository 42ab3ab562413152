"""The one place exceptions become HTTP responses.

Every error body is ``{"error": {"code", "message", "details"}}``:

    ValidationError 422, NotFound 404, AuthenticationFailed 401, PermissionDenied 403,
    ConflictError 409, PayloadTooLarge 413, UnsupportedMediaType 415, InvalidEncoding 400,
    StoreUnavailable and CredentialsUnreadable 503, any other WahubError 400;
    FastAPI's request validation 422 (``validation_error``, or ``invalid_json``);
    unknown route 404, wrong method 405; anything unexpected 500 ``internal_error``.

A 500 never carries the exception text (it may hold SQL, paths or secrets): the
traceback goes to the server log only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wahub.api.responses import JsonResponse
from wahub.domain.errors import (
    AuthenticationFailed,
    ConflictError,
    CredentialsUnreadable,
    InvalidEncoding,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StoreUnavailable,
    UnsupportedMediaType,
    ValidationError,
    WahubError,
)

log = logging.getLogger("wahub.api")

# Checked in order with isinstance, so a subclass added later inherits its parent's status.
_STATUS_BY_ERROR: tuple[tuple[type[WahubError], int], ...] = (
    (ValidationError, 422),
    (NotFound, 404),
    (AuthenticationFailed, 401),
    (PermissionDenied, 403),
    (ConflictError, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidEncoding, 400),
    (StoreUnavailable, 503),
    # The hub's key is wrong, not the request: the same request works once it is fixed.
    (CredentialsUnreadable, 503),
)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
_LOCATION_KINDS = frozenset({"body", "query", "path", "header", "cookie"})
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def status_for(exc: WahubError) -> int:
    """The HTTP status of a wahub error (400 for any error outside the mapped classes)."""
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:
    """An error in the one shape clients parse."""
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JsonResponse(body, status_code=status, headers=headers)


def wahub_error_response(exc: WahubError) -> JsonResponse:
    status = status_for(exc)
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    # RFC 9110: a 401 names the scheme the client should use.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, exc.details, headers=headers)


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "template", "components", 0, "type")`` -> ``template.components[0].type``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in _LOCATION_KINDS:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _reason(error: Mapping[str, Any]) -> str:
    if error.get("type") == "missing":
        return "field required"
    message = str(error.get("msg", "invalid value"))
    for prefix in _PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def request_validation_response(errors: Sequence[Mapping[str, Any]]) -> JsonResponse:
    """422 naming each field and why; the rejected input is never echoed (it may be a token)."""
    for error in errors:
        if error.get("type") == "json_invalid":
            problem = (error.get("ctx") or {}).get("error", "malformed JSON")
            position = error.get("loc", ("body", None))[-1]
            return error_response(
                422,
                "invalid_json",
                f"request body is not valid JSON: {problem}",
                {"position": position if isinstance(position, int) else None},
            )
    fields = [{"field": field_path(e.get("loc", ())), "reason": _reason(e)} for e in errors]
    message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
    return error_response(422, ValidationError.code, message, {"errors": fields})


async def _on_wahub_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WahubError)
    return wahub_error_response(exc)


async def _on_request_validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return request_validation_response(exc.errors())


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    # Starlette's routing raises these with bare reason phrases; say what was wrong.
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.url.path}"
    elif exc.status_code == 405 and exc.detail == "Method Not Allowed":
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path only; a path
        # served by several routes (GET, PATCH and DELETE /v1/accounts/{id}) has more.
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (RFC 9110's ``Allow``)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Route every known exception through the one error shape."""
    app.add_exception_handler(WahubError, _on_wahub_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(HTTPException, _on_http_exception)


class CrashGuard:
    """ASGI middleware: an unexpected exception becomes a generic 500 in the error shape.

    Sits inside Starlette's ServerErrorMiddleware, so the exception is answered and logged
    here once (with its traceback) instead of escaping to the server as plain text.
    WebSocket and lifespan traffic passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only the server can cut the connection
            response = error_response(
                500, "internal_error", "internal server error; the details are in the server log"
            )
            await response(scope, receive, send)
