"""Batched writes: many callers' items in one transaction, each caller answered only
after the commit that holds its item, and one bad item failing only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.pipeline.intake import WebhookIntake
from wahub.store import inbox as inbox_q
from wahub.store.batching import WriteBatcher
from wahub.store.database import Database
from wahub.store.schema import inbox, users


def add_users(conn: SyncConnection, names: Sequence[str]) -> list[str]:
    conn.execute(users.insert(), [{"id": f"usr_{n}", "name": n, "created_at": 0.0} for n in names])
    return [f"usr_{n}" for n in names]


async def user_names(db: Database) -> list[str]:
    async with db.read() as conn:
        return sorted(r.name for r in await conn.execute(select(users.c.name)))


async def test_concurrent_items_are_written_together_and_each_gets_its_result(
    db: Database,
) -> None:
    batcher: WriteBatcher[str, str] = WriteBatcher(db, add_users)
    names = [f"u{i:03d}" for i in range(300)]
    results = await asyncio.gather(*(batcher.submit(n) for n in names))
    assert results == [f"usr_{n}" for n in names]
    assert await user_names(db) == names
    assert batcher.batches < len(names) / 10, "items that arrive together share a batch"


async def test_an_item_that_spoils_its_batch_fails_only_its_own_caller(db: Database) -> None:
    await WriteBatcher(db, add_users).submit("taken")
    batcher: WriteBatcher[str, str] = WriteBatcher(db, add_users)
    names = ["a", "b", "taken", "c"]  # "taken" violates the primary key
    results = await asyncio.gather(*(batcher.submit(n) for n in names), return_exceptions=True)
    assert results[:2] == ["usr_a", "usr_b"]
    assert results[3] == "usr_c"
    assert isinstance(results[2], Exception), "the duplicate's caller gets the error"
    assert await user_names(db) == ["a", "b", "c", "taken"]


async def test_a_cancelled_caller_does_not_stop_the_others(db: Database) -> None:
    batcher: WriteBatcher[str, str] = WriteBatcher(db, add_users)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in ("x", "y", "z")]
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert done[0] == "usr_x"
    assert done[2] == "usr_z"
    assert isinstance(done[1], asyncio.CancelledError)


@pytest.mark.parametrize("concurrent", [1, 50])
async def test_webhook_intake_stores_each_delivery_once(db: Database, concurrent: int) -> None:
    intake = WebhookIntake(db)
    keys = [f"{i % 20:064d}" for i in range(concurrent * 3)]  # every key several times
    stored = await asyncio.gather(
        *(intake.store(provider="cloudapi", dedupe_key=k, headers={}, body=b"{}") for k in keys)
    )
    unique = len(set(keys))
    assert sum(stored) == unique, "exactly one caller per distinct delivery hears 'stored'"
    again = await intake.store(provider="cloudapi", dedupe_key=keys[0], headers={}, body=b"{}")
    assert again is False, "a provider retry of a stored delivery is a duplicate"
    async with db.read() as conn:
        rows = list(await conn.execute(select(inbox.c.dedupe_key, inbox.c.status)))
    assert len(rows) == unique
    assert {r.status for r in rows} == {"pending"}


async def test_store_deliveries_reports_duplicates_within_and_across_batches(
    db: Database,
) -> None:
    def delivery(key: str) -> inbox_q.NewDelivery:
        return inbox_q.NewDelivery("cloudapi", key, {"content-type": "x"}, b"{}", 1.0)

    async with db.transaction() as conn:
        first = await conn.run_sync(
            inbox_q.store_deliveries_sync, [delivery("a"), delivery("b"), delivery("a")]
        )
    async with db.transaction() as conn:
        second = await conn.run_sync(inbox_q.store_deliveries_sync, [delivery("b"), delivery("c")])
    assert first == [True, True, False]
    assert second == [False, True]
