"""The Cloud API's media upload in the sandbox: ``POST /v{version}/{phone_number_id}/media``.

Like Meta, it takes a multipart form (``messaging_product=whatsapp``, ``type`` = the
file's MIME type, ``file``) and answers ``{"id": "<media id>"}``; a send may then name
that id (``{"image": {"id": ...}}``) on the same number. ``GET /_sandbox/media`` lists
what was uploaded, so tests count uploads (an id reused is no second upload).

Received media, as Meta serves it: the files of simulated inbound messages are
registered here (``register_received``); ``GET /v{version}/{media_id}`` answers their
short-lived URL (``/_sandbox/media/files/{id}``, fetched with the token), and
``/_sandbox/media/links/{id}`` serves the same file without a token (WHAPI's and
Periskope's public links). ``POST /_sandbox/media/fail-downloads`` ``{"count": n}``
makes the next ``n`` downloads answer 500; ``GET /_sandbox/media`` counts downloads.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.shapes import AUTH_FAILED, MetaError, invalid_parameter

MEDIA_ROUTE = r"/v{version:\d+\.\d+}/{phone_number_id:[^/]+}/media"
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


@dataclass(frozen=True, slots=True)
class Received:
    media_id: str
    mime_type: str
    data: bytes


# Magic numbers first, so the hub's type detection sees what a real file would show.
_HEADS = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "application/pdf": b"%PDF-1.4\n",
}
RECEIVED_SIZE = 4096


def received_bytes(mime_type: str, media_id: str) -> bytes:
    """A file of ``RECEIVED_SIZE`` bytes of that type, distinct per media id."""
    head = _HEADS.get(mime_type, b"")
    body = hashlib.sha256(media_id.encode()).digest() * (RECEIVED_SIZE // 32)
    return (head + body)[:RECEIVED_SIZE]


@dataclass(frozen=True, slots=True)
class Upload:
    media_id: str
    phone_number_id: str
    mime_type: str
    filename: str | None
    size: int
    sha256: str


class MediaSandbox:
    """Uploads by id. ``refuse`` answers an error as the send route does."""

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        refuse: Callable[[MetaError], web.Response],
    ) -> None:
        self._config = config
        self._refuse = refuse
        self.uploads: dict[str, Upload] = {}
        self.received: dict[str, Received] = {}
        self.downloads = 0
        self.downloads_failed = 0
        self._fail_next = 0

    def mount(self, app: web.Application) -> None:
        app.router.add_post(MEDIA_ROUTE, self._upload)
        app.router.add_get("/_sandbox/media", self._list)
        app.router.add_get("/_sandbox/media/files/{media_id}", self._file)
        app.router.add_get("/_sandbox/media/links/{media_id}", self._link)
        app.router.add_post("/_sandbox/media/fail-downloads", self._fail_downloads)

    def reset(self) -> None:
        self.uploads.clear()
        self.received.clear()
        self.downloads = self.downloads_failed = self._fail_next = 0

    def register_received(self, mime_type: str) -> str:
        """A new received file of ``mime_type``; its media id."""
        media_id = secrets.token_hex(8)
        self.received[media_id] = Received(media_id, mime_type, received_bytes(mime_type, media_id))
        return media_id

    def describe(self, request: web.Request, media_id: str) -> web.Response | None:
        """``GET /{media_id}`` of a received file as Meta answers it (None: no such
        file, the route is the phone number's)."""
        received = self.received.get(media_id)
        if received is None:
            return None
        token = self._config().access_token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return self._refuse(AUTH_FAILED)
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{request.url.origin()}/_sandbox/media/files/{media_id}",
                "mime_type": received.mime_type,
                "sha256": hashlib.sha256(received.data).hexdigest(),
                "file_size": len(received.data),
                "id": media_id,
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        token = self._config().access_token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return self._refuse(AUTH_FAILED)
        return self._serve(request.match_info["media_id"])

    async def _link(self, request: web.Request) -> web.Response:
        return self._serve(request.match_info["media_id"])

    def _serve(self, media_id: str) -> web.Response:
        received = self.received.get(media_id)
        if received is None:
            return web.Response(status=404, text="no such media")
        if self._fail_next > 0:
            self._fail_next -= 1
            self.downloads_failed += 1
            return web.Response(status=500, text="sandbox: download failure asked for")
        self.downloads += 1
        return web.Response(body=received.data, content_type=received.mime_type)

    async def _fail_downloads(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            count = body["count"] if isinstance(body, dict) else None
        except ValueError:
            count = None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return web.json_response(
                {"error": 'send {"count": <non-negative integer>}'}, status=400
            )
        self._fail_next = count
        return web.json_response({"fail_next": count})

    def unknown_media(self, phone_number_id: str, body: Any) -> str | None:
        """The id a send names that no upload to ``phone_number_id`` returned, if any."""
        if not isinstance(body, dict):
            return None
        kind = body.get("type")
        content = body.get(kind) if kind in MEDIA_TYPES else None
        media_id = content.get("id") if isinstance(content, dict) else None
        if not isinstance(media_id, str):
            return None
        upload = self.uploads.get(media_id)
        if upload is None or upload.phone_number_id != phone_number_id:
            return media_id
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        token = self._config().access_token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return self._refuse(AUTH_FAILED)
        if not request.content_type.startswith("multipart/"):
            return self._refuse(invalid_parameter("The upload must be multipart/form-data"))
        form = await request.post()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp":
            return self._refuse(invalid_parameter("messaging_product must be 'whatsapp'"))
        mime_type = form.get("type")
        if not isinstance(mime_type, str) or not mime_type:
            return self._refuse(invalid_parameter("Parameter 'type' is required"))
        if not isinstance(upload, web.FileField):
            return self._refuse(invalid_parameter("Parameter 'file' is required"))
        data = upload.file.read()
        media_id = secrets.token_hex(8)
        self.uploads[media_id] = Upload(
            media_id,
            request.match_info["phone_number_id"],
            mime_type,
            upload.filename,
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        return web.json_response({"id": media_id})

    async def _list(self, _request: web.Request) -> web.Response:
        uploads = [
            {
                "id": u.media_id,
                "phone_number_id": u.phone_number_id,
                "mime_type": u.mime_type,
                "filename": u.filename,
                "size": u.size,
                "sha256": u.sha256,
            }
            for u in self.uploads.values()
        ]
        return web.json_response(
            {
                "uploads": uploads,
                "count": len(uploads),
                "received": len(self.received),
                "downloads": self.downloads,
                "downloads_failed": self.downloads_failed,
            }
        )
