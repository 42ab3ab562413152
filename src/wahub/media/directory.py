"""The media store as a directory: the embedded default, beside the SQLite database."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from wahub.media.base import MediaMissing, MediaStoreUnavailable


class DirectoryMediaStore:
    """Files under ``root``, fanned out by the key's last two characters (a key's
    random tail) so no directory grows to millions of entries."""

    kind = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"not a media key: {key!r}")
        return self.root / key[-2:] / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _put(self, key: str, data: bytes) -> None:
        path = self.path_of(key)
        # Written under a private name, flushed to disk, then renamed into place: a
        # crash leaves either no file or the whole file, never half of one.
        partial = path.with_name(f".{key}.{secrets.token_hex(4)}.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise MediaStoreUnavailable(
                f"media directory {self.root}: cannot write {key}: {exc.strerror or exc}"
            ) from exc

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError:
            raise MediaMissing(f"media {key} is not in the media directory {self.root}") from None
        except OSError as exc:
            raise MediaStoreUnavailable(
                f"media directory {self.root}: cannot read {key}: {exc.strerror or exc}"
            ) from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path_of(key).unlink, True)
        except OSError as exc:
            raise MediaStoreUnavailable(
                f"media directory {self.root}: cannot delete {key}: {exc.strerror or exc}"
            ) from exc
