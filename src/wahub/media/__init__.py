"""The media store: where uploaded and received files live, outside the database.

A port (``MediaStore``) with two implementations: a directory (the embedded default,
beside the SQLite database) and S3-compatible object storage (for scale-out, where
every ``serve`` and ``worker`` host must read what any of them stored). The database
keeps each file's metadata (the ``media`` table) and the key it is stored under.
"""

from __future__ import annotations

from wahub.media.base import MediaStore, MediaStoreUnavailable
from wahub.media.directory import DirectoryMediaStore
from wahub.media.factory import media_store_from_settings
from wahub.media.s3 import S3MediaStore

__all__ = [
    "DirectoryMediaStore",
    "MediaStore",
    "MediaStoreUnavailable",
    "S3MediaStore",
    "media_store_from_settings",
]
