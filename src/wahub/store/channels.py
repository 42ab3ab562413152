"""Named queries for channels, their templates and their ownership leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update

from wahub.store.database import Connection
from wahub.store.schema import channels, chats, templates
from wahub.store.sql import insert_ignore


async def insert_channel(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(channels.insert(), row)


async def get_channel(conn: Connection, channel_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(channels).where(channels.c.id == channel_id))).first()
    return None if row is None else dict(row._mapping)


async def list_channels(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in await conn.execute(select(channels).order_by(channels.c.id))]


async def acquire_channel_leases(
    conn: Connection, *, owner: str, now: float, lease_seconds: float
) -> list[str]:
    """Take or renew the lease of every channel that is free, expired or already ours.

    A channel is paced by exactly one worker at a time; a worker that dies stops renewing
    and another picks its channels up once the lease runs out.
    """
    free = or_(
        channels.c.lease_owner.is_(None),
        channels.c.lease_owner == owner,
        channels.c.lease_until < now,
    )
    rows = await conn.execute(
        update(channels)
        .where(free)
        .values(lease_owner=owner, lease_until=now + lease_seconds, heartbeat_at=now)
        .returning(channels.c.id)
    )
    return sorted(r.id for r in rows)


async def release_channel_leases(conn: Connection, *, owner: str) -> None:
    await conn.execute(
        update(channels)
        .where(channels.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def upsert_template(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(
        templates.delete().where(
            and_(
                templates.c.channel_id == row["channel_id"],
                templates.c.name == row["name"],
                templates.c.language == row["language"],
            )
        )
    )
    await conn.execute(templates.insert(), row)


async def get_template(
    conn: Connection, channel_id: str, name: str, language: str
) -> dict[str, Any] | None:
    stmt = select(templates).where(
        templates.c.channel_id == channel_id,
        templates.c.name == name,
        templates.c.language == language,
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


async def list_templates(conn: Connection, channel_id: str) -> list[dict[str, Any]]:
    stmt = select(templates).where(templates.c.channel_id == channel_id)
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def get_chat(conn: Connection, chat_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(chats).where(chats.c.chat_id == chat_id))).first()
    return None if row is None else dict(row._mapping)


async def ensure_chat(conn: Connection, row: dict[str, Any]) -> None:
    """Create the chat row on first use; an existing row is left as it is."""
    await conn.execute(insert_ignore(conn, chats), row)


async def upsert_group_chat(conn: Connection, row: dict[str, Any]) -> None:
    """Register or rename a group (admins may register groups before any provider sync)."""
    existing = await get_chat(conn, row["chat_id"])
    if existing is None:
        await conn.execute(chats.insert(), row)
    else:
        # Re-registering changes only what was given: a missing name or channel keeps
        # the one stored.
        values = {
            k: v for k, v in row.items() if k not in ("chat_id", "created_at") and v is not None
        }
        await conn.execute(update(chats).where(chats.c.chat_id == row["chat_id"]).values(values))


async def list_chats(conn: Connection, chat_ids: Sequence[str] | None = None) -> list[Any]:
    stmt = select(chats).order_by(chats.c.chat_id)
    if chat_ids is not None:
        stmt = stmt.where(chats.c.chat_id.in_(chat_ids))
    return [dict(r._mapping) for r in await conn.execute(stmt)]
