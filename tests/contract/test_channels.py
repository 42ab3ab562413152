"""Channels on every backend: credentials sealed at rest and rotatable, input refused
when it would make a channel useless or ambiguous, referred to by id or name, proved
before "connected", updated and removed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, text

from sealing import TEST_CIPHER, TEST_SECRET_KEY, token_in_sqlite_file
from wahub.domain.credentials import CredentialCipher, generate_key
from wahub.domain.errors import (
    ConflictError,
    CredentialsUnreadable,
    DuplicateChannel,
    NotFound,
    ValidationError,
)
from wahub.features.channels import CHANNEL_REMOVED, Channels
from wahub.store import channels as channel_q
from wahub.store.database import Database
from wahub.store.schema import channels as channels_table

if TYPE_CHECKING:
    from conftest import ContractEnv

TOKEN = "EAAG-very-secret-token-1234567890"


async def stored_credentials(db: Database, channel_id: str) -> object:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(channels_table.c.credentials).where(channels_table.c.id == channel_id)
            )
        ).one()
    return row.credentials


async def token_anywhere(db: Database, database_url: str, token: str) -> bool:
    """Whether the token is in the stored bytes: the SQLite file itself (after a WAL
    checkpoint), or every PostgreSQL channel row as text (what a dump holds)."""
    if db.is_sqlite:
        return token_in_sqlite_file(database_url, token)
    async with db.read() as conn:
        rows = await conn.execute(text("SELECT CAST(channels AS text) FROM channels"))
        return any(token in str(r[0]) for r in rows)


# -- sealed at rest --------------------------------------------------------------------


async def test_a_token_is_not_in_the_database_in_clear(db: Database, database_url: str) -> None:
    channels = Channels(db, TEST_CIPHER)
    created = await channels.create(name="main", phone_number_id="1065", access_token=TOKEN)

    assert not await token_anywhere(db, database_url, TOKEN)
    sealed = await stored_credentials(db, created["id"])
    assert TEST_CIPHER.open(sealed, channel="main") == {"access_token": TOKEN}
    assert "credentials" not in created, "never returned"


async def test_rotation_reseals_every_channel_so_the_old_key_can_go(db: Database) -> None:
    old = Channels(db, TEST_CIPHER)
    first = await old.create(name="a", phone_number_id="1", access_token="token-a")
    second = await old.create(
        name="b", kind="whapi", access_token="token-b", phone_number="+14155550100"
    )
    before = await stored_credentials(db, first["id"])
    new_key = generate_key()

    rotated = await Channels(db, CredentialCipher([new_key, TEST_SECRET_KEY])).rotate_credentials()

    assert rotated == 2
    assert await stored_credentials(db, first["id"]) != before
    only_new = CredentialCipher([new_key])
    assert only_new.open(await stored_credentials(db, first["id"]), channel="a") == {
        "access_token": "token-a"
    }
    assert only_new.open(await stored_credentials(db, second["id"]), channel="b") == {
        "token": "token-b"
    }


async def test_rotation_without_the_old_key_changes_nothing_and_names_the_channel(
    db: Database,
) -> None:
    channel = await Channels(db, TEST_CIPHER).create(
        name="main", phone_number_id="1", access_token=TOKEN
    )
    before = await stored_credentials(db, channel["id"])

    with pytest.raises(CredentialsUnreadable, match=r"'main' \(ch_") as caught:
        await Channels(db, CredentialCipher([generate_key()])).rotate_credentials()

    assert caught.value.details["channels"] == [f"'main' ({channel['id']})"]
    assert await stored_credentials(db, channel["id"]) == before


async def test_a_wrong_key_is_reported_naming_the_channel(db: Database) -> None:
    channel = await Channels(db, TEST_CIPHER).create(
        name="main", phone_number_id="1", access_token=TOKEN
    )

    problems = await Channels(db, CredentialCipher([generate_key()])).unreadable()

    assert len(problems) == 1
    assert f"'main' ({channel['id']})" in problems[0]
    assert "do not decrypt" in problems[0]


# -- input refused ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cloudapi", "whapi", "periskope"])
async def test_an_empty_token_is_refused(env: ContractEnv, kind: str) -> None:
    with pytest.raises(ValidationError, match="access_token") as caught:
        await env.channels.create(
            name="empty",
            kind=kind,
            phone_number_id="2",
            phone_number="+14155550100",
            access_token="   ",
        )
    assert caught.value.details == {"field": "access_token"}


async def test_a_duplicate_name_is_refused(env: ContractEnv) -> None:
    with pytest.raises(DuplicateChannel, match="name 'main'") as caught:
        await env.channels.create(name="main", phone_number_id="other", access_token="t")
    assert caught.value.details == {"field": "name", "channel": env.channel_id}


async def test_a_duplicate_phone_number_id_of_the_same_kind_is_refused(env: ContractEnv) -> None:
    with pytest.raises(DuplicateChannel, match="phone_number_id 'pnid-main'") as caught:
        await env.channels.create(name="second", phone_number_id="pnid-main", access_token="t")
    assert caught.value.details["field"] == "phone_number_id"
    # The same id on another provider names another thing: allowed.
    await env.channels.create(
        name="whapi", kind="whapi", phone_number_id="pnid-main", access_token="t"
    )


async def test_a_rename_onto_another_channels_name_is_refused(env: ContractEnv) -> None:
    await env.channels.create(name="second", phone_number_id="2", access_token="t")
    with pytest.raises(DuplicateChannel):
        await env.channels.update("second", name="main")


# -- status ----------------------------------------------------------------------------


async def test_a_new_channel_is_unverified_until_proved(env: ContractEnv) -> None:
    assert (await env.channels.get(env.channel_id))["status"] == "unverified"

    async with env.db.transaction() as conn:
        assert await channel_q.mark_channel_verified(conn, env.channel_id, now=5.0)
        assert not await channel_q.mark_channel_verified(conn, env.channel_id, now=6.0)

    proved = await env.channels.get(env.channel_id)
    assert (proved["status"], proved["verified_at"]) == ("connected", 5.0)


async def test_a_new_token_makes_the_channel_unverified_again(env: ContractEnv) -> None:
    async with env.db.transaction() as conn:
        await channel_q.mark_channel_verified(conn, env.channel_id, now=5.0)

    updated = await env.channels.update("main", access_token="new-token")

    assert (updated["status"], updated["verified_at"]) == ("unverified", None)
    sealed = await stored_credentials(env.db, env.channel_id)
    assert TEST_CIPHER.open(sealed, channel="main") == {"access_token": "new-token"}


# -- by id or name ---------------------------------------------------------------------


async def test_a_channel_is_found_by_id_or_by_name(env: ContractEnv) -> None:
    assert (await env.channels.get("main"))["id"] == env.channel_id
    assert (await env.channels.get(env.channel_id))["name"] == "main"
    with pytest.raises(NotFound, match="no channel 'nope'"):
        await env.channels.get("nope")


async def test_templates_are_registered_by_channel_name(env: ContractEnv) -> None:
    template = await env.channels.add_template(
        "main", name="order_update", language="en_US", body_parameters=1, category="utility"
    )
    assert template["channel_id"] == env.channel_id
    assert [t["name"] for t in await env.channels.list_templates("main")] == ["order_update"]


async def test_a_message_can_name_its_channel(env: ContractEnv) -> None:
    message = await env.send_text(env.phone(1), channel_id="main")
    assert message["channel_id"] == env.channel_id


# -- update and pause ------------------------------------------------------------------


async def test_a_paused_channel_is_not_leased_until_resumed(env: ContractEnv) -> None:
    async def lease() -> list[str]:
        async with env.db.transaction() as conn:
            return await channel_q.acquire_channel_leases(
                conn, owner="w", now=time.time(), lease_seconds=15.0
            )

    assert (await env.channels.update("main", paused=True))["paused"] is True
    assert await lease() == []
    await env.channels.update("main", paused=False)
    assert await lease() == [env.channel_id]


# -- remove ----------------------------------------------------------------------------


async def test_removing_a_channel_with_queued_messages_is_refused(env: ContractEnv) -> None:
    await env.send_text(env.phone(1))

    with pytest.raises(ConflictError, match="1 queued") as caught:
        await env.channels.remove("main")

    assert caught.value.details["messages"] == {"queued": 1}
    assert (await env.channels.get("main"))["id"] == env.channel_id


async def test_forced_removal_fails_the_queued_messages_and_frees_the_name(
    env: ContractEnv,
) -> None:
    queued = await env.send_text(env.phone(1))

    removal = await env.channels.remove("main", force=True)

    assert removal.failed_messages == 1
    message = await env.message(queued["id"])
    assert (message["status"], message["error_code"]) == ("failed", CHANNEL_REMOVED)
    assert [e["status"] for e in await env.events(queued["id"])][-1] == "failed"
    assert await env.channels.list_all() == []
    with pytest.raises(NotFound):
        await env.channels.get(env.channel_id)
    # The row stays for its messages, without its token; name and number are free.
    async with env.db.read() as conn:
        row = await channel_q.get_channel(conn, env.channel_id, include_removed=True)
    assert row is not None
    assert row["removed_at"] is not None
    assert TEST_CIPHER.open(row["credentials"], channel="main") == {}
    await env.channels.create(name="main", phone_number_id="pnid-main", access_token="t")


async def test_a_channel_without_messages_to_send_is_removed_without_force(
    env: ContractEnv,
) -> None:
    removal = await env.channels.remove(env.channel_id)
    assert (removal.channel_id, removal.failed_messages) == (env.channel_id, 0)
