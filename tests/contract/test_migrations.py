"""Schema migrations: idempotent, concurrent-safe, refusing what they do not know."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.sql.expression import TableClause

from sealing import TEST_CIPHER, token_in_sqlite_file
from wahub.domain.errors import SecretKeyError, StoreUnavailable
from wahub.store.database import Database
from wahub.store.migrate import SchemaTooNew, head_revision, upgrade
from wahub.store.schema import metadata


async def versions(db: Database) -> list[str]:
    async with db.read() as conn:
        return [
            str(r[0]) for r in await conn.execute(text("SELECT version_num FROM alembic_version"))
        ]


async def tables(db: Database) -> set[str]:
    async with db.read() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_of_a_fresh_database_creates_every_table(database_url: str) -> None:
    db = Database(database_url)
    try:
        result = await upgrade(db)

        assert result == {"from": None, "to": head_revision()}
        assert set(metadata.tables) <= await tables(db), "the migrations must build schema.py"
        assert await versions(db) == [head_revision()]
    finally:
        await db.dispose()


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    before = await tables(db)

    result = await upgrade(db)

    assert result == {"from": head_revision(), "to": head_revision()}
    assert await tables(db) == before
    assert await versions(db) == [head_revision()]


async def test_a_schema_from_a_newer_wahub_is_refused(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))

    with pytest.raises(SchemaTooNew) as caught:
        await upgrade(db)

    message = caught.value.message
    assert "9999_from_the_future" in message, "name the revision found"
    assert "newer wahub" in message, f"say what to do: {message}"
    assert head_revision() in message, f"say what this version knows: {message}"
    assert await versions(db) == ["9999_from_the_future"], "a refused upgrade touches nothing"


async def test_concurrent_upgrades_of_an_empty_database_both_succeed(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        async with first.read():
            pass  # the database exists (SQLite: file created, WAL on) but has no schema yet

        results = await asyncio.gather(upgrade(first), upgrade(second), return_exceptions=True)

        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], f"both processes must start: {failures}"
        started_from = sorted(str(r["from"]) for r in results if isinstance(r, dict))
        assert started_from == sorted(["None", head_revision()]), (
            f"one process migrates, the other waits and finds the schema at head: {results}"
        )
        assert await versions(second) == [head_revision()], "the schema is at head, once"
    finally:
        await first.dispose()
        await second.dispose()


async def test_upgrade_of_a_new_sqlite_file_waits_for_another_writer(
    database_url: str,
) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("SQLite journal mode only")
    other_process = sqlite3.connect(str(url.database), isolation_level=None)
    db = Database(database_url)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        other_process.execute("CREATE TABLE started_first (x INTEGER)")
        asyncio.get_running_loop().call_later(0.3, other_process.execute, "COMMIT")

        result = await upgrade(db)

        assert result["to"] == head_revision()
    finally:
        await db.dispose()
        other_process.close()


@pytest.mark.parametrize(
    "url", ["mysql://u:p@localhost/wahub", "oracle://localhost/wahub", "mongodb://x/y"]
)
def test_an_unsupported_url_scheme_is_store_unavailable(url: str) -> None:
    with pytest.raises(StoreUnavailable, match="unsupported database URL scheme"):
        Database(url)


@pytest.mark.parametrize("url", ["not a url", "wahub.db"])
def test_a_url_without_a_scheme_is_store_unavailable(url: str) -> None:
    with pytest.raises(StoreUnavailable):
        Database(url)


async def test_an_unreachable_sqlite_path_is_store_unavailable_in_one_line(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/missing-dir/t.db")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await upgrade(db)
    finally:
        await db.dispose()

    message = str(caught.value)
    assert "\n" not in message, f"an outage is reported in one line: {message!r}"
    assert "unable to open" in message, f"the cause is named: {message!r}"


async def test_migrations_build_exactly_the_schema_the_code_declares(db: Database) -> None:
    """schema.py and the migrations cannot drift: a change to one needs the other."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from wahub.store.schema import DIALECT_ONLY_OBJECTS, metadata

    async with db.read() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    # Only the objects schema.py names as one backend's own (full-text indexes) may exist
    # in the database without a declaration.
    diff = [
        d
        for d in diff
        if not (
            isinstance(d, tuple)
            and d[0] in ("remove_table", "remove_index")
            and d[1].name in DIALECT_ONLY_OBJECTS
        )
    ]
    assert diff == [], f"schema.py and the migrations differ: {diff}"


