"""The media store port: put, get and delete bytes under a key."""

from __future__ import annotations

from typing import Protocol

from wahub.domain.errors import NotFound, StoreUnavailable


class MediaStoreUnavailable(StoreUnavailable):
    """The media store cannot be reached or refused the operation (503)."""


class MediaMissing(NotFound):
    """No file under that key (its row outlived it: a store emptied by hand)."""


class MediaStore(Protocol):
    """Bytes by key. Keys are ours (``med_...``): no path separators, no user input.

    ``put`` returns only once the bytes are durable (a later ``get`` from any process
    that shares the store reads them); putting a key again replaces its bytes.
    """

    kind: str  # "directory" or "s3", shown by /healthz-like reports and logs

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data``. Raises MediaStoreUnavailable."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``. Raises MediaMissing, MediaStoreUnavailable."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` (absent already: nothing happens). Raises MediaStoreUnavailable."""
        ...
