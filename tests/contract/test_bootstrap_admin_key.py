"""The first admin key of a container install (issue 14, point 11): WAHUB_BOOTSTRAP_ADMIN_KEY
is stored once when no admin key exists, and a revoked one never comes back."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from wahub.config import Settings
from wahub.domain.actors import Role
from wahub.domain.errors import AuthenticationFailed
from wahub.features.access import AccessControl
from wahub.store.database import Database


@pytest.fixture
def key() -> str:
    return secrets.token_hex(32)


async def test_the_key_is_stored_for_user_admin_when_no_admin_key_exists(
    db: Database, key: str
) -> None:
    access = AccessControl(db)
    assert await access.bootstrap_admin_key(key) == "stored"
    actor = await access.authenticate(key)
    assert (actor.role, actor.user_name) == (Role.ADMIN, "admin")
    assert await access.bootstrap_admin_key(key) == "present", "a restart stores nothing"
    assert [k["prefix"] for k in await access.list_keys()] == ["bootstrap"]


async def test_nothing_is_stored_when_an_admin_key_exists(db: Database, key: str) -> None:
    access = AccessControl(db)
    await access.create_key(user_name="alice", role="admin")
    assert await access.bootstrap_admin_key(key) == "present"
    with pytest.raises(AuthenticationFailed):
        await access.authenticate(key)


async def test_a_revoked_bootstrap_key_stays_revoked_across_restarts(
    db: Database, key: str
) -> None:
    access = AccessControl(db)
    await access.bootstrap_admin_key(key)
    [stored] = await access.list_keys()
    await access.revoke_key(stored["id"])
    assert await access.bootstrap_admin_key(key) == "missing"
    with pytest.raises(AuthenticationFailed):
        await access.authenticate(key)


async def test_without_a_key_the_missing_admin_key_is_reported(db: Database) -> None:
    assert await AccessControl(db).bootstrap_admin_key(None) == "missing"


def test_a_short_bootstrap_key_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="WAHUB_BOOTSTRAP_ADMIN_KEY must be at least 32"):
        Settings(_env_file=None, bootstrap_admin_key="change-me")


def test_an_empty_bootstrap_key_means_none() -> None:
    assert Settings(_env_file=None, bootstrap_admin_key="").bootstrap_admin_key is None
