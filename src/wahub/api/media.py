"""``POST /v1/media`` (a multipart upload) and ``GET /v1/media/{id}``.

The upload is judged by its bytes (``wahub.features.media.check_content``): an empty
file is a ``422``, one over ``WAHUB_MEDIA_MAX_BYTES`` a ``413``, a type WhatsApp does not
deliver or a name whose extension lies about the content a ``422`` (``media_refused``).
The id it returns goes in any send instead of a ``link``: ``{"image": {"id": "med_..."}}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from wahub.api.auth import ActorDep, HubDep, WriterDep
from wahub.api.bodies import form_parts, read_limited_body, require_media_type
from wahub.api.params import IdPath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import iso
from wahub.domain.errors import ValidationError

router = APIRouter(prefix="/v1/media", tags=["media"])

# Room for the multipart framing around the file: boundaries and part headers.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


def media_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "mime_type": row["mime_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "filename": row["filename"],
        "channel_id": row["channel_id"],
        "chat_id": row["chat_id"],
        "created_at": iso(row["created_at"]),
    }


@router.post("", status_code=201, summary="Upload a file to send", openapi_extra=_UPLOAD_BODY)
async def upload_media(request: Request, hub: HubDep, actor: WriterDep) -> Response:
    """A ``file`` field; its type is read from its bytes. Returns the id to send."""
    require_media_type(request, ("multipart/form-data",))
    limit = hub.settings.media_max_bytes
    body = await read_limited_body(
        request, limit + MULTIPART_OVERHEAD_BYTES, setting="WAHUB_MEDIA_MAX_BYTES"
    )
    files = [
        p for p in form_parts(request.headers.get("content-type", ""), body) if p.name == "file"
    ]
    if len(files) != 1:
        raise ValidationError(
            "multipart: exactly one 'file' field is required", details={"field": "file"}
        )
    row = await hub.media.upload(actor, files[0].data, files[0].filename)
    return JsonResponse(media_out(row), status_code=201)


@router.get(
    "/{media_id}",
    summary="Download a file (to its uploader and keys that see its chat)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_media(media_id: IdPath, hub: HubDep, actor: ActorDep) -> Response:
    row, data = await hub.media.read(actor, media_id)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    # Always an attachment: a browser saves it instead of rendering what another user
    # uploaded or a stranger sent (a received file's type is the sender's word when its
    # bytes have no magic number, text/html included).
    headers["Content-Disposition"] = "attachment"
    if row["filename"]:
        safe = row["filename"].replace('"', "").replace("\\", "")
        headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return Response(data, media_type=row["mime_type"], headers=headers)
