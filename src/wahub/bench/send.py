"""``wahub bench send``: outbound throughput through the whole pipeline.

Baseline: the sandbox driven directly by aiohttp's client (the fastest client measured on
these machines) at the same concurrency, with no wahub in between. Then the same number
of messages go through wahub: stored, claimed, paced, sent through the Cloud API adapter
to the same sandbox, and their status webhooks received, verified, stored and applied.

The sandbox runs in its own process, as a real provider would; the hub runs here.
Channel pacing is lifted (rate 100k/s, no pair limit): this measures wahub's own cost,
not Meta's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from wahub.config import Settings
from wahub.domain.actors import Actor, Role
from wahub.domain.content import SendRequest
from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, embedded_stack, free_port
from wahub.store import messages as message_q

ENQUEUERS = 16


@contextlib.asynccontextmanager
async def sandbox_process(port: int) -> AsyncIterator[str]:
    """Run ``wahub sandbox`` in a child process; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        "sandbox",
        "--port",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/_sandbox/stats") as resp:
                        if resp.status == 200:
                            break
                if proc.returncode is not None:
                    raise RuntimeError("the sandbox process exited at start")
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def phone(chat: int) -> str:
    return f"+4915123{chat:06d}"


async def raw_baseline(sandbox_url: str, messages: int, concurrency: int) -> float:
    """Sends per second the sandbox takes from a bare aiohttp client."""
    url = f"{sandbox_url}/v21.0/{SANDBOX_PHONE_NUMBER_ID}/messages"
    counter = iter(range(messages))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Authorization": "Bearer sandbox-token"},
    ) as http:

        async def client() -> None:
            for i in counter:
                body = {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": phone(i % concurrency)[1:],
                    "type": "text",
                    "text": {"body": f"bench message {i}", "preview_url": False},
                    "biz_opaque_callback_data": f"raw_{i}",
                }
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"raw baseline send refused: {resp.status}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return messages / (time.perf_counter() - started)


async def _sandbox(http: aiohttp.ClientSession, url: str, path: str, body: Any = None) -> Any:
    method = http.post if body is not None else http.get
    async with method(f"{url}{path}", json=body) as resp:
        return await resp.json()


async def run_send_bench(
    *, messages: int = 5000, chats: int = 50, progress: bool = False
) -> dict[str, Any]:
    sandbox_port = free_port()
    with tempfile.TemporaryDirectory(prefix="wahub-bench-") as tmp:
        async with sandbox_process(sandbox_port) as sandbox_url:
            raw_rate = await raw_baseline(sandbox_url, messages, chats)
            settings = Settings(
                database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
                port=free_port(),
                worker_concurrency=max(chats, 64),
            )
            async with aiohttp.ClientSession() as http:
                await _sandbox(http, sandbox_url, "/_sandbox/reset", {})
                await _sandbox(
                    http,
                    sandbox_url,
                    "/_sandbox/config",
                    {
                        "webhook_url": f"http://{settings.host}:{settings.port}/v1/webhooks/cloudapi",
                        "app_secret": settings.cloudapi_app_secret.get_secret_value(),
                        "webhook_delay_ms": 0,
                    },
                )
                async with embedded_stack(settings, with_sandbox=False) as stack:
                    hub = stack.hub
                    await hub.channels.create(
                        name="bench",
                        phone_number_id=SANDBOX_PHONE_NUMBER_ID,
                        access_token="sandbox-token",
                        base_url=sandbox_url,
                        rate_per_second=100_000,
                        pair_interval_seconds=0,
                    )
                    created = await hub.access.create_key(user_name="bench", role="admin")
                    actor = Actor(created.user_id, "bench", Role.ADMIN, created.key_id)
                    requests = [
                        SendRequest.model_validate(
                            {"to": phone(i % chats), "text": {"body": f"bench message {i}"}}
                        )
                        for i in range(messages)
                    ]
                    started = time.perf_counter()

                    enqueue_seconds = 0.0

                    pending = iter(requests)

                    async def client() -> None:
                        for request in pending:
                            await hub.messaging.send(actor, request)

                    async def enqueue() -> None:
                        # Like API traffic: several clients at once (their writes are
                        # group-committed together).
                        nonlocal enqueue_seconds
                        await asyncio.gather(*(client() for _ in range(ENQUEUERS)))
                        enqueue_seconds = time.perf_counter() - started

                    enqueuer = asyncio.create_task(enqueue())
                    sent_seconds = final_seconds = None
                    deadline = started + max(120.0, messages / 20)
                    while time.perf_counter() < deadline:
                        async with hub.db.read() as conn:
                            counts = await message_q.count_by_status(conn)
                        done = sum(
                            counts.get(s, 0) for s in ("sent", "delivered", "read", "failed")
                        )
                        final = sum(counts.get(s, 0) for s in ("delivered", "read", "failed"))
                        now = time.perf_counter()
                        if sent_seconds is None and done >= messages:
                            sent_seconds = now - started
                        if final >= messages:
                            final_seconds = now - started
                            break
                        if progress:
                            print(
                                f"\r{done}/{messages} sent, {final} final", end="", file=sys.stderr
                            )
                        await asyncio.sleep(0.02)
                    if progress:
                        print(file=sys.stderr)
                    await enqueuer
                    async with hub.db.read() as conn:
                        statuses = await message_q.statuses_by_id(conn)
                sends = (await _sandbox(http, sandbox_url, "/_sandbox/sends"))["sends"]
    received = Counter(s["biz_opaque_callback_data"] for s in sends)
    seconds = sent_seconds if sent_seconds is not None else float("nan")
    rate = messages / seconds if sent_seconds else 0.0
    return {
        "messages": messages,
        "chats": chats,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(rate, 1),
        "raw_msgs_per_s": round(raw_rate, 1),
        "ratio": round(rate / raw_rate, 3) if raw_rate else 0.0,
        "final_seconds": round(final_seconds, 3) if final_seconds else None,
        "enqueue_seconds": round(enqueue_seconds, 3),
        "lost": sum(1 for i in statuses if not received[i]),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "backend": "sqlite",
        "workers": 1,
        "http_client": "aiohttp",
    }
