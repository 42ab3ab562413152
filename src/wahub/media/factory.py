"""The media store the settings ask for."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from wahub.config import Settings
from wahub.media.base import MediaStore
from wahub.media.directory import DirectoryMediaStore
from wahub.media.s3 import S3MediaStore

MEDIA_DIR_SUFFIX = ".media"


def default_media_dir(database_url: str) -> Path:
    """Beside a SQLite database file (``wahub.db.media``), so the embedded install keeps
    its files where its data is; ``./wahub-media`` otherwise."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + MEDIA_DIR_SUFFIX)
    return Path("wahub-media")


def media_store_from_settings(settings: Settings) -> MediaStore:
    """S3 when ``WAHUB_MEDIA_S3_BUCKET`` is set, else a directory."""
    if settings.media_s3_bucket:
        secret = settings.media_s3_secret_access_key
        return S3MediaStore(
            bucket=settings.media_s3_bucket,
            endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region,
            access_key_id=settings.media_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            prefix=settings.media_s3_prefix,
        )
    return DirectoryMediaStore(settings.media_dir or default_media_dir(settings.database_url))
