"""Campaigns on every store backend: never twice per recipient, funnels kept by triggers
that equal a recount whatever order statuses arrive in, replies within the window."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from wahub.domain.errors import ConflictError, ValidationError
from wahub.domain.status import Status
from wahub.features.campaigns import CampaignCreate, Campaigns
from wahub.features.conversations import InboundPolicy, record_inbound_sync
from wahub.providers.base import InboundMessage
from wahub.store import messages as q
from wahub.store.channels import get_channel_sync
from wahub.store.database import Database
from wahub.store.schema import campaign_recipients, campaign_stats, messages

if TYPE_CHECKING:
    from conftest import ContractEnv

TEMPLATES = [
    {"name": "promo_a", "language": "en", "weight": 1, "parameters": ["first_name"]},
    {"name": "promo_b", "language": "en", "weight": 1, "parameters": ["first_name"]},
]


async def setup_templates(env: ContractEnv) -> None:
    for name in ("promo_a", "promo_b"):
        await env.channels.add_template(
            env.channel_id, name=name, language="en", body_parameters=1, category="marketing"
        )


def audience(env: ContractEnv, n: int, start: int = 0) -> str:
    lines = ["phone,first_name"] + [f"{env.phone(i)},Name{i}" for i in range(start, start + n)]
    return "\n".join(lines) + "\n"


async def new_campaign(
    env: ContractEnv, n: int, *, templates: list[dict[str, Any]] | None = None, **kw: Any
) -> tuple[Campaigns, str]:
    campaigns = Campaigns(env.db, **kw)
    created = await campaigns.create(
        env.admin,
        CampaignCreate(name="spring", templates=templates or TEMPLATES),
        audience(env, n),
    )
    return campaigns, str(created.campaign["id"])


async def run_to_completion(campaigns: Campaigns, campaign_id: str) -> None:
    for _ in range(1000):
        result = await campaigns.dispatch_chunk(campaign_id)
        if result.state == "completed":
            return
    raise AssertionError("the campaign never completed")


async def campaign_messages(env: ContractEnv, campaign_id: str) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        rows = await conn.execute(select(messages).where(messages.c.campaign_id == campaign_id))
        return [dict(r._mapping) for r in rows]


async def test_a_double_start_and_two_racing_dispatchers_send_each_recipient_once(
    env: ContractEnv, database_url: str
) -> None:
    await setup_templates(env)
    first, campaign_id = await new_campaign(env, 120, chunk_size=7, max_backlog=10_000)
    other_db = Database(database_url, sqlite_synchronous="OFF")
    try:
        second = Campaigns(other_db, chunk_size=7, max_backlog=10_000)
        await asyncio.gather(
            first.act(env.admin, campaign_id, "start"), second.act(env.admin, campaign_id, "start")
        )

        async def drain(campaigns: Campaigns) -> None:
            while (await campaigns.get(campaign_id))["status"] == "running":
                await campaigns.dispatch_due()

        await asyncio.gather(drain(first), drain(second))
    finally:
        await other_db.dispose()

    sent_to = [m["chat_id"] for m in await campaign_messages(env, campaign_id)]
    assert len(sent_to) == 120, f"every recipient gets one message, got {len(sent_to)}"
    assert len(set(sent_to)) == 120, "no recipient gets two"
    stats = await first.stats(campaign_id)
    assert stats["totals"]["queued"] == 120
    assert (await first.get(campaign_id))["status"] == "completed"
    assert await first.verify(campaign_id) == []


async def test_the_split_follows_the_weights(env: ContractEnv) -> None:
    await setup_templates(env)
    weighted = [{**TEMPLATES[0], "weight": 3}, {**TEMPLATES[1], "weight": 1}]
    campaigns, campaign_id = await new_campaign(env, 40, templates=weighted)

    stats = await campaigns.stats(campaign_id)

    assert {t["template_name"]: t["total"] for t in stats["templates"]} == {
        "promo_a": 30,
        "promo_b": 10,
    }


async def test_starting_a_completed_campaign_is_a_conflict(env: ContractEnv) -> None:
    await setup_templates(env)
    campaigns, campaign_id = await new_campaign(env, 3)
    await campaigns.act(env.admin, campaign_id, "start")
    await run_to_completion(campaigns, campaign_id)

    with pytest.raises(ConflictError, match="cannot start a campaign that is completed"):
        await campaigns.act(env.admin, campaign_id, "start")


async def test_a_template_the_channel_does_not_know_is_refused_at_create(
    env: ContractEnv,
) -> None:
    with pytest.raises(ValidationError, match="not approved on channel"):
        await new_campaign(env, 3)


async def test_paused_campaigns_queue_nothing_until_resumed(env: ContractEnv) -> None:
    await setup_templates(env)
    campaigns, campaign_id = await new_campaign(env, 10, chunk_size=4)
    await campaigns.act(env.admin, campaign_id, "start")
    await campaigns.dispatch_chunk(campaign_id)
    await campaigns.act(env.admin, campaign_id, "pause")

    assert (await campaigns.dispatch_chunk(campaign_id)).queued == 0
    assert len(await campaign_messages(env, campaign_id)) == 4

    await campaigns.act(env.admin, campaign_id, "resume")
    await run_to_completion(campaigns, campaign_id)
    assert len(await campaign_messages(env, campaign_id)) == 10


async def test_opted_out_contacts_are_skipped_and_counted(env: ContractEnv) -> None:
    await setup_templates(env)
    campaigns, campaign_id = await new_campaign(env, 5)
    await inbound(env, env.person_chat(2), "STOP", time.time())
    await campaigns.act(env.admin, campaign_id, "start")
    await run_to_completion(campaigns, campaign_id)

    totals = (await campaigns.stats(campaign_id))["totals"]

    assert (totals["total"], totals["queued"], totals["skipped_opted_out"]) == (5, 4, 1)
    queued_to = {m["chat_id"] for m in await campaign_messages(env, campaign_id)}
    assert env.person_chat(2) not in queued_to
    assert await campaigns.verify(campaign_id) == []


async def inbound(env: ContractEnv, chat_id: str, text: str, at: float) -> None:
    message = InboundMessage(
        provider="cloudapi",
        provider_message_id=f"wamid.in.{random.random()}",
        chat_id=chat_id,
        timestamp=int(at),
        type="text",
        content={},
        text=text,
        sender_phone="+" + chat_id.split("@")[0],
    )

    def record(conn: Any) -> Any:
        channel = get_channel_sync(conn, env.channel_id)
        assert channel is not None
        return record_inbound_sync(conn, message, channel, InboundPolicy(), at)

    await env.db.write(record)


async def test_a_reply_within_the_window_counts_once_and_a_late_one_not_at_all(
    env: ContractEnv,
) -> None:
    await setup_templates(env)
    campaigns, campaign_id = await new_campaign(env, 3, reply_window_hours=1.0)
    await campaigns.act(env.admin, campaign_id, "start")
    await run_to_completion(campaigns, campaign_id)
    sent_at = (await campaign_messages(env, campaign_id))[0]["created_at"]

    await inbound(env, env.person_chat(0), "yes please", sent_at + 60)
    await inbound(env, env.person_chat(0), "and again", sent_at + 120)
    await inbound(env, env.person_chat(1), "too late", sent_at + 2 * 3600)

    totals = (await campaigns.stats(campaign_id))["totals"]
    assert totals["replied"] == 1, "one recipient replied in time, twice: counted once"
    assert await campaigns.verify(campaign_id) == []


STATUS_STEPS = [Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED]


async def test_counters_equal_a_recount_and_verify_detects_a_corrupted_counter(
    env: ContractEnv,
) -> None:
    await setup_templates(env)
    campaigns, campaign_id = await new_campaign(env, 6)
    await campaigns.act(env.admin, campaign_id, "start")
    await run_to_completion(campaigns, campaign_id)
    for i, m in enumerate(await campaign_messages(env, campaign_id)):
        await env.apply(q.ObservedStatus(f"wamid.{i}", STATUS_STEPS[i % 4], 1, m["id"]))
    assert await campaigns.verify(campaign_id) == []

    async with env.db.transaction() as conn:
        await conn.execute(
            update(campaign_stats)
            .where(campaign_stats.c.campaign_id == campaign_id)
            .values(delivered=campaign_stats.c.delivered + 1)
        )

    differences = await campaigns.verify(campaign_id)
    assert {d["counter"] for d in differences} == {"delivered"}, differences
    assert all(d["stored"] == d["recounted"] + 1 for d in differences)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plans=st.lists(
        st.lists(st.sampled_from(STATUS_STEPS), min_size=0, max_size=4), min_size=4, max_size=4
    ),
    seed=st.integers(0, 2**16),
)
async def test_the_funnel_is_the_same_for_shuffled_and_duplicated_statuses(
    env: ContractEnv, plans: list[list[Status]], seed: int
) -> None:
    if not (await env.channels.list_templates(env.channel_id)):
        await setup_templates(env)
    ordered = await funnel_after(env, plans, shuffle=None)
    shuffled = await funnel_after(env, plans, shuffle=random.Random(seed))

    assert shuffled == ordered, "order and duplicates must not change the funnel"
    assert ordered["queued"] >= ordered["sent"] >= ordered["delivered"] >= ordered["read"]
    assert await Campaigns(env.db).verify() == []


async def funnel_after(
    env: ContractEnv, plans: list[list[Status]], shuffle: random.Random | None
) -> dict[str, Any]:
    """Run a fresh campaign of len(plans) recipients, apply each message's statuses
    (shuffled and each delivered twice when ``shuffle``), return its totals."""
    campaigns = Campaigns(env.db)
    start = random.randrange(10**6)
    created = await campaigns.create(
        env.admin,
        CampaignCreate(name="p", templates=TEMPLATES),
        audience(env, len(plans), start=start),
    )
    campaign_id = str(created.campaign["id"])
    await campaigns.act(env.admin, campaign_id, "start")
    await run_to_completion(campaigns, campaign_id)
    rows = sorted(await campaign_messages(env, campaign_id), key=lambda m: m["chat_id"])
    observed = [
        q.ObservedStatus(f"wamid.{campaign_id}.{i}", status, step + 1, m["id"])
        for i, (m, plan) in enumerate(zip(rows, plans, strict=True))
        for step, status in enumerate(plan)
    ]
    if shuffle is not None:
        observed = observed * 2
        shuffle.shuffle(observed)
        for item in observed:  # one webhook at a time, as they may arrive
            await env.apply(item)
    else:
        await env.apply(*observed)
    totals = (await campaigns.stats(campaign_id))["totals"]
    return {k: v for k, v in totals.items() if k != "rates"}


async def test_recipients_are_unique_per_campaign_and_phone(env: ContractEnv) -> None:
    await setup_templates(env)
    campaigns = Campaigns(env.db)
    text = audience(env, 3) + f"{env.phone(1)},Again\n"
    created = await campaigns.create(env.admin, CampaignCreate(name="d", templates=TEMPLATES), text)

    assert created.accepted == 3
    assert [(e.line, e.code) for e in created.rejected] == [(5, "duplicate")]
    async with env.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(campaign_recipients))).scalar()
    assert count == 3
