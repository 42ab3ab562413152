"""Named queries for the ``media`` table (the files themselves are in ``wahub.media``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select, update

from wahub.store.database import in_one_hop
from wahub.store.schema import media


def insert_media_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(media.insert(), row)


def get_media_sync(conn: SyncConnection, media_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(media).where(media.c.id == media_id)).first()
    return None if row is None else dict(row._mapping)


def set_provider_media_sync(
    conn: SyncConnection,
    media_id: str,
    *,
    provider_media_id: str,
    provider_channel_id: str,
    expires_at: float,
) -> None:
    """Remember the provider's id of the file (on that channel) until ``expires_at``."""
    conn.execute(
        update(media)
        .where(media.c.id == media_id)
        .values(
            provider_media_id=provider_media_id,
            provider_channel_id=provider_channel_id,
            provider_media_expires_at=expires_at,
        )
    )


# The async faces: each runs its whole body in one hop.
get_media = in_one_hop(get_media_sync)
