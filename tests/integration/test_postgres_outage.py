"""PostgreSQL trouble as the database handle sees it: while the server is away (a
restart) every call raises ``StoreUnavailable`` (what the API turns into 503 and the
worker loops retry on), never a raw driver error, and the handle works again once the
server is back. A deadlock, which PostgreSQL resolves by aborting one transaction and
asking for it to be run again, is retryable the same way.

Before the fix, a pooled connection the server had closed, a connection refused with
"the database system is starting up" and a deadlock escaped as
``sqlalchemy.exc.DBAPIError``: the send worker's claim loop, which retries on
``WahubError``, died of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pgcluster import PostgresCluster
from wahub.domain.errors import StoreUnavailable
from wahub.store.database import Database


@pytest.fixture
async def db(restartable_postgres: PostgresCluster) -> AsyncIterator[Database]:
    database = Database(restartable_postgres.url)
    try:
        yield database
    finally:
        await database.dispose()


async def fill_pool(db: Database) -> None:
    """Open several pooled connections, as a busy process has."""

    async def one() -> None:
        async with db.read() as conn:
            await conn.execute(text("SELECT pg_sleep(0.05)"))

    await asyncio.gather(*(one() for _ in range(5)))


async def select_one(db: Database) -> int:
    async with db.transaction() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def test_calls_during_an_outage_raise_store_unavailable_and_work_once_it_is_over(
    db: Database, restartable_postgres: PostgresCluster
) -> None:
    await fill_pool(db)
    restartable_postgres.stop()
    try:
        # The pooled connections the server closed first, then refused connections.
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                await select_one(db)
        with pytest.raises(StoreUnavailable):
            async with db.read() as conn:
                await conn.execute(text("SELECT 1"))
        with pytest.raises(StoreUnavailable):
            await db.write(lambda conn: conn.execute(text("SELECT 1")))
    finally:
        restartable_postgres.start()
    assert await select_one(db) == 1, "the pool kept a connection the server had closed"


async def test_a_restart_between_two_calls_costs_at_most_one_store_unavailable(
    db: Database, restartable_postgres: PostgresCluster
) -> None:
    await fill_pool(db)
    restartable_postgres.stop()
    restartable_postgres.start()
    outcomes: list[str] = []
    for _ in range(4):
        try:
            await select_one(db)
            outcomes.append("ok")
        except StoreUnavailable:
            outcomes.append("unavailable")
    # The first call may meet a pooled connection the old server closed; the driver's
    # error then invalidates the whole pool, so the calls after it reconnect.
    assert outcomes[1:] == ["ok"] * 3, outcomes


async def test_a_bad_statement_is_not_mistaken_for_an_outage(db: Database) -> None:
    with pytest.raises(DBAPIError) as caught:
        await select_one_from(db, "no_such_table")
    assert not isinstance(caught.value, StoreUnavailable)


async def select_one_from(db: Database, table: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(text(f"SELECT 1 FROM {table}"))


async def test_a_deadlock_is_retryable_like_an_outage(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS deadlock_rows"))
        await conn.execute(text("CREATE TABLE deadlock_rows (id int PRIMARY KEY, n int)"))
        await conn.execute(text("INSERT INTO deadlock_rows VALUES (1, 0), (2, 0)"))
    both_hold_one = asyncio.Barrier(2)

    async def update_both(first: int, second: int) -> None:
        async with db.transaction() as conn:
            await conn.execute(text(f"UPDATE deadlock_rows SET n = n + 1 WHERE id = {first}"))
            await both_hold_one.wait()
            await conn.execute(text(f"UPDATE deadlock_rows SET n = n + 1 WHERE id = {second}"))

    outcomes = await asyncio.gather(update_both(1, 2), update_both(2, 1), return_exceptions=True)

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1, f"PostgreSQL aborts one of the two: {outcomes}"
    assert isinstance(errors[0], StoreUnavailable), repr(errors[0])
    assert "deadlock" in errors[0].message
