"""Do-nothing HTTP servers on the stack ``wahub serve`` runs (uvicorn + FastAPI, started
by the same ``start_server``): the ceilings benchmarks compare wahub with.

``python -m wahub.bench.noop_server --port N``: ``POST /noop`` reads the body and answers
200 with an empty JSON object; ``GET /healthz`` answers 200. Runs until SIGTERM/SIGINT.

With ``--app-secret S`` it also plays the receiving half of the **null hub** (``bench
send``): ``POST /v1/webhooks/cloudapi`` checks the ``X-Hub-Signature-256`` HMAC as wahub's
receiver does, answers 401 when it is wrong, and otherwise only counts the statuses in the
body, so that ``GET /_null/progress`` says how many messages reached ``read``. No
database, no queue, no status machine: the HTTP wahub must do, and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import orjson
from fastapi import FastAPI, Request, Response

from wahub.embedded import start_server
from wahub.providers.cloudapi.webhooks import SIGNATURE_HEADER, verify_signature


def noop_app(app_secret: str | None = None) -> FastAPI:
    app = FastAPI(openapi_url=None)
    counts = {"deliveries": 0, "statuses": 0, "read": 0}

    @app.post("/noop")
    async def noop(request: Request) -> Response:
        await request.body()  # as a webhook route does before anything else
        return Response(b"{}", media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"{}", media_type="application/json")

    if app_secret is not None:
        secret = app_secret

        @app.post("/v1/webhooks/cloudapi")
        async def null_receiver(request: Request) -> Response:
            body = await request.body()
            if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
                return Response(b'{"error":"bad signature"}', status_code=401)
            counts["deliveries"] += 1
            # Counting is the least the null hub must do to know when it is done.
            for entry in orjson.loads(body).get("entry", ()):
                for change in entry.get("changes", ()):
                    for status in change.get("value", {}).get("statuses", ()):
                        counts["statuses"] += 1
                        if status.get("status") == "read":
                            counts["read"] += 1
            return Response(b"{}", media_type="application/json")

        @app.get("/_null/progress")
        async def progress() -> Response:
            return Response(orjson.dumps(counts), media_type="application/json")

    return app


async def _serve(port: int, app_secret: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server, task = await start_server(noop_app(app_secret), "127.0.0.1", port)
    await stop.wait()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-secret", default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.app_secret))


if __name__ == "__main__":
    main()
