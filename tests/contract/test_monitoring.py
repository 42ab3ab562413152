"""What an operator sees (issue 14, point 10): per-channel queues, live workers and the
inbox backlog at ``/metrics``; ``/healthz`` degraded when a queue has no worker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store import channels as channel_q
from wahub.store import inbox as inbox_q
from wahub.store.schema import channels, inbox

if TYPE_CHECKING:
    from conftest import ContractEnv

THRESHOLD = 60.0


@pytest.fixture
async def client(env: ContractEnv, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the contract database (``env`` migrated it and added channel main)."""
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        run_workers=False,
        stalled_queue_seconds=THRESHOLD,
    )
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://wahub.test") as c:
            yield c
    finally:
        await hub.stop()


async def lease(env: ContractEnv, channel_id: str, owner: str | None, until: float) -> None:
    async with env.db.transaction() as conn:
        await conn.execute(
            update(channels)
            .where(channels.c.id == channel_id)
            .values(lease_owner=owner, lease_until=until)
        )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_show_each_channels_queue_the_live_workers_and_the_inbox(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    idle = await env.add_channel("idle")
    for age in (300.0, 200.0, 100.0):
        await env.insert_queued(env.person_chat(int(age)), created_at=now - age)
    # Sent messages are no queue: they must not count.
    await env.insert_queued(env.person_chat(9), status="sent", created_at=now - 900)
    await lease(env, env.channel_id, "worker-1", now + 60)
    async with env.db.transaction() as conn:
        await inbox_q.store_delivery(
            conn, provider="cloudapi", dedupe_key="a", headers={}, body=b"{}", now=now - 50
        )
        await inbox_q.store_delivery(
            conn, provider="cloudapi", dedupe_key="b", headers={}, body=b"{}", now=now - 10
        )
        dead = (await conn.execute(select(inbox.c.id).where(inbox.c.dedupe_key == "b"))).scalar()
        await inbox_q.mark_failed(conn, dead, error="bad", now=now, retry_at=None)

    response = await client.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    main = (("channel", "main"), ("channel_id", env.channel_id))
    other = (("channel", "idle"), ("channel_id", idle))
    assert got[("wahub_channel_queue_depth", main)] == 3
    assert got[("wahub_channel_queue_depth", other)] == 0
    oldest = got[("wahub_channel_oldest_queued_age_seconds", main)]
    assert 300 <= oldest < 3600, f"the oldest queued message is 300 s old, got {oldest}"
    assert got[("wahub_channel_oldest_queued_age_seconds", other)] == 0
    assert got[("wahub_channel_leased", main)] == 1
    assert got[("wahub_channel_leased", other)] == 0
    assert got[("wahub_workers_live", ())] == 1
    assert got[("wahub_inbox_backlog", ())] == 1, "one delivery pending, one dead"
    assert 50 <= got[("wahub_inbox_oldest_pending_age_seconds", ())] < 3600
    assert got[("wahub_inbox_dead_letters", ())] == 1


async def test_a_removed_lease_and_an_emptied_queue_read_zero_on_the_next_scrape(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    await env.insert_queued(env.person_chat(1), created_at=now - 30)
    async with env.db.transaction() as conn:
        await channel_q.acquire_channel_leases(conn, owner="w", now=now, lease_seconds=60)
    first = samples((await client.get("/metrics")).text)
    main = (("channel", "main"), ("channel_id", env.channel_id))
    assert (first[("wahub_channel_queue_depth", main)], first[("wahub_workers_live", ())]) == (1, 1)
    async with env.db.transaction() as conn:
        await channel_q.release_channel_leases(conn, owner="w", now=now)
        await conn.execute(update(channels).values(name="renamed"))
    await env.insert_queued(env.person_chat(2), status="sent")
    second = samples((await client.get("/metrics")).text)
    assert second[("wahub_workers_live", ())] == 0
    assert ("wahub_channel_queue_depth", main) not in second, "the old name's series is gone"
    renamed = (("channel", "renamed"), ("channel_id", env.channel_id))
    assert second[("wahub_channel_leased", renamed)] == 0


async def test_health_is_degraded_naming_the_channel_whose_queue_has_no_worker(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    await env.insert_queued(env.person_chat(1), created_at=now - 2 * THRESHOLD)
    response = await client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, "degraded is not unready: the API still takes messages"
    assert body["status"] == "degraded", body
    assert "channel main" in body["reasons"][0], body
    assert "1 queued" in body["reasons"][0], body
    [stalled] = body["queues"]["stalled_channels"]
    assert (stalled["channel_id"], stalled["queued"]) == (env.channel_id, 1)
    assert stalled["unattended_seconds"] > THRESHOLD


async def test_health_is_ok_while_a_worker_holds_the_channel_of_an_old_queue(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    await env.insert_queued(env.person_chat(1), created_at=now - 10 * THRESHOLD)
    await lease(env, env.channel_id, "worker-1", now + 60)
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok"}


async def test_health_gives_a_worker_that_just_stopped_the_threshold_before_degrading(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    await env.insert_queued(env.person_chat(1), created_at=now - 10 * THRESHOLD)
    # Released a few seconds ago (a restart): another worker has time to take over.
    await lease(env, env.channel_id, None, now - 5)
    assert (await client.get("/healthz")).json()["status"] == "ok"
    await lease(env, env.channel_id, None, now - 2 * THRESHOLD)
    assert (await client.get("/healthz")).json()["status"] == "degraded"


async def test_health_is_ok_for_a_queue_younger_than_the_threshold(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    await env.insert_queued(env.person_chat(1))
    assert (await client.get("/healthz")).json()["status"] == "ok"
