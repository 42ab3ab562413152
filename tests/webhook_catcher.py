"""Stand-in webhook receivers for tests: ``WebhookCatcher`` records what the sandbox
POSTs to it; ``serve_handler`` serves any handler of a test's own at one path."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_handler(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]], path: str = "/hook"
) -> AsyncIterator[str]:
    """Serve ``handle`` for POSTs to ``path`` on a free local port; yields the URL. On
    exit the server stops without waiting for handlers that never answer."""
    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookCatcher:
    """A stand-in hub taking POSTs on any ``/{provider}`` path (what the sandbox's webhooks
    reach); refuses the first ``fail_first`` POSTs with 500. ``stop`` after use."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.refused < self.fail_first:
            self.refused += 1
            return web.Response(status=500)
        self.received.append(
            Received(request.path, dict(request.query), dict(request.headers), body)
        )
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{provider}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
