"""Reading request bodies: a size cap checked before and while reading, and the checks
every JSON route shares, made before FastAPI parses anything.

``read_limited_body``  the raw body, ``413`` past a limit (webhook receivers, campaign
                       uploads, and every JSON route through ``JsonBodyRoute``)
``form_parts``         the parts of a ``multipart/form-data`` body (campaign and
                       media uploads)
``JsonBodyRoute``      the route class of routers whose routes take a JSON body:
                       ``415`` for another content type, ``413`` past
                       ``WAHUB_MAX_REQUEST_BYTES``, ``400`` for bytes that are not UTF-8

Without these, FastAPI reads any body whole before looking at it (a 60 MB body was read
in full to be refused), parses a ``text/plain`` body as a string and answers that the
body "should be a valid dictionary", and turns bytes that are not UTF-8 into a bare
"There was an error parsing the body".
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from wahub.domain.errors import (
    InvalidEncoding,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationError,
)

JSON = "application/json"


async def read_limited_body(request: Request, limit: int, *, setting: str) -> bytes:
    """The raw body, refusing more than ``limit`` bytes with PayloadTooLarge (whose
    message names ``setting``, the variable that raises the limit).

    Content-Length is checked before anything is read; the stream is counted too, because
    a chunked request has no Content-Length and a lying client can send more than it said.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise ValidationError(
                "Content-Length is not a number", details={"field": "Content-Length"}
            )
        if int(declared) > limit:
            raise _too_large(limit, setting)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, setting)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class FormPart:
    """One field of a multipart/form-data body (``filename`` for a file field)."""

    name: str | None
    filename: str | None
    data: bytes


def form_parts(content_type: str, body: bytes) -> list[FormPart]:
    """The parts of a multipart/form-data body, in order: the standard library's MIME
    parser, no form-parsing dependency. Parts without a decodable payload are left out."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: list[FormPart] = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        parts.append(
            FormPart(
                name if isinstance(name, str) else None,
                filename if isinstance(filename, str) else None,
                payload,
            )
        )
    return parts


def _too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body larger than {limit} bytes (the limit is {setting})",
        details={"max_bytes": limit, "setting": setting},
    )


def media_type(request: Request) -> str | None:
    """The Content-Type without its parameters, lower case; None when there is none."""
    header = request.headers.get("content-type")
    if header is None:
        return None
    return header.partition(";")[0].strip().lower() or None


def is_json(media: str | None) -> bool:
    """``application/json`` or a JSON-based type such as ``application/merge-patch+json``."""
    return media == JSON or (
        media is not None and media.startswith("application/") and media.endswith("+json")
    )


def require_media_type(request: Request, accepted: Sequence[str]) -> str | None:
    """The request's media type when its body may be read: one of ``accepted`` (where
    ``application/json`` stands for every JSON type), or None when the request declares
    no body. Raises UnsupportedMediaType before a byte of the body is read."""
    media = media_type(request)
    if JSON in accepted and is_json(media):
        return media
    if media is not None and media in accepted:
        return media
    if not _declares_body(request):
        return media
    given = f"{media} is not accepted here" if media else "missing"
    raise UnsupportedMediaType(
        f"Content-Type: {given}; send the body as {' or '.join(accepted)}",
        details={"field": "Content-Type", "accepted": list(accepted)},
    )


def _declares_body(request: Request) -> bool:
    # HTTP/1.1: a request has a body exactly when it says how it is framed.
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def require_utf8(raw: bytes, field: str) -> str:
    """``raw`` decoded, or InvalidEncoding naming ``field`` and the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEncoding(
            f"{field}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "send UTF-8 text",
            details={"field": field, "offset": exc.start},
        ) from None


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is checked before FastAPI reads it: its content type (415),
    its size (413 from Content-Length, or once the bytes read pass the limit, so an
    oversize body is never read whole) and its encoding (400). Routes without a body
    parameter, or with a form, are left as FastAPI builds them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handler

        async def checked(request: Request) -> Response:
            require_media_type(request, (JSON,))
            limit: int = request.app.state.settings.max_request_bytes
            body = await read_limited_body(request, limit, setting="WAHUB_MAX_REQUEST_BYTES")
            require_utf8(body, "body")
            return await handler(_replaying(request, body))

        return checked


def _replaying(request: Request, body: bytes) -> Request:
    """The same request whose stream yields ``body`` (already read) once; later reads
    go to the server (a disconnect)."""
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)
