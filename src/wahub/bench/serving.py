"""``wahub serve`` in a process of its own, for benchmarks that measure over HTTP.

A server in its own process keeps the bench's client (and anything else the bench runs,
like an in-process sandbox) off the event loop being measured, as a real deployment is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

START_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Served:
    """A started server process: where it answers, and its pid (for its CPU time)."""

    url: str
    pid: int


@contextlib.asynccontextmanager
async def http_process(
    args: Sequence[str], url: str, *, env: Mapping[str, str] | None = None, what: str
) -> AsyncIterator[Served]:
    """``python args...`` serving HTTP at ``url``, with ``env`` added to this process's
    environment; yields it once ``/healthz`` answers 200. Raises ``RuntimeError``
    naming ``what`` if it does not start within a minute; stops it (SIGTERM, then SIGKILL
    after 10 s) on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + START_SECONDS
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start")
                await asyncio.sleep(0.1)
        yield Served(url, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def serve_process(
    database_url: str,
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    what: str = "bench",
    workers: bool = False,
) -> AsyncIterator[Served]:
    """``wahub serve`` (``--no-workers`` unless ``workers``) on ``database_url`` (already
    migrated) at ``port``; as ``http_process``."""
    args = ["-m", "wahub", "serve", "--database", database_url, "--port", str(port)]
    async with http_process(
        [*args, "--workers" if workers else "--no-workers"],
        f"http://127.0.0.1:{port}",
        env=env,
        what=f"wahub serve for the {what} bench",
    ) as served:
        yield served
