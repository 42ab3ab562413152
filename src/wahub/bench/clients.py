"""``wahub bench clients``: which HTTP client should the send path use?

Drives the sandbox (in its own process) with the same Cloud API send request at the same
concurrency through aiohttp and through httpx, in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from wahub.bench.send import raw_baseline, sandbox_process
from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, free_port


async def _drive(requests: int, concurrency: int, send: Callable[[int], Awaitable[None]]) -> float:
    counter = iter(range(requests))

    async def client() -> None:
        for i in counter:
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


def _body(i: int) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": "4915123000001",
        "type": "text",
        "text": {"body": f"client bench {i}"},
        "biz_opaque_callback_data": f"c_{i}",
    }


async def run_clients_bench(*, requests: int = 3000, concurrency: int = 50) -> dict[str, Any]:
    async with sandbox_process(free_port()) as url:
        endpoint = f"{url}/v21.0/{SANDBOX_PHONE_NUMBER_ID}/messages"
        aiohttp_rate = await raw_baseline(url, requests, concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as http:

            async def send(i: int) -> None:
                response = await http.post(endpoint, json=_body(i))
                if response.status_code != 200:
                    raise RuntimeError(f"send refused: {response.status_code}")

            httpx_rate = await _drive(requests, concurrency, send)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "aiohttp_per_s": round(aiohttp_rate, 1),
        "httpx_per_s": round(httpx_rate, 1),
        "aiohttp_over_httpx": round(aiohttp_rate / httpx_rate, 2),
        "chosen": "aiohttp" if aiohttp_rate >= httpx_rate else "httpx",
    }
