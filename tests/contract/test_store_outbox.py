"""The outbox queue contract: claims, leases, outcomes (DESIGN.md invariants 2, 4 and 6)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from wahub.domain.status import Status
from wahub.providers.registry import echoes_tracking_id
from wahub.store import messages as q
from wahub.store.schema import messages

if TYPE_CHECKING:
    from conftest import ContractEnv

A, B, C = 1, 2, 3  # chat numbers, see ContractEnv.person_chat


def ids(rows: list[dict[str, object]]) -> list[object]:
    return [r["id"] for r in rows]


# --- claiming ----------------------------------------------------------------------------


async def test_claim_takes_only_the_oldest_message_of_a_chat(env: ContractEnv) -> None:
    first = await env.send_text(env.phone(A), "1")
    await env.send_text(env.phone(A), "2")
    await env.send_text(env.phone(A), "3")

    claimed = await env.claim()

    assert ids(claimed) == [first["id"]], "one chat must have at most one message in flight"


async def test_claim_takes_the_head_of_every_chat(env: ContractEnv) -> None:
    a1 = await env.send_text(env.phone(A), "a1")
    b1 = await env.send_text(env.phone(B), "b1")
    await env.send_text(env.phone(A), "a2")
    await env.send_text(env.phone(B), "b2")

    claimed = await env.claim()

    assert ids(claimed) == [a1["id"], b1["id"]], "each chat's oldest message, in sequence order"


async def test_claim_leases_the_message_but_leaves_it_queued(env: ContractEnv) -> None:
    sent = await env.send_text(env.phone(A))
    now = time.time() + 1

    await env.claim_only(owner="worker-x", now=now, lease_seconds=20)

    stored = await env.message(sent["id"])
    assert (stored["status"], stored["lease_owner"], stored["attempts"]) == (
        "queued",
        "worker-x",
        0,
    ), "a claim only leases: nothing has been handed to the provider yet"
    assert stored["lease_until"] == now + 20
    assert [e["status"] for e in await env.events(sent["id"])] == ["queued"]


async def test_start_moves_a_claimed_message_to_sending_and_counts_an_attempt(
    env: ContractEnv,
) -> None:
    sent = await env.send_text(env.phone(A))
    now = time.time() + 1
    await env.claim_only(owner="worker-x", now=now, lease_seconds=20)

    started = await env.start([sent["id"]], owner="worker-x", now=now + 5, lease_seconds=20)

    assert started == {sent["id"]: 1}
    stored = await env.message(sent["id"])
    assert (stored["status"], stored["lease_owner"], stored["attempts"]) == (
        "sending",
        "worker-x",
        1,
    )
    assert (stored["sending_at"], stored["lease_until"]) == (now + 5, now + 25), (
        "the request's lease runs from its start, not from the claim"
    )
    assert [e["status"] for e in await env.events(sent["id"])] == ["queued", "sending"]


async def test_claimed_message_is_not_claimed_again_while_its_lease_lives(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    await env.send_text(env.phone(A))
    await env.claim_only(owner="worker-a", now=now, lease_seconds=30)

    assert await env.claim_only(owner="worker-b", now=now + 29) == []


async def test_claim_that_lapses_before_its_send_started_stays_queued_in_its_place(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    a1 = await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(A), "a2")
    await env.claim_only(owner="worker-a", now=now, lease_seconds=30)

    async with env.db.transaction() as conn:
        expired = await q.expire_leases(conn, now + 31)

    assert expired == [], "a worker killed while pacing had sent nothing: nothing is uncertain"
    assert await env.status(a1["id"]) == "queued"
    claimed = await env.claim_only(owner="worker-b", now=now + 31)
    assert [(r["id"], r["attempts"]) for r in claimed] == [(a1["id"], 0)], (
        "the head of the chat is claimed again, before a2, with no attempt used"
    )


async def test_start_refuses_a_claim_another_worker_took_over(env: ContractEnv) -> None:
    now = time.time() + 1
    sent = await env.send_text(env.phone(A))
    await env.claim_only(owner="worker-a", now=now, lease_seconds=30)
    await env.claim_only(owner="worker-b", now=now + 31)

    assert await env.start([sent["id"]], owner="worker-a", now=now + 32) == {}, (
        "worker-a's lease lapsed and worker-b holds the message: worker-a must not send it"
    )
    stored = await env.message(sent["id"])
    assert (stored["status"], stored["lease_owner"]) == ("queued", "worker-b")


async def test_start_refuses_a_message_already_started(env: ContractEnv) -> None:
    sent = await env.send_text(env.phone(A))
    await env.claim()

    assert await env.start([sent["id"]]) == {}, "a second start would be a second request"
    assert (await env.message(sent["id"]))["attempts"] == 1


async def test_start_takes_many_claimed_messages_at_once(env: ContractEnv) -> None:
    rows = [await env.send_text(env.phone(chat)) for chat in (A, B, C)]
    await env.claim_only()

    started = await env.start([r["id"] for r in rows])

    assert started == {r["id"]: 1 for r in rows}


async def test_second_claim_skips_a_chat_whose_head_is_sending(env: ContractEnv) -> None:
    await env.send_text(env.phone(A), "a1")
    await env.claim()
    await env.send_text(env.phone(A), "a2")
    b1 = await env.send_text(env.phone(B), "b1")

    claimed = await env.claim(owner="worker-b")

    assert ids(claimed) == [b1["id"]], "chat A is busy (a1 sending); only chat B's head is due"


async def test_sent_outcome_makes_the_next_message_of_the_chat_claimable(env: ContractEnv) -> None:
    a1 = await env.send_text(env.phone(A), "a1")
    a2 = await env.send_text(env.phone(A), "a2")
    await env.claim()

    await env.record(q.SendOutcome(a1["id"], 1, "sent", "wamid.a1"))

    assert ids(await env.claim()) == [a2["id"]]


async def test_nothing_is_claimed_while_the_chat_head_is_sending(env: ContractEnv) -> None:
    await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(A), "a2")
    await env.claim()

    assert await env.claim() == []


async def test_retry_in_the_future_holds_its_chat_but_not_others(env: ContractEnv) -> None:
    now = time.time() + 1
    a1 = await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(A), "a2")
    await env.claim(now=now)
    await env.record(
        q.SendOutcome(a1["id"], 1, "retry", next_attempt_at=now + 100, error_code="131000"),
        now=now,
    )
    b1 = await env.send_text(env.phone(B), "b1")

    claimed = await env.claim(now=now + 1)

    assert ids(claimed) == [b1["id"]], "a2 must wait behind a1's retry; chat B is unaffected"
    assert (await env.message(a1["id"]))["status"] == "queued"


async def test_retry_becomes_claimable_when_due_with_a_second_attempt(env: ContractEnv) -> None:
    now = time.time() + 1
    a1 = await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(A), "a2")
    await env.claim(now=now)
    await env.record(q.SendOutcome(a1["id"], 1, "retry", next_attempt_at=now + 100), now=now)

    claimed = await env.claim(now=now + 100)

    assert [(r["id"], r["attempts"]) for r in claimed] == [(a1["id"], 2)]


async def test_permanently_failed_head_releases_the_chat(env: ContractEnv) -> None:
    a1 = await env.send_text(env.phone(A), "a1")
    a2 = await env.send_text(env.phone(A), "a2")
    await env.claim()

    await env.record(q.SendOutcome(a1["id"], 1, "failed", error_code="131026"))

    assert (await env.message(a1["id"]))["status"] == "failed"
    assert ids(await env.claim()) == [a2["id"]], "one failure must not stall the chat"


async def test_claim_prefers_higher_priority_across_chats(env: ContractEnv) -> None:
    await env.send_text(env.phone(A), "low")
    urgent = await env.send_text(env.phone(B), "urgent", priority=5)

    assert ids(await env.claim(limit=1)) == [urgent["id"]]


async def test_claim_breaks_priority_ties_by_sequence(env: ContractEnv) -> None:
    a1 = await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(B), "b1")

    assert ids(await env.claim(limit=1)) == [a1["id"]]


async def test_priority_does_not_overtake_within_a_chat(env: ContractEnv) -> None:
    a1 = await env.send_text(env.phone(A), "normal")
    await env.send_text(env.phone(A), "urgent", priority=10)

    assert ids(await env.claim()) == [a1["id"]], "chat order beats priority"


async def test_claim_honours_the_limit(env: ContractEnv) -> None:
    for chat in (A, B, C):
        await env.send_text(env.phone(chat))

    assert len(await env.claim(limit=2)) == 2
    assert len(await env.claim(limit=2)) == 1, "only the third chat's head is left"


async def test_claim_with_zero_limit_or_no_channels_claims_nothing(env: ContractEnv) -> None:
    await env.send_text(env.phone(A))

    assert await env.claim(limit=0) == []
    async with env.db.transaction() as conn:
        none = await q.claim_due_messages(
            conn, channel_ids=[], owner="w", now=time.time() + 1, lease_seconds=30, limit=10
        )
    assert none == []


async def test_claim_only_takes_messages_of_the_given_channels(env: ContractEnv) -> None:
    other = await env.add_channel("other")
    mine = await env.send_text(env.phone(A), channel_id=env.channel_id)
    theirs = await env.send_text(env.phone(A), channel_id=other)

    assert ids(await env.claim(channel_ids=[env.channel_id])) == [mine["id"]]
    assert ids(await env.claim(channel_ids=[other])) == [theirs["id"]], (
        "the same chat on another channel is another ordering key"
    )


async def test_claim_skips_messages_not_yet_due(env: ContractEnv) -> None:
    now = time.time()
    await env.insert_queued(env.person_chat(A), next_attempt_at=now + 60)

    assert await env.claim(now=now) == []


# --- leases and uncertain sends ----------------------------------------------------------


async def test_expired_lease_turns_sending_into_uncertain_with_an_event(env: ContractEnv) -> None:
    now = time.time() + 1
    sent = await env.send_text(env.phone(A))
    await env.claim(now=now, lease_seconds=30)

    async with env.db.transaction() as conn:
        changes = await q.expire_leases(conn, now + 31)

    assert [(c.message_id, c.previous, c.status) for c in changes] == [
        (sent["id"], "sending", "uncertain")
    ]
    stored = await env.message(sent["id"])
    assert (stored["status"], stored["lease_owner"]) == ("uncertain", None)
    last = (await env.events(sent["id"]))[-1]
    assert (last["status"], last["source"], last["error_code"]) == (
        "uncertain",
        "lease",
        "lease_expired",
    )


async def test_live_lease_is_not_expired(env: ContractEnv) -> None:
    now = time.time() + 1
    sent = await env.send_text(env.phone(A))
    await env.claim(now=now, lease_seconds=30)

    async with env.db.transaction() as conn:
        assert await q.expire_leases(conn, now + 29) == []
    assert (await env.message(sent["id"]))["status"] == "sending"


async def test_uncertain_message_holds_its_chat(env: ContractEnv) -> None:
    now = time.time() + 1
    await env.send_text(env.phone(A), "a1")
    await env.send_text(env.phone(A), "a2")
    await env.claim(now=now)
    async with env.db.transaction() as conn:
        await q.expire_leases(conn, now + 31)

    assert await env.claim(now=now + 32) == [], "a2 must not overtake a1 that may be sent"


async def _make_uncertain(env: ContractEnv, now: float, channel_id: str | None = None) -> str:
    sent = await env.send_text(env.phone(A), channel_id=channel_id)
    await env.claim(now=now, channel_ids=[channel_id or env.channel_id])
    async with env.db.transaction() as conn:
        await q.expire_leases(conn, now + 31)
    return str(sent["id"])


async def _whapi_channel(env: ContractEnv) -> str:
    channel = await env.channels.create(
        name="whapi", kind="whapi", access_token="t", enforce_service_window=False
    )
    return str(channel["id"])


async def _settle(
    env: ContractEnv, now: float, *, policy: str = "fail", max_attempts: int = 5
) -> list[q.StatusChange]:
    async with env.db.transaction() as conn:
        return await q.settle_uncertain(
            conn,
            now=now,
            grace_seconds=60,
            policy=policy,
            max_attempts=max_attempts,
            echoes=echoes_tracking_id,
        )


async def test_settle_uncertain_resends_where_the_provider_echoes_our_id_whatever_the_policy(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now)  # a Cloud API channel

    await _settle(env, now + 100, policy="fail")

    assert await env.status(message_id) == "queued", (
        "no status echoing our id within the grace period: the send did not go out"
    )
    assert ids(await env.claim(now=now + 101)) == [message_id]


async def test_settle_uncertain_with_policy_fail_fails_where_the_provider_echoes_nothing(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now, await _whapi_channel(env))

    await _settle(env, now + 100, policy="fail")

    stored = await env.message(message_id)
    assert (stored["status"], stored["error_code"]) == ("failed", "uncertain_timeout")
    assert stored["error_title"], "the failure must explain itself to an operator"
    assert "do not carry our message id" in stored["error_detail"], (
        "the reason says why silence settled nothing here"
    )


async def test_settle_uncertain_with_policy_resend_queues_again_where_nothing_is_echoed(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now, await _whapi_channel(env))

    await _settle(env, now + 100, policy="resend")

    assert await env.status(message_id) == "queued"


async def test_settle_uncertain_resend_fails_when_attempts_are_exhausted(env: ContractEnv) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now)

    await _settle(env, now + 100, policy="resend", max_attempts=1)

    stored = await env.message(message_id)
    assert (stored["status"], stored["error_code"]) == ("failed", "uncertain_timeout")


async def test_settle_uncertain_waits_for_the_grace_period(env: ContractEnv) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now)

    changes = await _settle(env, now + 40)

    assert changes == []
    assert await env.status(message_id) == "uncertain", "a webhook may still settle it"


# --- outcomes from a worker that lost its lease ------------------------------------------


async def _taken_over(env: ContractEnv, now: float) -> str:
    """A message claimed by worker-a, whose lease expired, resent and now leased to worker-b."""
    message_id = await _make_uncertain(env, now)
    await _settle(env, now + 100)
    (row,) = await env.claim(owner="worker-b", now=now + 101)
    assert row["id"] == message_id
    return message_id


async def test_stale_worker_retry_failed_and_uncertain_outcomes_are_ignored(
    env: ContractEnv,
) -> None:
    now = time.time() + 1
    message_id = await _taken_over(env, now)
    events_before = len(await env.events(message_id))

    for kind in ("retry", "failed", "uncertain", "defer"):
        changes = await env.record(
            q.SendOutcome(message_id, 1, kind, next_attempt_at=now + 500, error_code="x"),
            owner="worker-a",
            now=now + 102,
        )
        assert changes == [], f"a {kind!r} outcome from a worker without the lease changed state"

    stored = await env.message(message_id)
    assert (stored["status"], stored["lease_owner"], stored["attempts"]) == (
        "sending",
        "worker-b",
        2,
    ), "worker-b's lease and attempt must be untouched"
    assert len(await env.events(message_id)) == events_before


async def test_stale_worker_sent_outcome_is_still_recorded(env: ContractEnv) -> None:
    now = time.time() + 1
    message_id = await _taken_over(env, now)

    await env.record(
        q.SendOutcome(message_id, 1, "sent", "wamid.stale"), owner="worker-a", now=now + 102
    )

    stored = await env.message(message_id)
    assert (stored["status"], stored["provider_message_id"]) == ("sent", "wamid.stale"), (
        "a provider id is a fact, whoever reports it"
    )


async def test_outcome_after_lease_expiry_leaves_the_message_uncertain(env: ContractEnv) -> None:
    now = time.time() + 1
    message_id = await _make_uncertain(env, now)

    await env.record(
        q.SendOutcome(message_id, 1, "retry", next_attempt_at=now), owner="worker-a", now=now + 40
    )

    assert await env.status(message_id) == "uncertain", "the reconciler owns it now"


# --- defer and operator requeue ----------------------------------------------------------


async def test_defer_requeues_without_consuming_an_attempt(env: ContractEnv) -> None:
    now = time.time() + 1
    sent = await env.send_text(env.phone(A))
    await env.claim_only(now=now)

    await env.record(q.SendOutcome(sent["id"], 1, "defer", next_attempt_at=now + 5), now=now)

    stored = await env.message(sent["id"])
    assert (stored["status"], stored["attempts"], stored["next_attempt_at"]) == (
        "queued",
        0,
        now + 5,
    ), "pacing is not a failed attempt"
    assert [r["attempts"] for r in await env.claim(now=now + 5)] == [1]


async def test_defer_records_no_event(env: ContractEnv) -> None:
    now = time.time() + 1
    sent = await env.send_text(env.phone(A))
    await env.claim_only(now=now)

    await env.record(q.SendOutcome(sent["id"], 0, "defer", next_attempt_at=now + 5), now=now)

    assert [e["status"] for e in await env.events(sent["id"])] == ["queued"]
    assert (await env.message(sent["id"]))["lease_owner"] is None, "the claim is given back"


async def test_failure_before_the_send_started_fails_the_claimed_message(
    env: ContractEnv,
) -> None:
    sent = await env.send_text(env.phone(A))
    await env.claim_only()

    await env.record(q.SendOutcome(sent["id"], 0, "failed", error_code="reply_to"))

    assert await env.status(sent["id"]) == "failed", "e.g. it quotes a message never sent"


async def test_requeue_failed_puts_a_failed_message_back_with_a_fresh_budget(
    env: ContractEnv,
) -> None:
    sent = await env.send_text(env.phone(A))
    await env.claim()
    await env.record(q.SendOutcome(sent["id"], 1, "failed", error_code="131026"))

    async with env.db.transaction() as conn:
        assert await q.requeue_failed(conn, sent["id"], time.time()) is True

    stored = await env.message(sent["id"])
    assert (stored["status"], stored["attempts"], stored["error_code"]) == ("queued", 0, None)
    assert (await env.events(sent["id"]))[-1]["source"] == "operator"


async def test_requeue_failed_refuses_messages_that_are_not_failed(env: ContractEnv) -> None:
    delivered = await env.send_text(env.phone(A))
    in_flight = await env.send_text(env.phone(B))
    await env.claim()
    await env.record(q.SendOutcome(delivered["id"], 1, "sent", "wamid.d"))
    await env.apply(q.ObservedStatus("wamid.d", Status.DELIVERED, 100))

    async with env.db.transaction() as conn:
        for message_id in (delivered["id"], in_flight["id"], "msg_unknown"):
            requeued = await q.requeue_failed(conn, message_id, time.time())
            assert requeued is False, f"{message_id} is not failed and must not be requeued"

    assert await env.status(delivered["id"]) == "delivered"
    assert await env.status(in_flight["id"]) == "sending"


async def test_unknown_outcome_kind_is_a_programming_error(env: ContractEnv) -> None:
    sent = await env.send_text(env.phone(A))
    await env.claim()

    with pytest.raises(ValueError, match="exploded"):
        await env.record(q.SendOutcome(sent["id"], 1, "exploded"))


async def test_the_database_refuses_a_second_in_flight_message_in_one_chat(
    env: ContractEnv,
) -> None:
    first = await env.send_text(env.phone(A), "first")
    second = await env.send_text(env.phone(A), "second")
    [claimed] = await env.claim()
    assert claimed["id"] == first["id"]
    # Bypass the claim query, as a racing worker with a stale view would: the partial
    # unique index must refuse to put a second message of the chat in flight.
    with pytest.raises(IntegrityError):
        async with env.db.transaction() as conn:
            await conn.execute(
                update(messages).where(messages.c.id == second["id"]).values(status="sending")
            )
