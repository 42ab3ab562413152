"""Named queries for users, employee groups, group assignments and API keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from wahub.store.database import Connection
from wahub.store.schema import (
    api_keys,
    employee_group_members,
    employee_groups,
    group_assignments,
    users,
)
from wahub.store.sql import insert_ignore


async def get_user_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    return None if row is None else dict(row._mapping)


async def insert_user(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(users.insert(), row)


async def insert_api_key(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(api_keys.insert(), row)


async def find_active_key(conn: Connection, key_hash: str) -> dict[str, Any] | None:
    stmt = select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    row = (await conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


async def list_api_keys(conn: Connection) -> list[dict[str, Any]]:
    stmt = select(
        api_keys.c.id,
        api_keys.c.user_id,
        api_keys.c.role,
        api_keys.c.prefix,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
        users.c.name.label("user_name"),
    ).join(users, users.c.id == api_keys.c.user_id)
    return [dict(r._mapping) for r in await conn.execute(stmt.order_by(api_keys.c.created_at))]


async def revoke_api_key(conn: Connection, key_id: str, now: float) -> bool:
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)


async def get_employee_group_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    stmt = select(employee_groups).where(employee_groups.c.name == name)
    row = (await conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


async def insert_employee_group(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(employee_groups.insert(), row)


async def add_group_member(conn: Connection, group_id: str, user_id: str) -> None:
    await conn.execute(
        insert_ignore(conn, employee_group_members),
        {"employee_group_id": group_id, "user_id": user_id},
    )


async def assign_chat(conn: Connection, group_id: str, chat_id: str, now: float) -> None:
    await conn.execute(
        insert_ignore(conn, group_assignments),
        {"employee_group_id": group_id, "chat_id": chat_id, "created_at": now},
    )


async def unassign_chat(conn: Connection, group_id: str, chat_id: str) -> bool:
    result = await conn.execute(
        group_assignments.delete().where(
            group_assignments.c.employee_group_id == group_id,
            group_assignments.c.chat_id == chat_id,
        )
    )
    return bool(result.rowcount)


async def assigned_chat_ids(conn: Connection, user_id: str) -> list[str]:
    """Every chat assigned to any employee group the user belongs to."""
    stmt = (
        select(group_assignments.c.chat_id)
        .join(
            employee_group_members,
            employee_group_members.c.employee_group_id == group_assignments.c.employee_group_id,
        )
        .where(employee_group_members.c.user_id == user_id)
        .distinct()
    )
    return [r.chat_id for r in await conn.execute(stmt)]


async def is_chat_assigned_to_user(conn: Connection, user_id: str, chat_id: str) -> bool:
    stmt = (
        select(group_assignments.c.chat_id)
        .join(
            employee_group_members,
            employee_group_members.c.employee_group_id == group_assignments.c.employee_group_id,
        )
        .where(employee_group_members.c.user_id == user_id, group_assignments.c.chat_id == chat_id)
        .limit(1)
    )
    return (await conn.execute(stmt)).first() is not None


async def get_user(conn: Connection, user_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return None if row is None else dict(row._mapping)
