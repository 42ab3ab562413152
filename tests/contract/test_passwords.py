"""Users' dashboard passwords (issue 17, point 1) on every store backend: argon2 hashes,
the role a password sign-in gets, and sessions that end when the password changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from wahub.domain.actors import Role
from wahub.domain.errors import AuthenticationFailed, NotFound, ValidationError
from wahub.features.passwords import PASSWORD_KEY_ID, Passwords
from wahub.store.schema import users

if TYPE_CHECKING:
    from conftest import ContractEnv

PASSWORD = "correct horse battery"


async def test_a_password_signs_its_user_in_with_its_role(env: ContractEnv) -> None:
    passwords = Passwords(env.db)
    await passwords.set_password(user_name="bea", password=PASSWORD, role="agent")

    actor, fingerprint = await passwords.sign_in(" bea ", PASSWORD)

    assert (actor.user_name, actor.role, actor.key_id) == ("bea", Role.AGENT, PASSWORD_KEY_ID)
    assert await passwords.actor(actor.user_id, fingerprint) == actor


async def test_only_an_argon2_hash_is_stored(env: ContractEnv) -> None:
    await Passwords(env.db).set_password(user_name="bea", password=PASSWORD, role="viewer")

    async with env.db.read() as conn:
        stored = [row.password_hash for row in await conn.execute(select(users.c.password_hash))]

    assert next(h for h in stored if h is not None).startswith("$argon2id$")
    assert PASSWORD not in str(stored)


@pytest.mark.parametrize(("user", "password"), [("bea", "wrong password"), ("nobody", PASSWORD)])
async def test_a_wrong_name_or_password_is_refused_alike(
    env: ContractEnv, user: str, password: str
) -> None:
    passwords = Passwords(env.db)
    await passwords.set_password(user_name="bea", password=PASSWORD, role="agent")

    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        await passwords.sign_in(user, password)


async def test_a_user_with_a_key_but_no_password_cannot_sign_in_with_one(
    env: ContractEnv,
) -> None:
    await env.access.create_key(user_name="keyonly", role="admin")

    with pytest.raises(AuthenticationFailed):
        await Passwords(env.db).sign_in("keyonly", "")


async def test_a_new_password_or_its_removal_ends_the_sessions_of_the_old_one(
    env: ContractEnv,
) -> None:
    passwords = Passwords(env.db)
    await passwords.set_password(user_name="bea", password=PASSWORD, role="agent")
    actor, fingerprint = await passwords.sign_in("bea", PASSWORD)

    await passwords.set_password(user_name="bea", password=PASSWORD + "2", role="agent")
    with pytest.raises(AuthenticationFailed):
        await passwords.actor(actor.user_id, fingerprint)

    _, second = await passwords.sign_in("bea", PASSWORD + "2")
    await passwords.remove_password("bea")
    with pytest.raises(AuthenticationFailed):
        await passwords.actor(actor.user_id, second)
    with pytest.raises(AuthenticationFailed):
        await passwords.sign_in("bea", PASSWORD + "2")


@pytest.mark.parametrize(
    ("role", "password", "field"),
    [("owner", PASSWORD, "role"), ("agent", "short", "password")],
)
async def test_a_bad_role_or_a_short_password_is_refused(
    env: ContractEnv, role: str, password: str, field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        await Passwords(env.db).set_password(user_name="bea", password=password, role=role)

    assert refused.value.details == {"field": field}


async def test_removing_the_password_of_an_unknown_user_says_so(env: ContractEnv) -> None:
    with pytest.raises(NotFound):
        await Passwords(env.db).remove_password("nobody")


async def test_a_session_opened_with_a_key_ends_when_the_key_is_revoked(env: ContractEnv) -> None:
    created = await env.access.create_key(user_name="ada", role="viewer")

    actor = await env.access.actor_for_key_id(created.key_id)
    assert (actor.user_name, actor.role) == ("ada", Role.VIEWER)

    await env.access.revoke_key(created.key_id)
    with pytest.raises(AuthenticationFailed):
        await env.access.actor_for_key_id(created.key_id)
