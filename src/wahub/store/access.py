"""Named queries for users, employee groups, group assignments and API keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Select, select, update

from wahub.domain.ids import new_id
from wahub.store.database import in_one_hop
from wahub.store.schema import (
    api_keys,
    employee_group_members,
    employee_groups,
    group_assignments,
    users,
)
from wahub.store.sql import insert_ignore


def get_user_by_name_sync(conn: SyncConnection, name: str) -> dict[str, Any] | None:
    row = (conn.execute(select(users).where(users.c.name == name))).first()
    return None if row is None else dict(row._mapping)


def insert_user_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(users.insert(), row)


def insert_api_key_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(api_keys.insert(), row)


def find_active_key_sync(conn: SyncConnection, key_hash: str) -> dict[str, Any] | None:
    stmt = select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def list_api_keys_sync(conn: SyncConnection) -> list[dict[str, Any]]:
    stmt = select(
        api_keys.c.id,
        api_keys.c.user_id,
        api_keys.c.role,
        api_keys.c.prefix,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
        users.c.name.label("user_name"),
    ).join(users, users.c.id == api_keys.c.user_id)
    return [dict(r._mapping) for r in conn.execute(stmt.order_by(api_keys.c.created_at))]


def find_active_key_by_id_sync(conn: SyncConnection, key_id: str) -> dict[str, Any] | None:
    stmt = select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def set_user_password_sync(
    conn: SyncConnection, user_id: str, password_hash: str | None, role: str | None
) -> None:
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, password_role=role)
    )


def has_active_admin_key_sync(conn: SyncConnection) -> bool:
    stmt = select(api_keys.c.id).where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
    return conn.execute(stmt.limit(1)).first() is not None


def key_hash_known_sync(conn: SyncConnection, key_hash: str) -> bool:
    """Whether a key with this hash was ever stored, revoked or not."""
    stmt = select(api_keys.c.id).where(api_keys.c.key_hash == key_hash)
    return conn.execute(stmt).first() is not None


def revoke_api_key_sync(conn: SyncConnection, key_id: str, now: float) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)


def get_employee_group_by_name_sync(conn: SyncConnection, name: str) -> dict[str, Any] | None:
    stmt = select(employee_groups).where(employee_groups.c.name == name)
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def insert_employee_group_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(employee_groups.insert(), row)


def add_group_member_sync(conn: SyncConnection, group_id: str, user_id: str) -> None:
    conn.execute(
        insert_ignore(conn, employee_group_members),
        {"employee_group_id": group_id, "user_id": user_id},
    )


def assign_chat_sync(conn: SyncConnection, group_id: str, chat_id: str, now: float) -> None:
    conn.execute(
        insert_ignore(conn, group_assignments),
        {"employee_group_id": group_id, "chat_id": chat_id, "created_at": now},
    )


def assigned_chats(user_id: str) -> Select[tuple[str]]:
    """The chats assigned to any employee group the user belongs to, as a statement other
    queries embed (``chat_id IN (...)``), so every reader applies the same rule."""
    return (
        select(group_assignments.c.chat_id)
        .join(
            employee_group_members,
            employee_group_members.c.employee_group_id == group_assignments.c.employee_group_id,
        )
        .where(employee_group_members.c.user_id == user_id)
    )


def assigned_chat_ids_sync(conn: SyncConnection, user_id: str) -> list[str]:
    """Every chat assigned to any employee group the user belongs to."""
    return [r.chat_id for r in conn.execute(assigned_chats(user_id).distinct())]


def is_chat_assigned_to_user_sync(conn: SyncConnection, user_id: str, chat_id: str) -> bool:
    stmt = (
        select(group_assignments.c.chat_id)
        .join(
            employee_group_members,
            employee_group_members.c.employee_group_id == group_assignments.c.employee_group_id,
        )
        .where(employee_group_members.c.user_id == user_id, group_assignments.c.chat_id == chat_id)
        .limit(1)
    )
    return (conn.execute(stmt)).first() is not None


def get_user_sync(conn: SyncConnection, user_id: str) -> dict[str, Any] | None:
    row = (conn.execute(select(users).where(users.c.id == user_id))).first()
    return None if row is None else dict(row._mapping)


def ensure_user_sync(conn: SyncConnection, name: str, now: float) -> dict[str, Any]:
    """The user called ``name``, created if new."""
    user = get_user_by_name_sync(conn, name)
    if user is None:
        user = {"id": new_id("usr"), "name": name, "created_at": now}
        insert_user_sync(conn, user)
    return user


def ensure_employee_group_sync(conn: SyncConnection, name: str, now: float) -> dict[str, Any]:
    """The employee group called ``name``, created if new."""
    group = get_employee_group_by_name_sync(conn, name)
    if group is None:
        group = {"id": new_id("grp"), "name": name, "created_at": now}
        insert_employee_group_sync(conn, group)
    return group


# The async faces: each runs its whole body in one hop.
get_user_by_name = in_one_hop(get_user_by_name_sync)
insert_user = in_one_hop(insert_user_sync)
insert_api_key = in_one_hop(insert_api_key_sync)
find_active_key = in_one_hop(find_active_key_sync)
find_active_key_by_id = in_one_hop(find_active_key_by_id_sync)
set_user_password = in_one_hop(set_user_password_sync)
list_api_keys = in_one_hop(list_api_keys_sync)
revoke_api_key = in_one_hop(revoke_api_key_sync)
get_employee_group_by_name = in_one_hop(get_employee_group_by_name_sync)
insert_employee_group = in_one_hop(insert_employee_group_sync)
add_group_member = in_one_hop(add_group_member_sync)
assign_chat = in_one_hop(assign_chat_sync)
assigned_chat_ids = in_one_hop(assigned_chat_ids_sync)
is_chat_assigned_to_user = in_one_hop(is_chat_assigned_to_user_sync)
get_user = in_one_hop(get_user_sync)
ensure_user = in_one_hop(ensure_user_sync)
ensure_employee_group = in_one_hop(ensure_employee_group_sync)
