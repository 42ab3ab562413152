"""The null hub's receiver and the CPU meter the send bench's baseline rests on."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import orjson
import pytest

from wahub.bench.cpu import cpu_seconds, total_cpu_seconds
from wahub.bench.noop_server import noop_app
from wahub.providers.sandbox.webhooks import signature_header

SECRET = "null-hub-test-secret"


def _delivery(*statuses: str) -> bytes:
    value = {"statuses": [{"id": f"wamid.{i}", "status": s} for i, s in enumerate(statuses)]}
    return orjson.dumps({"entry": [{"changes": [{"value": value}]}]})


async def _post(client: httpx.AsyncClient, body: bytes, signature: str) -> int:
    response = await client.post(
        "/v1/webhooks/cloudapi", content=body, headers={"X-Hub-Signature-256": signature}
    )
    return response.status_code


async def test_null_receiver_counts_reads_of_signed_deliveries_only() -> None:
    transport = httpx.ASGITransport(app=noop_app(SECRET))
    async with httpx.AsyncClient(transport=transport, base_url="http://null") as client:
        good = _delivery("sent", "delivered", "read")
        assert await _post(client, good, signature_header(SECRET, good)) == 200
        forged = _delivery("read", "read")
        assert await _post(client, forged, signature_header("another secret", forged)) == 401
        progress = (await client.get("/_null/progress")).json()
    assert progress == {"deliveries": 1, "statuses": 3, "read": 1}


async def test_noop_server_without_a_secret_has_no_receiver() -> None:
    transport = httpx.ASGITransport(app=noop_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://null") as client:
        assert (await client.post("/v1/webhooks/cloudapi", content=b"{}")).status_code == 404


def test_cpu_seconds_grows_with_work_and_adds_up() -> None:
    before = cpu_seconds(os.getpid())
    total = 0
    while cpu_seconds(os.getpid()) - before < 0.05:
        total += sum(range(10_000))
    assert total > 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        both = total_cpu_seconds([os.getpid(), child.pid])
        assert both >= cpu_seconds(os.getpid())
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessLookupError):
        cpu_seconds(child.pid)
