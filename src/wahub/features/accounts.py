"""Accounts: the CRM's artists, clients or customers, each linked to one or more groups.

Linking a group to an account (on create, or by changing its groups) starts a sync of
that group in the background: the caller gets its answer at once, and the group shows
``sync_status: pending`` until the sync has run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import IntegrityError

from wahub.domain.errors import ConflictError, NotFound, ValidationError
from wahub.domain.ids import MAX_SQL_INT, new_id
from wahub.domain.phones import group_chat_id
from wahub.features.groups import GroupSync
from wahub.store import accounts as q
from wahub.store import channels as channels_q
from wahub.store.database import Database

MAX_PAGE = 500
_UNSET: Any = object()


class Accounts:
    def __init__(self, db: Database, sync: GroupSync) -> None:
        self.db = db
        self.sync = sync

    async def create(
        self,
        *,
        name: str,
        external_ref: str | None = None,
        group_ids: Sequence[str] = (),
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an account linked to ``group_ids`` (with or without ``@g.us``; groups
        not registered yet are registered, on ``channel_id`` when given).

        Raises ValidationError (bad name, group id or channel), ConflictError (the
        ``external_ref`` belongs to another account).
        """
        clean_name = _name(name)
        chat_ids = _chat_ids(group_ids)
        account_id = new_id("acc")
        now = time.time()

        def write(conn: SyncConnection) -> list[str]:
            _check_channel(conn, channel_id)
            q.insert_account_sync(
                conn,
                {
                    "id": account_id,
                    "name": clean_name,
                    "external_ref": external_ref,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            q.ensure_group_chats_sync(conn, chat_ids, channel_id=channel_id, now=now)
            return q.set_account_chats_sync(conn, account_id, chat_ids)

        added = await self._write(write, external_ref)
        self.sync.sync_in_background(added)
        return await self.get(account_id)

    async def update(
        self,
        account_id: str,
        *,
        name: str = _UNSET,
        external_ref: str | None = _UNSET,
        group_ids: Sequence[str] | None = None,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """Change what is given; ``group_ids`` replaces the account's groups, and newly
        linked groups are synced in the background. Raises NotFound, ValidationError,
        ConflictError."""
        values: dict[str, Any] = {}
        if name is not _UNSET:
            values["name"] = _name(name)
        if external_ref is not _UNSET:
            values["external_ref"] = external_ref
        chat_ids = _chat_ids(group_ids) if group_ids is not None else None
        now = time.time()

        def write(conn: SyncConnection) -> list[str]:
            if q.get_account_sync(conn, account_id) is None:
                raise NotFound(f"no account {account_id}")
            _check_channel(conn, channel_id)
            q.update_account_sync(conn, account_id, {**values, "updated_at": now})
            if chat_ids is None:
                return []
            q.ensure_group_chats_sync(conn, chat_ids, channel_id=channel_id, now=now)
            return q.set_account_chats_sync(conn, account_id, chat_ids)

        added = await self._write(write, values.get("external_ref"))
        self.sync.sync_in_background(added)
        return await self.get(account_id)

    async def delete(self, account_id: str) -> None:
        """Delete an account (its groups and their members stay). Raises NotFound."""
        deleted = await self.db.write(lambda conn: q.delete_account_sync(conn, account_id))
        if not deleted:
            raise NotFound(f"no account {account_id}")

    async def get(self, account_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            account = await q.get_account(conn, account_id)
            if account is None:
                raise NotFound(f"no account {account_id}")
            groups = await q.account_groups(conn, [account_id])
        account["groups"] = groups[account_id]
        return account

    async def list_page(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of accounts by name, each with its groups, and the total count."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        if not 0 <= offset <= MAX_SQL_INT:
            raise ValidationError(f"offset must be 0 to {MAX_SQL_INT}", details={"field": "offset"})
        async with self.db.read() as conn:
            rows = await q.list_accounts(conn, limit=limit, offset=offset)
            total = await q.count_accounts(conn)
            groups = await q.account_groups(conn, [r["id"] for r in rows])
        for row in rows:
            row["groups"] = groups[row["id"]]
        return rows, total

    async def _write(
        self, fn: Callable[[SyncConnection], list[str]], external_ref: str | None
    ) -> list[str]:
        try:
            added: list[str] = await self.db.write(fn)
        except IntegrityError:
            # The only unique value a caller chooses is external_ref.
            raise ConflictError(
                f"external_ref: another account already has external_ref {external_ref!r}",
                details={"field": "external_ref", "value": external_ref},
            ) from None
        return added


def _name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise ValidationError("name: must not be empty", details={"field": "name"})
    return clean


def _chat_ids(group_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(group_chat_id(g, field="group_ids") for g in group_ids))


def _check_channel(conn: SyncConnection, channel_id: str | None) -> None:
    if channel_id is not None and channels_q.get_channel_sync(conn, channel_id) is None:
        raise ValidationError(
            f"channel_id: unknown channel {channel_id!r}",
            details={"field": "channel_id", "value": channel_id},
        )
