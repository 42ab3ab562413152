"""The webhook processor over stored deliveries (DESIGN.md invariant 9: store, then process)."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from wahub.pipeline.inbox import InboxProcessor
from wahub.pipeline.wakeup import Wakeup
from wahub.store import inbox as inbox_q
from wahub.store.schema import inbox, message_events

if TYPE_CHECKING:
    from conftest import ContractEnv


def status_webhook(*statuses: dict[str, Any]) -> bytes:
    """A Meta Cloud API status webhook body (PROVIDERS.md 1.4)."""
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA_ID",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "statuses": list(statuses),
                            },
                        }
                    ],
                }
            ],
        }
    )


def status(wamid: str, name: str, timestamp: int = 1712995245, **extra: Any) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": name,
        "timestamp": str(timestamp),
        "recipient_id": "4915110000001",
        **extra,
    }


async def store(env: ContractEnv, body: bytes, provider: str = "cloudapi") -> bool:
    """Store a delivery the way the webhook route does: keyed by the body's hash."""
    async with env.db.transaction() as conn:
        return await inbox_q.store_delivery(
            conn,
            provider=provider,
            dedupe_key=hashlib.sha256(body).hexdigest(),
            headers={"content-type": "application/json"},
            body=body,
            now=time.time(),
        )


async def deliveries(env: ContractEnv) -> list[dict[str, Any]]:
    async with env.db.read() as conn:
        rows = await inbox_q.list_deliveries(conn, status=None, limit=100)
    return sorted(rows, key=lambda r: r["id"])


async def sent_message(env: ContractEnv, wamid: str) -> str:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await env.mark_sent(row["id"], wamid)
    return str(row["id"])


@pytest.fixture
def processor(env: ContractEnv) -> InboxProcessor:
    return InboxProcessor(env.db, Wakeup())


async def test_processing_applies_the_statuses_and_marks_the_delivery_processed(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    message_id = await sent_message(env, "wamid.1")
    await store(env, status_webhook(status("wamid.1", "delivered"), status("wamid.1", "read")))

    handled = await processor.process_batch()

    assert handled == 1
    assert await env.status(message_id) == "read"
    (delivery,) = await deliveries(env)
    assert (delivery["status"], delivery["error"]) == ("processed", None)
    assert delivery["processed_at"] is not None


async def test_tracking_id_in_the_webhook_settles_a_message_without_a_send_result(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    row = await env.insert_queued(env.person_chat(1))
    await env.claim()
    await store(env, status_webhook(status("wamid.t", "sent", biz_opaque_callback_data=row["id"])))

    await processor.process_batch()

    stored = await env.message(row["id"])
    assert (stored["status"], stored["provider_message_id"]) == ("sent", "wamid.t")


async def test_failed_status_carries_the_provider_error(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    message_id = await sent_message(env, "wamid.1")
    error = {"code": 131026, "title": "Message undeliverable"}
    await store(env, status_webhook(status("wamid.1", "failed", errors=[error])))

    await processor.process_batch()

    stored = await env.message(message_id)
    assert (stored["status"], stored["error_code"]) == ("failed", "131026")


async def test_the_same_body_stored_twice_is_one_delivery(env: ContractEnv) -> None:
    body = status_webhook(status("wamid.1", "delivered"))

    assert await store(env, body) is True
    assert await store(env, body) is False, "a provider retry is recognised as a duplicate"
    assert await env.count(inbox) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{not json", "not JSON", id="malformed-json"),
        pytest.param(b"[1, 2]", "not a JSON object", id="json-array"),
        pytest.param(b'{"entry": "nope"}', "entry", id="entry-not-a-list"),
        pytest.param(
            status_webhook({"status": "delivered", "timestamp": "1"}), "id", id="status-without-id"
        ),
        pytest.param(
            status_webhook({**status("wamid.1", "read"), "timestamp": "yesterday"}),
            "timestamp",
            id="bad-timestamp",
        ),
    ],
)
async def test_a_malformed_delivery_is_dead_lettered_with_the_reason(
    env: ContractEnv, processor: InboxProcessor, body: bytes, reason: str
) -> None:
    await store(env, body)

    await processor.process_batch()

    (delivery,) = await deliveries(env)
    assert delivery["status"] == "dead", "a body that can never parse must not be retried"
    assert reason in (delivery["error"] or ""), f"the reason names the problem: {delivery}"


async def test_a_delivery_for_an_unknown_provider_is_dead_lettered(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    await store(env, status_webhook(status("wamid.1", "read")), provider="carrier-pigeon")

    await processor.process_batch()

    (delivery,) = await deliveries(env)
    assert delivery["status"] == "dead"
    assert "carrier-pigeon" in (delivery["error"] or "")


async def test_a_malformed_delivery_does_not_block_the_others_in_its_batch(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    message_id = await sent_message(env, "wamid.1")
    await store(env, status_webhook(status("wamid.1", "delivered")))
    await store(env, b"{garbage")
    await store(env, status_webhook(status("wamid.1", "read")))

    handled = await processor.process_batch()

    assert handled == 3
    assert [d["status"] for d in await deliveries(env)] == ["processed", "dead", "processed"]
    assert await env.status(message_id) == "read"


async def test_processing_is_exactly_once(env: ContractEnv, processor: InboxProcessor) -> None:
    message_id = await sent_message(env, "wamid.1")
    await store(env, status_webhook(status("wamid.1", "delivered")))
    await store(env, b"{garbage")
    await processor.process_batch()
    events_after_first = await env.count(message_events)

    assert await processor.process_batch() == 0, "processed and dead deliveries are done"
    assert await env.count(message_events) == events_after_first
    assert [d["attempts"] for d in await deliveries(env)] == [1, 1]
    assert await env.status(message_id) == "delivered"


async def test_an_empty_inbox_processes_nothing(processor: InboxProcessor) -> None:
    assert await processor.process_batch() == 0


async def test_statuses_for_unknown_wamids_are_parked_and_the_delivery_processed(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    await store(env, status_webhook(status("wamid.unknown", "delivered")))

    await processor.process_batch()

    assert [d["status"] for d in await deliveries(env)] == ["processed"]


async def test_an_absurd_timestamp_does_not_block_the_inbox(
    env: ContractEnv, processor: InboxProcessor
) -> None:
    message_id = await sent_message(env, "wamid.1")
    await store(env, status_webhook(status("wamid.1", "read", timestamp=10**20)))
    await store(env, status_webhook(status("wamid.1", "delivered")))

    await processor.process_batch()

    statuses = [d["status"] for d in await deliveries(env)]
    assert statuses == ["dead", "processed"], "only the bad delivery may be dead-lettered"
    assert await env.status(message_id) == "delivered"
