"""API keys, users, employee groups and who may send where.

Keys look like ``wh_<8 hex prefix>_<43 url-safe chars>``. Only the SHA-256 of the whole
key is stored; the key itself is shown once, when created. SHA-256 (not a slow password
hash) is right here: the secret has 256 bits of entropy, so it cannot be guessed, and
every request must be checked fast.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import IntegrityError

from wahub.domain.actors import Actor, Role
from wahub.domain.errors import AuthenticationFailed, NotFound, PermissionDenied, ValidationError
from wahub.domain.ids import new_id
from wahub.domain.phones import is_group_chat
from wahub.store import access as q
from wahub.store import channels as channel_q
from wahub.store.database import Database

# Shown by ``wahub keys list`` for the key of WAHUB_BOOTSTRAP_ADMIN_KEY: its first
# characters are part of a secret the operator chose, not a random prefix of ours.
BOOTSTRAP_PREFIX = "bootstrap"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: str  # shown once
    key_id: str
    user_id: str
    user_name: str
    role: Role
    prefix: str


class AccessControl:
    """Authenticates keys and answers "may this actor do that?"."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_key(self, *, user_name: str, role: str) -> CreatedKey:
        """Create a key for ``user_name`` (created if new). Raises ValidationError on a bad role."""
        try:
            parsed_role = Role(role)
        except ValueError:
            raise ValidationError(
                f"role must be one of admin, agent, viewer (got {role!r})",
                details={"field": "role"},
            ) from None
        name = user_name.strip()
        if not name:
            raise ValidationError("user name must not be empty", details={"field": "user"})
        prefix = secrets.token_hex(4)
        key = f"wh_{prefix}_{secrets.token_urlsafe(32)}"
        now = time.time()
        async with self.db.transaction() as conn:
            user = await q.ensure_user(conn, name, now)
            key_id = new_id("key")
            await q.insert_api_key(
                conn,
                {
                    "id": key_id,
                    "user_id": user["id"],
                    "role": parsed_role.value,
                    "key_hash": hash_key(key),
                    "prefix": prefix,
                    "created_at": now,
                },
            )
        return CreatedKey(key, key_id, user["id"], name, parsed_role, prefix)

    async def bootstrap_admin_key(self, key: str | None, *, user_name: str = "admin") -> str:
        """Store ``key`` (its hash) as an admin key of ``user_name`` when no active admin
        key exists, so a fresh install (a container) has a first key its operator chose.

        Returns ``stored``, ``present`` (an active admin key exists: nothing stored) or
        ``missing`` (none exists and ``key`` is None). A key stored before is never
        stored again, so revoking the bootstrap key sticks across restarts; processes
        starting together store it once (its hash is unique).
        """
        now = time.time()
        try:
            async with self.db.transaction() as conn:
                return await conn.run_sync(
                    functools.partial(
                        _bootstrap_admin_key_sync, key=key, user_name=user_name, now=now
                    )
                )
        except IntegrityError:
            return "present"  # another process stored it (or the user) at the same moment

    async def authenticate(self, key: str | None) -> Actor:
        """The actor behind ``key``.

        Raises AuthenticationFailed, without saying which part was wrong.
        """
        if not key:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        row, user = await self.db.read_one(
            functools.partial(_key_and_user_sync, key_hash=hash_key(key.strip()))
        )
        if row is None:
            raise AuthenticationFailed("invalid or revoked API key")
        return Actor(
            user_id=row["user_id"],
            user_name=user["name"] if user is not None else "",
            role=Role(row["role"]),
            key_id=row["id"],
        )

    async def actor_for_key_id(self, key_id: str) -> Actor:
        """The actor of the active key ``key_id`` (a dashboard session opened with it).

        Raises AuthenticationFailed once the key is revoked.
        """
        row, user = await self.db.read_one(
            functools.partial(_key_by_id_and_user_sync, key_id=key_id)
        )
        if row is None:
            raise AuthenticationFailed("the session ended: its API key was revoked")
        return Actor(
            user_id=row["user_id"],
            user_name=user["name"] if user is not None else "",
            role=Role(row["role"]),
            key_id=row["id"],
        )

    async def list_keys(self) -> list[dict[str, Any]]:
        """Every key's metadata (id, prefix, user, role, created, revoked); never a secret."""
        async with self.db.read() as conn:
            return await q.list_api_keys(conn)

    async def revoke_key(self, key_id: str) -> None:
        """Revoke a key at once. Raises NotFound when no active key has that id."""
        async with self.db.transaction() as conn:
            revoked = await q.revoke_api_key(conn, key_id, time.time())
        if not revoked:
            raise NotFound(f"no active key {key_id}")

    async def check_can_send(self, actor: Actor, chat_id: str) -> None:
        """Raises PermissionDenied unless ``actor`` may send to ``chat_id``.

        Admins send anywhere. Agents send to people freely, and to a group only when the
        group is assigned to one of their employee groups. Viewers never send.
        """
        if actor.role == Role.VIEWER:
            raise PermissionDenied("viewer keys are read-only: sending needs an agent or admin key")
        if actor.role == Role.ADMIN or not is_group_chat(chat_id):
            return
        async with self.db.read() as conn:
            allowed = await q.is_chat_assigned_to_user(conn, actor.user_id, chat_id)
        if not allowed:
            raise PermissionDenied(
                f"group {chat_id} is not assigned to any of your employee groups; "
                "ask an admin to assign it",
                details={"chat_id": chat_id},
            )

    async def visible_chat_ids(self, actor: Actor) -> list[str] | None:
        """None when the actor sees every chat; otherwise the chats assigned to them."""
        if actor.sees_everything:
            return None
        async with self.db.read() as conn:
            return await q.assigned_chat_ids(conn, actor.user_id)

    async def assign_chat(self, *, group_name: str, chat_id: str) -> None:
        """Let the employee group ``group_name`` (created if new) send to ``chat_id``."""
        now = time.time()
        async with self.db.transaction() as conn:
            if await channel_q.get_chat(conn, chat_id) is None:
                raise NotFound(f"unknown chat {chat_id}: register the group first")
            group = await q.ensure_employee_group(conn, group_name, now)
            await q.assign_chat(conn, group["id"], chat_id, now)

    async def add_member(self, *, group_name: str, user_name: str) -> None:
        """Put ``user_name`` into employee group ``group_name`` (both created if new)."""
        now = time.time()
        async with self.db.transaction() as conn:
            group = await q.ensure_employee_group(conn, group_name, now)
            user = await q.ensure_user(conn, user_name, now)
            await q.add_group_member(conn, group["id"], user["id"])


def _bootstrap_admin_key_sync(
    conn: SyncConnection, *, key: str | None, user_name: str, now: float
) -> str:
    if q.has_active_admin_key_sync(conn):
        return "present"
    if key is None:
        return "missing"
    if q.key_hash_known_sync(conn, hash_key(key)):
        return "missing"  # revoked by an operator: it stays revoked
    user = q.ensure_user_sync(conn, user_name, now)
    q.insert_api_key_sync(
        conn,
        {
            "id": new_id("key"),
            "user_id": user["id"],
            "role": Role.ADMIN.value,
            "key_hash": hash_key(key),
            "prefix": BOOTSTRAP_PREFIX,
            "created_at": now,
        },
    )
    return "stored"


def _key_and_user_sync(
    conn: SyncConnection, key_hash: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    # Every API request runs this: one hop for both queries (Database.read_one).
    row = q.find_active_key_sync(conn, key_hash)
    if row is None:
        return None, None
    return row, q.get_user_sync(conn, row["user_id"])


def _key_by_id_and_user_sync(
    conn: SyncConnection, key_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    row = q.find_active_key_by_id_sync(conn, key_id)
    if row is None:
        return None, None
    return row, q.get_user_sync(conn, row["user_id"])
