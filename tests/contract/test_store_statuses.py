"""Provider statuses applied to stored messages (DESIGN.md invariant 3)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wahub.domain.status import Status, fold
from wahub.store import messages as q
from wahub.store.schema import parked_statuses

if TYPE_CHECKING:
    from conftest import ContractEnv

SENT, DELIVERED, READ, FAILED = Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED


def seen(provider_id: str, status: Status, timestamp: int = 100, **kw: str) -> q.ObservedStatus:
    return q.ObservedStatus(provider_id, status, timestamp, **kw)


async def sent_message(env: ContractEnv, provider_id: str, chat: int = 1) -> str:
    """A message the worker claimed and the provider accepted as ``provider_id``."""
    row = await env.insert_queued(env.person_chat(chat))
    claimed = await env.claim()
    assert row["id"] in [c["id"] for c in claimed]
    await env.mark_sent(row["id"], provider_id)
    return str(row["id"])


async def test_status_moves_forward_with_each_webhook(env: ContractEnv) -> None:
    message_id = await sent_message(env, "wamid.1")

    await env.apply(seen("wamid.1", DELIVERED, 101))
    assert await env.status(message_id) == "delivered"
    await env.apply(seen("wamid.1", READ, 102))
    assert await env.status(message_id) == "read"


async def test_delivered_after_read_keeps_read(env: ContractEnv) -> None:
    message_id = await sent_message(env, "wamid.1")

    await env.apply(seen("wamid.1", READ, 102))
    changes = await env.apply(seen("wamid.1", DELIVERED, 101))

    assert await env.status(message_id) == "read", "status only moves forward"
    assert changes == [], "a late delivered report changes nothing"


async def test_delivered_after_read_is_still_recorded_in_history(env: ContractEnv) -> None:
    message_id = await sent_message(env, "wamid.1")

    await env.apply(seen("wamid.1", READ, 102))
    await env.apply(seen("wamid.1", DELIVERED, 101))

    assert {"read", "delivered"} <= {e["status"] for e in await env.events(message_id)}
    assert (await env.message(message_id))["delivered_at"] == 101.0


async def test_duplicate_webhook_records_one_event(env: ContractEnv) -> None:
    message_id = await sent_message(env, "wamid.1")

    await env.apply(seen("wamid.1", DELIVERED, 101))
    await env.apply(seen("wamid.1", DELIVERED, 101))
    await env.apply(seen("wamid.1", DELIVERED, 101), seen("wamid.1", DELIVERED, 101))

    delivered = [e for e in await env.events(message_id) if e["status"] == "delivered"]
    assert len(delivered) == 1, f"one webhook delivered 4 times must be one event: {delivered}"


async def test_failed_after_delivered_keeps_delivered_and_records_the_failure(
    env: ContractEnv,
) -> None:
    message_id = await sent_message(env, "wamid.1")
    await env.apply(seen("wamid.1", DELIVERED, 101))

    await env.apply(seen("wamid.1", FAILED, 102, error_code="131026", error_title="undeliverable"))

    assert await env.status(message_id) == "delivered", "delivered to one device is delivered"
    failed = [e for e in await env.events(message_id) if e["status"] == "failed"]
    assert [(e["source"], e["error_code"]) for e in failed] == [("webhook", "131026")]


async def test_failed_webhook_fails_a_sent_message_with_the_provider_code(env: ContractEnv) -> None:
    message_id = await sent_message(env, "wamid.1")

    await env.apply(seen("wamid.1", FAILED, 102, error_code="131026", error_title="undeliverable"))

    stored = await env.message(message_id)
    assert (stored["status"], stored["error_code"], stored["error_title"]) == (
        "failed",
        "131026",
        "undeliverable",
    )


async def test_tracking_id_matches_before_the_provider_id_is_known(env: ContractEnv) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()

    await env.apply(seen("wamid.early", DELIVERED, 101, tracking_id=row["id"]))

    stored = await env.message(row["id"])
    assert (stored["status"], stored["provider_message_id"]) == ("delivered", "wamid.early"), (
        "our id echoed in biz_opaque_callback_data identifies the message and teaches us its wamid"
    )
    assert stored["lease_owner"] is None, "a settled message no longer holds a lease"


async def test_worker_sent_after_a_faster_webhook_does_not_move_back(env: ContractEnv) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await env.apply(seen("wamid.early", DELIVERED, 101, tracking_id=row["id"]))

    await env.mark_sent(row["id"], "wamid.early")

    assert await env.status(row["id"]) == "delivered"


async def while_holding_delivered(env: ContractEnv, message_id: str, racer: Awaitable[Any]) -> None:
    """Apply DELIVERED in a transaction that stays open while ``racer`` (another
    process's write to the same message) starts, then commit and let the racer finish."""
    async with env.db.transaction() as conn:
        await q.apply_statuses(
            conn, [seen("wamid.x", DELIVERED, 101, tracking_id=message_id)], time.time()
        )
        racing = asyncio.ensure_future(racer)
        await asyncio.sleep(0.3)  # the racer reads the message before we commit
        assert not racing.done(), "the racer must wait for our transaction"
    await asyncio.wait_for(racing, 10)


async def test_worker_sent_racing_a_webhook_transaction_does_not_move_back(
    env: ContractEnv,
) -> None:
    # On PostgreSQL the worker (one process) and the inbox processor (another) write the
    # same row at once: the worker must not decide from what it read before the
    # webhook's transaction committed.
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()

    await while_holding_delivered(env, row["id"], env.mark_sent(row["id"], "wamid.x"))

    assert await env.status(row["id"]) == "delivered"


async def test_sent_webhook_racing_a_delivered_webhook_does_not_move_back(
    env: ContractEnv,
) -> None:
    # Two inbox processors, each with one status of the same message in its batch.
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()

    await while_holding_delivered(
        env, row["id"], env.apply(seen("wamid.x", SENT, 100, tracking_id=row["id"]))
    )

    assert await env.status(row["id"]) == "delivered"


async def test_unknown_provider_id_is_parked_not_dropped(env: ContractEnv) -> None:
    await env.apply(seen("wamid.future", DELIVERED, 101))

    assert await env.count(parked_statuses) == 1


async def test_parked_status_is_applied_when_the_send_result_arrives(env: ContractEnv) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await env.apply(seen("wamid.fast", DELIVERED, 101), seen("wamid.fast", READ, 102))

    changes = await env.record(q.SendOutcome(row["id"], 1, "sent", "wamid.fast"))

    assert await env.status(row["id"]) == "read"
    assert await env.count(parked_statuses) == 0, "applied parked rows are deleted"
    assert [c.status for c in changes][-1] == "read", "subscribers hear about the final status"


async def test_parked_failure_does_not_undo_a_later_delivery(env: ContractEnv) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await env.apply(seen("wamid.fast", FAILED, 101), seen("wamid.fast", DELIVERED, 102))

    await env.mark_sent(row["id"], "wamid.fast")

    assert await env.status(row["id"]) == "delivered"


async def test_status_parked_before_a_tracked_webhook_taught_the_wamid_is_applied(
    env: ContractEnv,
) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await env.apply(seen("wamid.x", READ, 102))  # no tracking id: parked
    await env.apply(seen("wamid.x", DELIVERED, 101, tracking_id=row["id"]))  # learns wamid.x

    assert await env.status(row["id"]) == "read", (
        "the parked read belongs to a message we now know; without a send result (worker "
        "died) nothing else will ever apply it"
    )


# --- any order, any duplicates: the fold -------------------------------------------------

_runs = itertools.count()
OBSERVATION = st.tuples(st.sampled_from([SENT, DELIVERED, READ, FAILED]), st.integers(100, 102))


@dataclass(frozen=True)
class Scenario:
    """Per message: webhooks seen (status, timestamp; duplicates included) and whether
    they outrun the send result (so they are parked first); then every webhook of every
    message shuffled into one stream, cut into batches at ``cuts``."""

    per_message: list[list[tuple[Status, int]]]
    early: list[bool]
    stream: list[tuple[int, Status, int]]
    cuts: list[int]

    def batches(self) -> list[list[tuple[int, Status, int]]]:
        bounds = [0, *self.cuts, len(self.stream)]
        return [self.stream[lo:hi] for lo, hi in itertools.pairwise(bounds)]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    per_message = draw(st.lists(st.lists(OBSERVATION, max_size=6), min_size=1, max_size=4))
    early = draw(st.lists(st.booleans(), min_size=len(per_message), max_size=len(per_message)))
    flat = [(i, s, t) for i, obs in enumerate(per_message) for s, t in obs]
    stream = list(draw(st.permutations(flat)))
    cuts = sorted(draw(st.lists(st.integers(0, len(flat)), max_size=3)))
    return Scenario(per_message, early, stream, cuts)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario=scenarios())
