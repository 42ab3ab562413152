"""Named queries for accounts (the CRM's artists, clients, customers) and their groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, func, select, update

from wahub.store.database import in_one_hop
from wahub.store.schema import account_chats, accounts, chats, group_members
from wahub.store.sql import insert_ignore


def insert_account_sync(conn: SyncConnection, row: dict[str, Any]) -> None:
    conn.execute(accounts.insert(), row)


def get_account_sync(conn: SyncConnection, account_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
    return None if row is None else dict(row._mapping)


def list_accounts_sync(
    conn: SyncConnection, *, limit: int, offset: int = 0
) -> list[dict[str, Any]]:
    stmt = select(accounts).order_by(accounts.c.name, accounts.c.id).limit(limit).offset(offset)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_accounts_sync(conn: SyncConnection) -> int:
    return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())


def update_account_sync(conn: SyncConnection, account_id: str, values: dict[str, Any]) -> bool:
    result = conn.execute(update(accounts).where(accounts.c.id == account_id).values(values))
    return bool(result.rowcount)


def delete_account_sync(conn: SyncConnection, account_id: str) -> bool:
    """Delete an account and its links. Its groups and their members stay: other
    accounts may share them, and the directory knows them anyway."""
    conn.execute(delete(account_chats).where(account_chats.c.account_id == account_id))
    result = conn.execute(delete(accounts).where(accounts.c.id == account_id))
    return bool(result.rowcount)


def ensure_group_chats_sync(
    conn: SyncConnection, chat_ids: Sequence[str], *, channel_id: str | None, now: float
) -> None:
    """Create the chat rows of groups we have not seen yet, waiting for their first sync."""
    if not chat_ids:
        return
    conn.execute(
        insert_ignore(conn, chats),
        [
            {
                "chat_id": chat_id,
                "kind": "group",
                "channel_id": channel_id,
                "sync_status": "pending",
                "created_at": now,
            }
            for chat_id in chat_ids
        ],
    )


def set_account_chats_sync(
    conn: SyncConnection, account_id: str, chat_ids: Sequence[str]
) -> list[str]:
    """Make ``chat_ids`` the account's groups; return the ones newly linked."""
    current = {
        r.chat_id
        for r in conn.execute(
            select(account_chats.c.chat_id).where(account_chats.c.account_id == account_id)
        )
    }
    wanted = list(dict.fromkeys(chat_ids))
    gone = current - set(wanted)
    added = [c for c in wanted if c not in current]
    if gone:
        conn.execute(
            delete(account_chats).where(
                account_chats.c.account_id == account_id, account_chats.c.chat_id.in_(gone)
            )
        )
    if added:
        conn.execute(
            account_chats.insert(), [{"account_id": account_id, "chat_id": c} for c in added]
        )
    return added


def account_groups_sync(
    conn: SyncConnection, account_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each account's groups with their sync state and cached member count."""
    if not account_ids:
        return {}
    counts = (
        select(group_members.c.chat_id, func.count().label("members"))
        .group_by(group_members.c.chat_id)
        .subquery()
    )
    stmt = (
        select(
            account_chats.c.account_id,
            chats.c.chat_id,
            chats.c.name,
            chats.c.channel_id,
            chats.c.is_active,
            chats.c.readonly,
            chats.c.sync_status,
            chats.c.sync_error,
            chats.c.last_synced_at,
            func.coalesce(counts.c.members, 0).label("member_count"),
        )
        .select_from(
            account_chats.join(chats, chats.c.chat_id == account_chats.c.chat_id).outerjoin(
                counts, counts.c.chat_id == chats.c.chat_id
            )
        )
        .where(account_chats.c.account_id.in_(account_ids))
        .order_by(account_chats.c.account_id, chats.c.chat_id)
    )
    found: dict[str, list[dict[str, Any]]] = {a: [] for a in account_ids}
    for row in conn.execute(stmt):
        group = dict(row._mapping)
        found[group.pop("account_id")].append(group)
    return found


def accounts_chats_sync(
    conn: SyncConnection, account_id: str | None = None
) -> list[tuple[dict[str, Any], list[str]]]:
    """Accounts (one, or all with a group) and their group ids, by name."""
    stmt = (
        select(accounts.c.id, accounts.c.name, account_chats.c.chat_id)
        .join(account_chats, account_chats.c.account_id == accounts.c.id)
        .order_by(accounts.c.name, accounts.c.id, account_chats.c.chat_id)
    )
    if account_id is not None:
        stmt = stmt.where(accounts.c.id == account_id)
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for row in conn.execute(stmt):
        entry = found.setdefault(row.id, ({"id": row.id, "name": row.name}, []))
        entry[1].append(row.chat_id)
    return list(found.values())


insert_account = in_one_hop(insert_account_sync)
get_account = in_one_hop(get_account_sync)
list_accounts = in_one_hop(list_accounts_sync)
count_accounts = in_one_hop(count_accounts_sync)
update_account = in_one_hop(update_account_sync)
delete_account = in_one_hop(delete_account_sync)
ensure_group_chats = in_one_hop(ensure_group_chats_sync)
set_account_chats = in_one_hop(set_account_chats_sync)
account_groups = in_one_hop(account_groups_sync)
accounts_chats = in_one_hop(accounts_chats_sync)
