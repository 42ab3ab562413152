"""Users' passwords, for signing in to the dashboard.

A password is stored as its argon2id hash with the role a password sign-in gets (roles
belong to keys, and one user may hold keys of several roles). Hashing is deliberately
slow, so it runs in a thread, off the event loop. A session remembers a fingerprint of
the hash it was opened with: setting a new password (or removing it) ends every
session opened with the old one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection as SyncConnection

from wahub.domain.actors import Actor, Role
from wahub.domain.errors import AuthenticationFailed, NotFound, ValidationError
from wahub.store import access as q
from wahub.store.database import Database

MIN_PASSWORD_LENGTH = 10
# What a password session has instead of an API key's id (Actor.key_id).
PASSWORD_KEY_ID = "password"

_hasher = PasswordHasher()
# Verified against when the user is unknown, so a wrong name costs as long as a wrong
# password and the answer's timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash("wahub-no-such-user")

_WRONG = "wrong user name or password"


def fingerprint(password_hash: str) -> str:
    """A short digest of a stored hash, kept in a session to notice a changed password."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Passwords:
    """Sets users' passwords and signs users in with them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_password(self, *, user_name: str, password: str, role: str) -> None:
        """Give ``user_name`` (created if new) ``password``, signing in as ``role``.

        Raises ValidationError for a role that is not admin, agent or viewer, or a
        password shorter than MIN_PASSWORD_LENGTH characters.
        """
        try:
            parsed_role = Role(role)
        except ValueError:
            raise ValidationError(
                f"role must be one of admin, agent, viewer (got {role!r})",
                details={"field": "role"},
            ) from None
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValidationError(
                f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
                details={"field": "password"},
            )
        name = user_name.strip()
        if not name:
            raise ValidationError("user name must not be empty", details={"field": "user"})
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        now = time.time()
        async with self.db.transaction() as conn:
            user = await q.ensure_user(conn, name, now)
            await q.set_user_password(conn, user["id"], password_hash, parsed_role.value)

    async def remove_password(self, user_name: str) -> None:
        """Let ``user_name`` sign in with a key only. Raises NotFound for an unknown user."""
        async with self.db.transaction() as conn:
            user = await q.get_user_by_name(conn, user_name.strip())
            if user is None:
                raise NotFound(f"no user {user_name!r}")
            await q.set_user_password(conn, user["id"], None, None)

    async def sign_in(self, user_name: str, password: str) -> tuple[Actor, str]:
        """The actor behind this name and password, and the fingerprint of the hash.

        Raises AuthenticationFailed without saying which part was wrong.
        """
        user = await self.db.read_one(
            functools.partial(q.get_user_by_name_sync, name=user_name.strip())
        )
        stored = user["password_hash"] if user is not None else None
        ok = await asyncio.to_thread(_verify, stored or _DUMMY_HASH, password)
        if user is None or stored is None or not ok:
            raise AuthenticationFailed(_WRONG)
        return _actor(user), fingerprint(stored)

    async def actor(self, user_id: str, hash_fingerprint: str) -> Actor:
        """The actor of a password session, while its password is unchanged.

        Raises AuthenticationFailed when the user is gone or the password changed.
        """
        user = await self.db.read_one(functools.partial(_user_sync, user_id=user_id))
        stored = user["password_hash"] if user is not None else None
        if user is None or stored is None or fingerprint(stored) != hash_fingerprint:
            raise AuthenticationFailed("the session ended: the password changed")
        return _actor(user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _user_sync(conn: SyncConnection, user_id: str) -> dict[str, Any] | None:
    return q.get_user_sync(conn, user_id)


def _actor(user: dict[str, Any]) -> Actor:
    return Actor(
        user_id=user["id"],
        user_name=user["name"],
        role=Role(user["password_role"]),
        key_id=PASSWORD_KEY_ID,
    )