async def test_shuffled_duplicated_batched_webhooks_end_at_the_fold(
    env: ContractEnv, scenario: Scenario
) -> None:
    # One database for all examples: each example uses its own chats and wamids.
    run = next(_runs)
    count = len(scenario.per_message)
    wamids = [f"wamid.{run}.{i}" for i in range(count)]
    rows = [await env.insert_queued(env.person_chat(1000 + 10 * run + i)) for i in range(count)]
    await env.claim()
    for i in range(count):
        if not scenario.early[i]:
            await env.mark_sent(rows[i]["id"], wamids[i])

    for batch in scenario.batches():
        await env.apply(*(seen(wamids[i], s, t) for i, s, t in batch))
    for i in range(count):
        if scenario.early[i]:
            await env.mark_sent(rows[i]["id"], wamids[i])

    for i, row in enumerate(rows):
        observations = [s for s, _ in scenario.per_message[i]]
        expected = fold(Status.SENT, observations).value
        actual = await env.status(row["id"])
        assert actual == expected, (
            f"message {i} saw {observations} ({'parked first' if scenario.early[i] else 'known'}"
            f" wamid) in batches {scenario.batches()}: status {actual}, fold says {expected}"
        )
        webhook_events = [
            (e["status"], e["provider_timestamp"])
            for e in await env.events(row["id"])
            if e["source"] == "webhook"
        ]
        distinct = {(s.value, t) for s, t in scenario.per_message[i]}
        assert sorted(webhook_events) == sorted(distinct), "exactly one event per distinct webhook"
    assert await env.count(parked_statuses) == 0, "every parked status found its message"
