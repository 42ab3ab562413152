"""The replication log on every store backend: each replicated table's insert, update and
delete appends a change in the writer's transaction (a rolled-back write appends
nothing), carrying the row as it is, without the outbox's bookkeeping columns."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from wahub.store.changelog import Change, read_changes_sync
from wahub.store.schema import (
    campaign_stats,
    campaigns,
    chats,
    contacts,
    conversations,
    leads,
    message_events,
    messages,
)

GROUP = "120363000000000555@g.us"


async def log_after(env: Any, seq: int = 0) -> list[Change]:
    async with env.db.read() as conn:
        return await conn.run_sync(
            lambda c: read_changes_sync(c, after=seq, upto=None, limit=10_000)
        )


async def head(env: Any) -> int:
    changes = await log_after(env)
    return changes[-1].seq if changes else 0


async def write(env: Any, *statements: Any) -> None:
    async with env.db.transaction() as conn:
        for statement in statements:
            await conn.execute(statement)


def a_campaign(env: Any, now: float) -> Any:
    """The campaign ``cp_1`` that the counter rows below belong to."""
    return insert(campaigns).values(
        id="cp_1",
        name="c",
        channel_id=env.channel_id,
        status="scheduled",
        templates=[],
        audience_source="csv",
        reply_window_seconds=60.0,
        created_at=now,
        updated_at=now,
    )


def rows_for_every_table(env: Any, now: float) -> list[tuple[str, Any]]:
    """(table, INSERT) of one row for each replicated table, in dependency order."""
    return [
        ("chats", insert(chats).values(chat_id=GROUP, kind="group", name="Ops", created_at=now)),
        (
            "contacts",
            insert(contacts).values(
                id="ct_1", phone="+4915100000001", name="Ana", created_at=now, updated_at=now
            ),
        ),
        (
            "leads",
            insert(leads).values(
                id="ld_1", contact_id="ct_1", status="new", created_at=now, updated_at=now
            ),
        ),
        (
            "conversations",
            insert(conversations).values(
                id="cv_1",
                channel_id=env.channel_id,
                chat_id=GROUP,
                contact_id="ct_1",
                lead_id="ld_1",
                created_at=now,
                updated_at=now,
            ),
        ),
        (
            "campaign_stats",
            insert(campaign_stats).values(campaign_id="cp_1", template_name="hello", total=3),
        ),
    ]


async def test_every_replicated_table_logs_its_insert_in_the_same_transaction(env: Any) -> None:
    before = await head(env)
    now = time.time()
    await write(env, a_campaign(env, now))
    statements = rows_for_every_table(env, now)
    await write(env, *(s for _, s in statements))
    message = await env.insert_queued(GROUP)
    await write(
        env,
        insert(message_events).values(
            message_id=message["id"], status="failed", source="operator", recorded_at=now
        ),
    )

    logged = await log_after(env, before)

    inserted = {c.table for c in logged if c.op == "insert"}
    expected = {name for name, _ in statements} | {"messages", "message_events"}
    assert expected <= inserted, f"tables whose insert was not logged: {expected - inserted}"
    by_table = {c.table: c for c in logged if c.op == "insert"}
    assert by_table["chats"].key == GROUP
    assert by_table["chats"].chat_id == GROUP
    assert by_table["campaign_stats"].key == "cp_1|hello"
    assert by_table["message_events"].chat_id == GROUP, "events are ordered with their chat"
    assert by_table["messages"].data["id"] == message["id"]
    txids = {c.txid for c in logged if c.table in ("chats", "contacts", "leads")}
    assert len(txids) == 1, "one transaction's changes share its id (None on SQLite)"


async def test_a_rolled_back_transaction_logs_nothing(env: Any) -> None:
    before = await head(env)
    now = time.time()

    async def write_then_give_up() -> None:
        async with env.db.transaction() as conn:
            for _, statement in rows_for_every_table(env, now)[:4]:
                await conn.execute(statement)
            raise RuntimeError("the caller gives up")

    with pytest.raises(RuntimeError):
        await write_then_give_up()

    assert await log_after(env, before) == []


async def test_an_update_logs_the_new_row_and_a_delete_the_old_one(env: Any) -> None:
    now = time.time()
    await write(env, *(s for _, s in rows_for_every_table(env, now)[:2]))
    before = await head(env)

    await write(env, update(chats).where(chats.c.chat_id == GROUP).values(name="Ops EU"))
    await write(env, update(contacts).where(contacts.c.id == "ct_1").values(opted_out_at=now))
    await write(env, delete(contacts).where(contacts.c.id == "ct_1"))

    logged = [(c.table, c.op) for c in await log_after(env, before)]
    assert logged == [("chats", "update"), ("contacts", "update"), ("contacts", "delete")]
    changes = await log_after(env, before)
    assert changes[0].data["name"] == "Ops EU"
    assert changes[2].data["opted_out_at"] == now, "a delete carries the row it removed"


async def test_outbox_bookkeeping_alone_logs_nothing(env: Any) -> None:
    message = await env.insert_queued(GROUP)
    before = await head(env)

    await write(
        env,
        update(messages)
        .where(messages.c.id == message["id"])
        .values(lease_owner="w1", lease_until=time.time() + 30, next_attempt_at=time.time() + 5),
    )
    assert await log_after(env, before) == [], "a lease is not news for the replicas"

    await write(
        env, update(messages).where(messages.c.id == message["id"]).values(status="sending")
    )
    changes = await log_after(env, before)
    assert [(c.table, c.op, c.data["status"]) for c in changes] == [
        ("messages", "update", "sending")
    ]
    assert "lease_owner" not in changes[0].data
    assert "idempotency_key" not in changes[0].data


async def test_logged_rows_carry_exact_values(env: Any) -> None:
    """Unix times to the microsecond, JSON nested, booleans as booleans: the replicas
    compare equal to the source."""
    message = await env.insert_queued(GROUP, created_at=1767225600.123456)
    now = 1767225601.654321
    await write(
        env,
        insert(chats).values(
            chat_id=GROUP, kind="group", name="Ops", readonly=True, created_at=now
        ),
    )

    changes = await log_after(env)
    logged_message = next(c for c in changes if c.table == "messages").data
    logged_chat = next(c for c in changes if c.table == "chats").data
    async with env.db.read() as conn:
        stored = (await conn.execute(select(messages).where(messages.c.id == message["id"]))).one()

    assert logged_message["created_at"] == 1767225600.123456
    assert logged_message["content"] == stored._mapping["content"]
    assert logged_chat["readonly"] is True
    assert logged_chat["is_active"] is True
    assert logged_chat["created_at"] == now


async def test_a_counter_row_moved_many_times_in_one_transaction_logs_its_last_state(
    env: Any,
) -> None:
    """A webhook batch moves a campaign's counter row once per status. The states in
    between were never visible outside the transaction: on PostgreSQL the log carries
    the row once, as committed; on SQLite (no deferred triggers) every move, the last
    one as committed. Either way a replica that keeps the newest ends equal."""
    now = time.time()
    await write(env, a_campaign(env, now), rows_for_every_table(env, now)[4][1])
    before = await head(env)
    stats = campaign_stats.c

    def bump(sent: int) -> Any:
        key = (stats.campaign_id == "cp_1") & (stats.template_name == "hello")
        return update(campaign_stats).where(key).values(sent=sent)

    await write(env, *(bump(n) for n in range(1, 6)))
    await write(env, bump(7), delete(campaign_stats).where(stats.campaign_id == "cp_1"))

    logged = [(c.op, c.data["sent"]) for c in await log_after(env, before)]
    if env.db.is_sqlite:
        assert logged == [*(("update", n) for n in range(1, 6)), ("update", 7), ("delete", 7)]
    else:
        # The update that a delete followed in its transaction is not logged: the
        # delete carries the row it removed.
        assert logged == [("update", 5), ("delete", 7)]
