"""Inbound messages the way the API tests make them: a signed Cloud API webhook for
conftest's channel, then one pass of the inbox processor (no workers run in those tests).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from random_secrets import APP_SECRET  # conftest's settings
from wahub.features.conversations import InboundPolicy
from wahub.pipeline.inbox import InboxProcessor
from wahub.pipeline.wakeup import Wakeup
from wahub.runtime import Hub

PNID = "106540352242922"  # conftest's channel
SENDER = "4915110000001"


def inbound_body(wamid: str, body: str, *, name: str = "Kerry", sender: str = SENDER) -> bytes:
    """A Cloud API webhook with one text message from ``sender`` (digits, no ``+``)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001234", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": name}, "wa_id": sender}],
        "messages": [
            {
                "from": sender,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": body},
            }
        ],
    }
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
        }
    )


async def post_and_process(client: httpx.AsyncClient, hub: Hub, body: bytes) -> None:
    """Deliver as Meta does (signed), then run the inbox processor once (no workers run
    in these tests) and wake the realtime fan-out."""
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = await client.post(
        "/v1/webhooks/cloudapi",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    assert response.status_code == 200, response.text
    processor = InboxProcessor(hub.db, Wakeup(), policy=InboundPolicy.from_settings(hub.settings))
    assert await processor.process_batch() == 1
    hub.realtime.poke()
