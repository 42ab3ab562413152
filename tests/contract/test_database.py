"""The database handle itself: group-committed writes and concurrent reads."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select, text

from wahub.store.database import Database
from wahub.store.schema import users


def insert_user(name: str) -> object:
    def unit(conn: SyncConnection) -> str:
        conn.execute(users.insert(), {"id": f"usr_{name}", "name": name, "created_at": 0.0})
        return name

    return unit


def failing_after_insert(conn: SyncConnection) -> None:
    conn.execute(users.insert(), {"id": "usr_doomed", "name": "doomed", "created_at": 0.0})
    raise RuntimeError("this unit fails after writing")


async def user_names(db: Database) -> set[str]:
    async with db.read() as conn:
        return {r.name for r in await conn.execute(select(users.c.name))}


async def test_concurrent_writes_all_commit_and_each_caller_gets_its_own_result(
    db: Database,
) -> None:
    names = [f"user{i}" for i in range(200)]
    results = await asyncio.gather(*(db.write(insert_user(n)) for n in names))  # type: ignore[arg-type]
    assert results == names, "each caller receives the value its own unit returned"
    assert await user_names(db) == set(names), "every unit's row is committed"


async def test_a_failing_unit_rolls_back_only_itself_and_raises_to_its_own_caller(
    db: Database,
) -> None:
    outcomes = await asyncio.gather(
        db.write(insert_user("before")),  # type: ignore[arg-type]
        db.write(failing_after_insert),
        db.write(insert_user("after")),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert outcomes[0] == "before"
    assert isinstance(outcomes[1], RuntimeError), "the failure reaches the caller that caused it"
    assert outcomes[2] == "after"
    assert await user_names(db) == {"before", "after"}, "the failed unit's insert is rolled back"


async def test_a_constraint_violation_fails_one_unit_not_the_batch(db: Database) -> None:
    await db.write(insert_user("taken"))  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        db.write(insert_user("taken")),  # type: ignore[arg-type]
        db.write(insert_user("free")),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Exception), "the duplicate name is refused"
    assert outcomes[1] == "free"
    async with db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    assert count == 2


async def test_many_more_concurrent_reads_than_connections_do_not_deadlock(db: Database) -> None:
    # Each read runs two statements on its connection. With more readers than pooled
    # connections, a reader must not block a thread while waiting for a connection, or
    # the holders could never run their second statement.
    async def read_twice() -> int:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.001)
            return int((await conn.execute(text("SELECT 2"))).scalar_one())

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(read_twice() for _ in range(64)))
    assert results == [2] * 64


@pytest.mark.parametrize("bad_url", ["mysql://localhost/x", "not a url at all"])
def test_an_unsupported_or_malformed_url_is_a_one_line_error(bad_url: str) -> None:
    from wahub.domain.errors import StoreUnavailable

    with pytest.raises(StoreUnavailable) as caught:
        Database(bad_url)
    assert "\n" not in caught.value.message


async def test_a_cancelled_read_closes_its_connection_only_after_the_running_statement(
    db: Database,
) -> None:
    # Cancelling the awaiting task does not stop work already running on a thread. The
    # connection used to be rolled back and handed back to the pool from another thread
    # meanwhile, so the running work continued on a closed connection, or on one the
    # pool had given to the next reader: two threads on one sqlite3 connection crashed
    # the process (a segfault when the realtime tail was cancelled at shutdown).
    if not db.is_sqlite:
        pytest.skip("reads run on threads only on SQLite")
    outcome: list[object] = []

    def slow(conn: SyncConnection) -> None:
        time.sleep(0.3)  # cancelled meanwhile
        try:
            outcome.append(conn.execute(select(func.count()).select_from(users)).scalar())
        except Exception as exc:
            outcome.append(exc)

    async def slow_read() -> None:
        async with db.read() as conn:
            await conn.run_sync(slow)

    task = asyncio.create_task(slow_read())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(users))).scalar() == 0
    assert outcome == [0], "the work in flight finished on its own, still open connection"


async def test_read_one_runs_a_whole_read_and_reports_errors(db: Database) -> None:
    def two_queries(conn: SyncConnection) -> tuple[int, int]:
        a = conn.execute(text("SELECT 1")).scalar_one()
        b = conn.execute(text("SELECT 2")).scalar_one()
        return int(a), int(b)

    assert await db.read_one(two_queries) == (1, 2)

    def broken(conn: SyncConnection) -> None:
        conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception, match="no_such_table"):
        await db.read_one(broken)
    # Many at once (more than there are read connections): none waits forever.
    results = await asyncio.gather(*(db.read_one(two_queries) for _ in range(50)))
    assert results == [(1, 2)] * 50


async def test_transactions_still_roll_back_on_connections_read_one_used(db: Database) -> None:
    """``read_one`` runs outside a transaction on PostgreSQL; the pooled connection it
    used must come back transactional, or a failed unit's insert would stay."""
    for _ in range(20):  # more than the pool holds: every connection has served read_one
        await asyncio.gather(
            *(db.read_one(lambda conn: conn.execute(text("SELECT 1")).scalar()) for _ in range(25))
        )
        with pytest.raises(RuntimeError):
            await db.write(failing_after_insert)
    assert "doomed" not in await user_names(db)
