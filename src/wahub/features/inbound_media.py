"""Inbound media, downloaded once into the media store and linked to its message.

A received message naming a file (a Cloud API media id; a WHAPI or Periskope link) is
stored by the inbox as it came, with ``"wahub_media": {"status": "pending"}`` in its
content and a ``media_downloads`` row, both in the transaction that stores the message:
a crash loses no download, and a duplicate webhook (no new message) queues none.

``MediaDownloads`` fetches those files outside the writer: the download has a time
budget and the size cap (``WAHUB_MEDIA_MAX_BYTES``), a failure is retried with backoff,
and the message is never held back by it. What happened ends in the message's
``wahub_media``:

- ``{"status": "stored", "id": "med_...", "mime_type", "size_bytes"}``: served at
  ``GET /v1/media/{id}``;
- ``{"status": "failed", "reason": "too_large" | "refused" | "gave_up" |
  "channel_removed", "message": ...}``: the message stays, without its file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import filetype
from sqlalchemy import Connection as SyncConnection

from wahub.domain.backoff import backoff
from wahub.domain.errors import (
    MediaTooLarge,
    PermanentProviderError,
    ProviderError,
    WahubError,
)
from wahub.domain.ids import new_id
from wahub.features.media import MEDIA_MESSAGE_TYPES
from wahub.media.base import MediaStore, MediaStoreUnavailable
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.base import Downloaded, MediaDownloader
from wahub.providers.http import fetch_capped
from wahub.store import media as media_q
from wahub.store import media_downloads as q
from wahub.store.channels import get_channel
from wahub.store.database import Database

log = logging.getLogger("wahub.media")

CONTENT_KEY = "wahub_media"
PENDING: dict[str, Any] = {"status": "pending"}
BATCH = 16


@dataclass(frozen=True, slots=True)
class DownloadRef:
    """Where a received file is: ``source`` "cloudapi" (``ref`` is Meta's media id) or
    "link" (``ref`` is an http(s) URL)."""

    source: str
    ref: str
    mime_type: str | None
    filename: str | None


def download_ref(channel_kind: str, content: dict[str, Any]) -> DownloadRef | None:
    """The file a received message of a ``channel_kind`` channel names, if any."""
    if channel_kind == "periskope":
        media = content.get("media")
        if content.get("has_media") and isinstance(media, dict):
            return _link(media.get("path"), media.get("mimetype"), media.get("filename"))
        return None
    kind = content.get("type")
    body = content.get(kind) if isinstance(kind, str) and kind in MEDIA_MESSAGE_TYPES else None
    if not isinstance(body, dict):
        return None
    mime, name = _text(body.get("mime_type")), _text(body.get("filename"))
    if channel_kind == "cloudapi":
        media_id = _text(body.get("id"))
        return DownloadRef("cloudapi", media_id, mime, name) if media_id else None
    if channel_kind == "whapi":
        return _link(body.get("link"), mime, name or _text(body.get("file_name")))
    return None


def _link(url: Any, mime: Any, name: Any) -> DownloadRef | None:
    # A relative path or another scheme is nothing we can fetch: the message stays as
    # the provider sent it, without a pending download that could never finish.
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return DownloadRef("link", url, _text(mime), _text(name))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def queue_download_sync(
    conn: SyncConnection,
    *,
    message_id: str,
    channel_id: str,
    chat_id: str,
    ref: DownloadRef,
    now: float,
) -> None:
    """Queue the download of a message just stored (in its transaction)."""
    q.insert_download_sync(
        conn,
        {
            "message_id": message_id,
            "channel_id": channel_id,
            "chat_id": chat_id,
            "source": ref.source,
            "ref": ref.ref,
            "mime_type": ref.mime_type,
            "filename": ref.filename[:255] if ref.filename else None,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    max_bytes: int
    timeout_s: float
    retry_base_s: float
    retry_cap_s: float
    max_attempts: int


class MediaDownloads:
    """The loop that fetches queued downloads (every worker process runs one; a
    download is claimed by one of them for the length of its time budget)."""

    def __init__(
        self,
        db: Database,
        store: MediaStore,
        adapter_for: Callable[[dict[str, Any]], object],
        wakeup: Wakeup,
        policy: DownloadPolicy,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.adapter_for = adapter_for
        self.wakeup = wakeup
        self.policy = policy
        self.on_change = on_change or (lambda: None)
        self.downloaded = 0
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        idle = 0.05
        while not self._stopping.is_set():
            try:
                done = await self.fetch_due()
            except WahubError as exc:
                log.warning("media downloads: %s", exc.message)
                done = 0
            except Exception:
                # Never let the loop die: the rows stay queued and are tried again.
                log.exception("media downloads crashed")
                done = 0
            if done:
                idle = 0.05
            else:
                await self.wakeup.wait(idle)
                # Other processes' messages wake nobody here: polling finds them.
                idle = min(idle * 2, 1.0)

    async def fetch_due(self) -> int:
        """Claim due downloads and fetch them concurrently; returns how many were
        claimed."""
        now = time.time()
        # The lease outlasts the download's budget, so a live fetch is never taken
        # twice; a process that dies mid-fetch leaves the row due when it ends.
        lease_until = now + self.policy.timeout_s * 2 + 10
        rows = await self.db.write(
            lambda conn: q.claim_due_sync(conn, now=now, lease_until=lease_until, limit=BATCH)
        )
        if rows:
            await asyncio.gather(*(self._fetch(row) for row in rows))
            self.on_change()
        return len(rows)

    async def _fetch(self, row: dict[str, Any]) -> None:
        message_id = row["message_id"]
        try:
            channel = await self._channel(row["channel_id"])
            if channel is None:
                await self._finish(row, _failed("channel_removed", "the channel was removed"))
                return
            downloaded = await self._download(channel, row)
            media_row = await self._store(row, downloaded)
        except MediaTooLarge as exc:
            await self._finish(row, _failed("too_large", exc.message))
            return
        except PermanentProviderError as exc:
            await self._finish(row, _failed("refused", exc.message))
            return
        except (ProviderError, MediaStoreUnavailable) as exc:
            await self._retry_or_give_up(row, exc.message)
            return
        except Exception as exc:
            # A bug or a value nobody foresaw: counted like any failed try, so the
            # download ends marked with the reason instead of retrying forever.
            log.exception("media of message %s: download crashed", message_id)
            await self._retry_or_give_up(row, f"{type(exc).__name__}: {exc}")
            return
        outcome = {
            "status": "stored",
            "id": media_row["id"],
            "mime_type": media_row["mime_type"],
            "size_bytes": media_row["size_bytes"],
        }

        def link(conn: SyncConnection) -> None:
            # One transaction: the file's row and the message naming it appear together.
            media_q.insert_media_sync(conn, media_row)
            q.finish_sync(conn, message_id, outcome)

        await self.db.write(link)
        self.downloaded += 1

    async def _channel(self, channel_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            return await get_channel(conn, channel_id)

    async def _download(self, channel: dict[str, Any], row: dict[str, Any]) -> Downloaded:
        policy = self.policy
        if row["source"] == "cloudapi":
            adapter = self.adapter_for(channel)
            if not isinstance(adapter, MediaDownloader):
                raise PermanentProviderError(
                    f"channel {channel['name']!r} ({channel['kind']}) cannot download media ids"
                )
            return await adapter.download_media(
                row["ref"], max_bytes=policy.max_bytes, timeout_s=policy.timeout_s
            )
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await fetch_capped(
            self._session,
            row["ref"],
            what="media link",
            max_bytes=policy.max_bytes,
            timeout_s=policy.timeout_s,
        )

    async def _store(self, row: dict[str, Any], downloaded: Downloaded) -> dict[str, Any]:
        """Put the bytes in the store (before any row names them); the row to insert."""
        data = downloaded.data
        if not data:
            raise PermanentProviderError("the provider sent an empty file")
        guessed = filetype.guess(data)
        # The bytes decide where they can (a magic number); else what the webhook or
        # the server said.
        mime = (
            str(guessed.mime)
            if guessed is not None
            else row["mime_type"] or downloaded.mime_type or "application/octet-stream"
        )
        media_id = new_id("med")
        await self.store.put(media_id, data, mime)
        return {
            "id": media_id,
            "source": "inbound",
            "mime_type": mime[:100],
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "filename": row["filename"],
            "uploader_user_id": None,
            "channel_id": row["channel_id"],
            "chat_id": row["chat_id"],
            "created_at": time.time(),
        }

    async def _retry_or_give_up(self, row: dict[str, Any], error: str) -> None:
        attempts = int(row["attempts"]) + 1
        policy = self.policy
        if attempts >= policy.max_attempts:
            await self._finish(
                row, _failed("gave_up", f"{attempts} attempts failed; the last: {error}")
            )
            return
        at = time.time() + backoff(attempts, base=policy.retry_base_s, cap=policy.retry_cap_s)
        log.info(
            "media of message %s: attempt %d failed, next in %.1fs: %s",
            row["message_id"],
            attempts,
            at - time.time(),
            error,
        )
        await self.db.write(
            lambda conn: q.retry_later_sync(
                conn, row["message_id"], attempts=attempts, at=at, error=error
            )
        )

    async def _finish(self, row: dict[str, Any], outcome: dict[str, Any]) -> None:
        log.warning("media of message %s not stored: %s", row["message_id"], outcome["message"])
        await self.db.write(lambda conn: q.finish_sync(conn, row["message_id"], outcome))


def _failed(reason: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "message": message}