async def test_an_unreachable_postgresql_host_is_one_line_naming_the_host() -> None:
    db = Database("postgresql://wahub@127.0.0.1:1/wahub")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await upgrade(db)
    finally:
        await db.dispose()
    message = caught.value.message
    assert "127.0.0.1" in message, message
    assert "\n" not in message, "one line, no traceback"


async def old_database(
    database_url: str, revision: str, credentials: dict[str, str] | None = None
) -> Database:
    """A database at ``revision`` (as an older wahub left it) with one channel, ch_old,
    whose ``credentials`` are stored in plaintext as that wahub did."""
    from sqlalchemy import JSON, column, insert, table

    channels_then = table(
        "channels",
        *(column(c) for c in ("id", "kind", "name", "base_url", "created_at")),
        column("credentials", JSON),
    )
    db = Database(database_url)
    try:
        await upgrade(db, to=revision)
        async with db.transaction() as conn:
            await conn.execute(
                insert(channels_then).values(
                    id="ch_old", kind="cloudapi", name="old", base_url="http://127.0.0.1:1",
                    created_at=1.0, credentials=credentials or {},
                )
            )  # fmt: skip
    except BaseException:
        await db.dispose()
        raise
    return db


def old_messages(*columns: str) -> TableClause:
    """The messages table with only ``columns`` (and ``content``): safe to insert into at
    any revision that had them."""
    from sqlalchemy import JSON, column, table

    return table("messages", *(column(c) for c in columns), column("content", JSON))


async def test_messages_stored_before_search_existed_are_found_after_upgrading(
    database_url: str,
) -> None:
    """Revision 0005 indexes the messages an older wahub stored, with their chat's name:
    without its backfill an upgraded installation would search only new messages."""
    from sqlalchemy import column, insert, table

    from wahub.features.access import AccessControl
    from wahub.features.search import MessageSearch, SearchQuery

    # Tables as revision 0004 left them, with only the columns this test fills.
    chats_0004 = table("chats", *(column(c) for c in ("chat_id", "kind", "name", "created_at")))
    messages_0004 = old_messages(
        "id", "channel_id", "chat_id", "direction", "type", "status", "text",
        "template_name", "ordering_key", "next_attempt_at", "created_at", "updated_at",
    )  # fmt: skip
    group = "120363000000000777@g.us"
    db = await old_database(database_url, "0004")
    try:
        async with db.transaction() as conn:
            await conn.execute(
                insert(chats_0004).values(
                    chat_id=group, kind="group", name="Claims Desk", created_at=1.0
                )
            )
            for n, (text_, template) in enumerate(
                [("the invoice for March", None), (None, "policy_renewal"), ("hello", None)]
            ):
                await conn.execute(
                    insert(messages_0004).values(
                        id=f"msg_old{n}", channel_id="ch_old", chat_id=group, direction="in",
                        type="text" if template is None else "template", status="received",
                        text=text_, template_name=template, ordering_key=f"old:{n}",
                        next_attempt_at=1.0, created_at=1.0 + n, updated_at=1.0 + n,
                        content={"type": "text"},
                    )
                )  # fmt: skip

        result = await upgrade(db, cipher=TEST_CIPHER)

        assert result == {"from": "0004", "to": head_revision()}
        access = AccessControl(db)
        admin = await access.authenticate(
            (await access.create_key(user_name="root", role="admin")).key
        )
        search = MessageSearch(db, access)

        async def found(words: str) -> list[str]:
            hits = await search.search(admin, SearchQuery(q=words))
            return sorted(str(h.message["id"]) for h in hits)

        assert await found("invoice march") == ["msg_old0"], "old texts are indexed"
        assert await found("renewal") == ["msg_old1"], "old template names are indexed"
        assert await found("claims desk") == ["msg_old0", "msg_old1", "msg_old2"], (
            "old messages carry their chat's name"
        )
    finally:
        await db.dispose()


