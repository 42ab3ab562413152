"""A do-nothing HTTP server on the stack ``wahub serve`` runs (uvicorn + FastAPI, started
by the same ``start_server``): the ceiling the ingest bench compares itself with.

``python -m wahub.bench.noop_server --port N``: ``POST /noop`` reads the body and answers
200 with an empty JSON object; ``GET /healthz`` answers 200. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from fastapi import FastAPI, Request, Response

from wahub.embedded import start_server


def noop_app() -> FastAPI:
    app = FastAPI(openapi_url=None)

    @app.post("/noop")
    async def noop(request: Request) -> Response:
        await request.body()  # as a webhook route does before anything else
        return Response(b"{}", media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"{}", media_type="application/json")

    return app


async def _serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server, task = await start_server(noop_app(), "127.0.0.1", port)
    await stop.wait()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
