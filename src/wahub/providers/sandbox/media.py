"""The Cloud API's media upload in the sandbox: ``POST /v{version}/{phone_number_id}/media``.

Like Meta, it takes a multipart form (``messaging_product=whatsapp``, ``type`` = the
file's MIME type, ``file``) and answers ``{"id": "<media id>"}``; a send may then name
that id (``{"image": {"id": ...}}``) on the same number. ``GET /_sandbox/media`` lists
what was uploaded, so tests count uploads (an id reused is no second upload).
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

    def mount(self, app: web.Application) -> None:
        app.router.add_post(MEDIA_ROUTE, self._upload)
        app.router.add_get("/_sandbox/media", self._list)

    def reset(self) -> None:
        self.uploads.clear()

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
        return web.json_response({"uploads": uploads, "count": len(uploads)})
