"""Media files: what ``POST /v1/media`` takes, who may read them, and what a send of a
media id must match.

A file is judged by its bytes, never by its name or declared type: the name's extension
must agree with what the bytes are, so a PDF named ``photo.jpg`` is refused rather than
sent to a customer as a broken image. Types are those WhatsApp delivers (Cloud API media
reference); anything else is refused with the type found.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import filetype
from sqlalchemy import Connection as SyncConnection

from wahub.domain.actors import Actor
from wahub.domain.errors import (
    MediaRefused,
    NotFound,
    PayloadTooLarge,
    PermanentProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.domain.ids import new_id
from wahub.media.base import MediaMissing, MediaStore, MediaStoreUnavailable
from wahub.providers.base import MEDIA_UPLOAD_KINDS, MediaUploader
from wahub.store import access as access_q
from wahub.store import conversations as conversation_q
from wahub.store import media as q
from wahub.store.database import Database

# What WhatsApp delivers, by the message type that carries it.
KINDS: dict[str, str] = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/webp": "image",
    "video/mp4": "video",
    "video/3gpp": "video",
    "audio/aac": "audio",
    "audio/amr": "audio",
    "audio/mpeg": "audio",
    "audio/mp4": "audio",
    "audio/ogg": "audio",
    "text/plain": "document",
    "application/pdf": "document",
    "application/msword": "document",
    "application/vnd.ms-excel": "document",
    "application/vnd.ms-powerpoint": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "document",
}

# Names whose standard type differs from what the bytes are detected as, yet agree.
_SAME_TYPE = {
    "audio/x-m4a": "audio/mp4",
    "audio/mp4a-latm": "audio/mp4",
    "video/3gpp2": "video/3gpp",
    "audio/x-wav": "audio/wav",
}


@dataclass(frozen=True, slots=True)
class Checked:
    """An upload that passed: its type by content, and the kind of message it can be."""

    mime_type: str
    kind: str


def check_content(data: bytes, filename: str | None, *, max_bytes: int) -> Checked:
    """What ``data`` is. Raises ValidationError (empty), PayloadTooLarge (over
    ``max_bytes``), MediaRefused (not a type WhatsApp delivers, or the name's extension
    says another type than the bytes are), each naming the reason."""
    if not data:
        raise ValidationError("file: it is empty (0 bytes)", details={"field": "file", "size": 0})
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"file: {len(data)} bytes, over the {max_bytes}-byte limit (WAHUB_MEDIA_MAX_BYTES)",
            details={"field": "file", "size": len(data), "limit": max_bytes},
        )
    guessed = filetype.guess(data)
    mime = str(guessed.mime) if guessed is not None else _text_or_none(data)
    if mime is None or mime not in KINDS:
        found = mime or "unrecognised binary data"
        raise MediaRefused(
            f"file: its content is {found}, which WhatsApp does not deliver; send one of "
            + ", ".join(sorted(KINDS)),
            details={"field": "file", "detected": mime, "allowed": sorted(KINDS)},
        )
    named = _type_of_name(filename)
    if named is not None and named != mime:
        raise MediaRefused(
            f"file: its name {filename!r} says {named} but its content is {mime}: rename it "
            "or send the file it claims to be",
            details={"field": "file", "detected": mime, "named": named},
        )
    return Checked(mime, KINDS[mime])


def _text_or_none(data: bytes) -> str | None:
    # No magic number for plain text: UTF-8 without NUL bytes is text.
    if b"\x00" in data:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


def _type_of_name(filename: str | None) -> str | None:
    if not filename or not PurePosixPath(filename).suffix:
        return None
    named, _ = mimetypes.guess_type(filename, strict=False)
    if named is None:
        return None  # an extension nobody knows cannot contradict the content
    return _SAME_TYPE.get(named, named)


MEDIA_MESSAGE_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
# Meta keeps an uploaded media id for 30 days; a day less leaves room for clock skew and
# for a message that waits in the queue after its upload.
PROVIDER_ID_VALID_SECONDS = 29 * 86400


def media_ref(content: dict[str, Any]) -> tuple[str, str] | None:
    """(message type, our media id) when ``content`` sends one of our files."""
    kind = content.get("type")
    body = content.get(kind) if isinstance(kind, str) else None
    if kind in MEDIA_MESSAGE_TYPES and isinstance(body, dict):
        media_id = body.get("id")
        if isinstance(media_id, str) and media_id.startswith("med_"):
            return str(kind), media_id
    return None


def check_sendable(
    row: dict[str, Any] | None, actor: Actor, *, message_type: str, channel_kind: str
) -> None:
    """Raises ValidationError unless ``actor`` may send the file of ``row`` as a
    ``message_type`` message on a channel of ``channel_kind``."""
    field = f"{message_type}.id"
    if row is None or not may_read(actor, row):
        raise ValidationError(
            f"{field}: no media with that id (upload it with POST /v1/media)",
            details={"field": field},
        )
    kind = KINDS.get(row["mime_type"], "document")
    if message_type not in (kind, "document"):
        raise ValidationError(
            f"{field}: {row['mime_type']} cannot be sent as {message_type}; send it as "
            f"{kind} or document",
            details={"field": field, "mime_type": row["mime_type"]},
        )
    if channel_kind not in MEDIA_UPLOAD_KINDS:
        raise ValidationError(
            f"{field}: {channel_kind} channels take media by link, not by uploaded id",
            details={"field": field, "channel_kind": channel_kind},
        )


def may_read(actor: Actor, row: dict[str, Any]) -> bool:
    """Whether ``actor`` may read (and send) the file of ``row``: its uploader, or a key
    that sees every chat (admins, viewers) of the file's channel; a key limited to
    channels not a file of no channel."""
    if row["uploader_user_id"] == actor.user_id:
        return True
    if row["channel_id"] is None:
        return actor.sees_everything and not actor.channel_scoped
    return actor.sees_everything and actor.may_use_channel(row["channel_id"])


def _agent_of_chat_sync(conn: SyncConnection, actor: Actor, row: dict[str, Any]) -> bool:
    """Whether ``actor`` is an agent of the chat a received file came in."""
    channel_id, chat_id = row["channel_id"], row["chat_id"]
    if channel_id is None or chat_id is None or not actor.may_use_channel(channel_id):
        return False
    conversation = conversation_q.get_conversation_by_chat_sync(conn, channel_id, chat_id)
    if conversation is not None and conversation["assigned_user_id"] == actor.user_id:
        return True
    return access_q.is_chat_assigned_to_user_sync(conn, actor.user_id, chat_id)


class MediaLibrary:
    """``POST /v1/media`` and ``GET /v1/media/{id}``."""

    def __init__(self, db: Database, store: MediaStore, *, max_bytes: int) -> None:
        self.db = db
        self.store = store
        self.max_bytes = max_bytes
        # One upload at a time per file and channel in this process: sends of one file to
        # many chats start together, and each would upload it otherwise. (Two processes
        # may still both upload once: two valid provider ids, no harm.)
        self._uploads: dict[tuple[str, str], asyncio.Lock] = {}

    async def upload(self, actor: Actor, data: bytes, filename: str | None) -> dict[str, Any]:
        """Check ``data`` (see ``check_content``), store it, then its row: a row never
        names bytes the store does not hold. Returns the row."""
        checked = check_content(data, filename, max_bytes=self.max_bytes)
        media_id = new_id("med")
        await self.store.put(media_id, data, checked.mime_type)
        row = {
            "id": media_id,
            "source": "upload",
            "mime_type": checked.mime_type,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "filename": PurePosixPath(filename).name[:255] if filename else None,
            "uploader_user_id": actor.user_id,
            "channel_id": None,
            "chat_id": None,
            "created_at": time.time(),
        }
        await self.db.write(lambda conn: q.insert_media_sync(conn, row))
        return row

    async def get(self, actor: Actor, media_id: str) -> dict[str, Any]:
        """The row, when ``actor`` may read the file: its uploader, or a key that sees
        every chat (admins, viewers) of the file's channel (a key limited to channels:
        not a file of no channel); a received file also to the agents of its chat (its
        conversation is assigned to them, or the chat to an employee group of theirs).
        NotFound otherwise."""
        async with self.db.read() as conn:
            row = await q.get_media(conn, media_id)
            visible = row is not None and (
                may_read(actor, row)
                or await conn.run_sync(lambda sync: _agent_of_chat_sync(sync, actor, row))
            )
        if row is None or not visible:
            raise NotFound(f"no media {media_id}")
        return row

    async def read(self, actor: Actor, media_id: str) -> tuple[dict[str, Any], bytes]:
        """The row and the bytes (see ``get``). Raises NotFound, MediaStoreUnavailable."""
        row = await self.get(actor, media_id)
        return row, await self.store.get(media_id)

    async def for_provider(
        self, content: dict[str, Any], channel_id: str, uploader: MediaUploader
    ) -> dict[str, Any]:
        """``content`` with our media id replaced by the provider's: the one stored for
        ``channel_id`` while valid, else a new upload (remembered for later sends).

        Raises RetryableProviderError (the media store is unreachable, or the upload
        may be retried) or PermanentProviderError (the file is gone, or refused).
        """
        ref = media_ref(content)
        if ref is None:
            return content
        message_type, media_id = ref
        lock = self._uploads.setdefault((media_id, channel_id), asyncio.Lock())
        async with lock:
            row, provider_id = await self._provider_id(media_id, channel_id, uploader)
        body = {**content[message_type], "id": provider_id}
        if message_type == "document" and row["filename"] and "filename" not in body:
            body["filename"] = row["filename"]
        return {**content, message_type: body}

    async def _provider_id(
        self, media_id: str, channel_id: str, uploader: MediaUploader
    ) -> tuple[dict[str, Any], str]:
        async with self.db.read() as conn:
            row = await q.get_media(conn, media_id)
        if row is None:
            raise PermanentProviderError(f"media {media_id} no longer exists")
        now = time.time()
        provider_id = row["provider_media_id"]
        if (
            provider_id is None
            or row["provider_channel_id"] != channel_id
            or (row["provider_media_expires_at"] or 0) <= now
        ):
            try:
                data = await self.store.get(media_id)
            except MediaMissing as exc:
                raise PermanentProviderError(exc.message) from exc
            except MediaStoreUnavailable as exc:
                raise RetryableProviderError(exc.message) from exc
            provider_id = await uploader.upload_media(
                data, mime_type=row["mime_type"], filename=row["filename"] or media_id
            )
            expires = now + PROVIDER_ID_VALID_SECONDS
            await self.db.write(
                lambda conn: q.set_provider_media_sync(
                    conn,
                    media_id,
                    provider_media_id=provider_id,
                    provider_channel_id=channel_id,
                    expires_at=expires,
                )
            )
        return row, str(provider_id)