async def test_replies_stored_before_0011_are_linked_to_messages_already_here(
    database_url: str,
) -> None:
    from sqlalchemy import insert, select

    from wahub.store.schema import messages

    messages_0010 = old_messages(
        "id", "channel_id", "chat_id", "direction", "type", "status", "provider_message_id",
        "reply_to", "ordering_key", "next_attempt_at", "created_at", "updated_at",
    )  # fmt: skip
    db = await old_database(database_url, "0010")
    try:
        async with db.transaction() as conn:
            for id_, pid, reply_to in [
                ("msg_q", "wamid.q", None),  # the quoted message, stored after its reply
                ("msg_r", "wamid.r", "wamid.q"),  # left unlinked by the older wahub
                ("msg_o", "wamid.o", "wamid.never"),  # quotes a message we never had
            ]:
                await conn.execute(
                    insert(messages_0010).values(
                        id=id_, channel_id="ch_old", chat_id="4915110000001@s.whatsapp.net",
                        direction="in", type="text", status="received",
                        provider_message_id=pid, reply_to=reply_to, ordering_key=id_,
                        next_attempt_at=1.0, created_at=1.0, updated_at=1.0,
                        content={"type": "text"},
                    )
                )  # fmt: skip

        await upgrade(db, cipher=TEST_CIPHER)

        async with db.read() as conn:
            linked = dict(
                (await conn.execute(select(messages.c.id, messages.c.quoted_message_id))).all()
            )
        assert linked == {"msg_q": None, "msg_r": "msg_q", "msg_o": None}
    finally:
        await db.dispose()


async def token_stored_in_clear(db: Database, database_url: str, token: str) -> bool:
    """Whether ``token`` is anywhere in the stored bytes (SQLite: the file after a WAL
    checkpoint; PostgreSQL: the row as text, which is what a dump would contain)."""
    if db.is_sqlite:
        return token_in_sqlite_file(database_url, token)
    async with db.read() as conn:
        dumped = await conn.execute(text("SELECT credentials::text FROM channels"))
        return any(token in str(r[0]) for r in dumped)


async def test_0012_seals_credentials_an_older_wahub_stored_in_plaintext(
    database_url: str,
) -> None:
    from sqlalchemy import select

    from wahub.store.schema import channels

    token = "EAAG-plaintext-token-from-0011"
    db = await old_database(database_url, "0011", {"access_token": token})
    try:
        await upgrade(db, cipher=TEST_CIPHER)

        async with db.read() as conn:
            row = (await conn.execute(select(channels).where(channels.c.id == "ch_old"))).one()
        assert isinstance(row.credentials, str), "sealed: one Fernet token, not an object"
        assert TEST_CIPHER.open(row.credentials, channel="old") == {"access_token": token}
        assert row.status == "unverified", "nothing proved the old channel's token yet"
        assert not await token_stored_in_clear(db, database_url, token)
    finally:
        await db.dispose()


async def test_0012_without_a_key_refuses_and_leaves_the_plaintext_database_as_it_was(
    database_url: str,
) -> None:
    db = await old_database(database_url, "0011", {"access_token": "EAAG-old"})
    try:
        with pytest.raises(SecretKeyError, match=r"migration 0012 .* has no key"):
            await upgrade(db)
        assert await versions(db) == ["0011"], "the failed upgrade rolled back whole"
    finally:
        await db.dispose()
