"""The sandbox HTTP server: a fake Meta Cloud API with failure knobs and a send record,
and a fake Whapi.Cloud channel under ``/whapi`` (see ``whapi.py`` for its routes).

Routes:

- ``POST /v{version}/{phone_number_id}/messages``: the Cloud API send endpoint.
- ``/whapi/...``: WHAPI groups, text sends and LIDs; ``/_sandbox/whapi/...``: its
  directory and counters.
- ``/periskope/chats...``: the Periskope chat directory; ``/_sandbox/periskope/...``: its
  chats and call counters (see ``periskope.py``).
- ``POST /v{version}/{phone_number_id}/media``: the Cloud API media upload; ``GET
  /v{version}/{media_id}`` and ``/_sandbox/media/files/{id}``: received files; ``GET
  /_sandbox/media``: what was uploaded and downloaded (see ``media.py``).
- ``GET /_sandbox/sends``: every accepted send, ``{"sends": [...], "count": n}``.
- ``GET /_sandbox/stats``: counters of sends, refusals and webhook deliveries.
- ``POST /_sandbox/reset``: forget sends, counters and pending webhooks; restore the
  default WHAPI and Periskope directories.
- ``GET /_sandbox/config`` and ``POST /_sandbox/config``: read or change knobs.
- ``/web/{session}/...``: a WhatsApp Web session engine (QR, pairing, sends, receipts,
  incoming events); ``/_sandbox/web/...``: play the phone and WhatsApp (see ``web.py``).
- ``POST /_sandbox/inbound``: simulate leads writing to us, as webhooks in each
  provider's shape; ``GET /_sandbox/inbound``: what was emitted (see ``inbound.py``).

The send endpoint is benchmarked as the raw capacity baseline, so its path stays lean:
no per-request logging, one JSON parse, one JSON dump, webhooks only queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.inbound import InboundGenerator
from wahub.providers.sandbox.media import MediaSandbox
from wahub.providers.sandbox.periskope import PeriskopeSandbox
from wahub.providers.sandbox.shapes import (
    APP_RATE_LIMIT,
    AUTH_FAILED,
    PAIR_RATE_LIMIT,
    SERVICE_UNAVAILABLE,
    THROUGHPUT_LIMIT,
    UNKNOWN_ERROR,
    MetaError,
    error_body,
    invalid_parameter,
)
from wahub.providers.sandbox.state import SendCounters, SendRecord
from wahub.providers.sandbox.validation import InvalidSend, validate_send
from wahub.providers.sandbox.web import WebSandbox
from wahub.providers.sandbox.webhooks import WebhookDispatcher
from wahub.providers.sandbox.whapi import WhapiSandbox

logger = logging.getLogger(__name__)

SEND_ROUTE = r"/v{version:\d+\.\d+}/{phone_number_id:[^/]+}/messages"
# The phone number node (GET), which channel checks read to prove a token works.
PHONE_NUMBER_ROUTE = r"/v{version:\d+\.\d+}/{phone_number_id:[^/]+}"
JSON = "application/json"

# How long stop() lets in-flight requests finish; held (timeout knob) requests are
# released at once, so only ordinary requests can use it.
SHUTDOWN_GRACE_S = 1.0


@web.middleware
async def _client_gone(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A client that vanishes mid-request (a worker killed while it sends, as the crash
    tests do on purpose) is not the sandbox's error: one line, no traceback, nothing
    recorded, since the request never arrived whole. Nobody reads the answer."""
    try:
        return await handler(request)
    except ConnectionResetError:
        logger.info("client went away during %s %s", request.method, request.path)
        return web.Response(status=400, text="client went away")


class Sandbox:
    """A fake Meta Cloud API server for tests, demos and benchmarks.

    ``config`` may be changed at any time (attribute by attribute, or replaced); the next
    request and the next webhook attempt see the change. ``sends`` lists every accepted
    send in arrival order, Cloud API and WHAPI alike (refused sends are never recorded).
    ``whapi`` is the WHAPI channel: its group directory (``whapi.set_groups``) and
    counters (``whapi.stats()``).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config if config is not None else SandboxConfig()
        self._rng = random.Random(self._config.seed)
        self._webhooks = WebhookDispatcher(self._config, self._rng)
        self._counters = SendCounters()
        self.sends: list[SendRecord] = []
        # Unique per instance, so a restarted standalone sandbox never reuses a wamid
        # a hub has already stored.
        self._wamid_prefix = "SBX" + secrets.token_hex(6).upper()
        self._wamid_serial = itertools.count(1)
        self.whapi = WhapiSandbox(lambda: self._config, self._record_whapi_send, self._hold)
        self.periskope = PeriskopeSandbox(lambda: self._config, self._hold)
        self.media = MediaSandbox(lambda: self._config, self._refuse)
        self.inbound = InboundGenerator(
            lambda: self._config,
            self._rng,
            lambda: self.sends,
            lambda: [c["chat_id"] for c in self.periskope.chats if c["chat_id"].endswith("@c.us")],
            self._webhooks.post,
            register_media=self.media.register_received,
            base_url=lambda: self.url,
        )
        self._trickle: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.web = WebSandbox(lambda: self._config, self._record_whapi_send, self._stopping)
        self.url: str | None = None

    @property
    def config(self) -> SandboxConfig:
        return self._config

    @config.setter
    def config(self, config: SandboxConfig) -> None:
        self._config = config
        self._webhooks.config = config

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving and delivering webhooks; return the base URL
        (``http://host:port``, with the real port when ``port`` is 0).

        Raises ``RuntimeError`` if already started, ``OSError`` if the port is taken.
        """
        if self._runner is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        runner = web.AppRunner(
            self._build_app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        await self._webhooks.start()
        await self.web.start()
        self._trickle = asyncio.create_task(self.inbound.trickle(), name="sandbox-inbound-trickle")
        self._runner = runner
        bound_port = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Stop accepting requests, answer held ones at once and drop every pending
        webhook delivery. Safe to call twice; the sandbox can be started again."""
        if self._runner is None:
            return
        self._stopping.set()
        runner, self._runner = self._runner, None
        if self._trickle is not None:
            self._trickle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trickle
            self._trickle = None
        await self.web.stop()
        await runner.cleanup()
        await self._webhooks.stop()
        self.url = None

    def reset(self) -> None:
        """Forget accepted sends, uploads, counters and pending webhooks; restore the default
        WHAPI directory (built for ``config.whapi_own_phone``) and the default Periskope
        chats, and zero their counters; re-seed the random source from ``config.seed``
        so a seeded run can be replayed."""
        self.sends.clear()
        self._counters = SendCounters()
        self._webhooks.reset()
        self.whapi.reset()
        self.periskope.reset()
        self.media.reset()
        self.inbound.reset()
        self.web.reset()
        if self._config.seed is not None:
            self._rng.seed(self._config.seed)

    def stats(self) -> dict[str, Any]:
        """Counters as served by ``GET /_sandbox/stats``.

        ``accepted`` counts every recorded send (WHAPI ones too, so it equals
        ``len(sends)``); ``rejected`` maps each Cloud API refusal kind (auth, invalid,
        http_429, throughput_130429, pair_131056, server_error) to its count (WHAPI
        refusals are in ``whapi.stats()``); ``held`` counts accepted sends answered
        late by the timeout knob; ``webhook_attempts_failed`` counts failed delivery
        attempts (each retry is one more); ``webhooks_duplicated`` counts second copies
        of status webhooks delivered, ``webhooks_out_of_order`` statuses delivered after
        a later status of the same message. ``inbound_*`` count the simulated inbound
        webhooks the same way (``webhooks_pending`` covers both).
        """
        counters = self._counters
        webhooks = self._webhooks
        return {
            "accepted": counters.accepted,
            "held": counters.held,
            "rejected": dict(counters.rejected),
            "rejected_total": sum(counters.rejected.values()),
            "webhooks_delivered": webhooks.delivered,
            "webhook_attempts_failed": webhooks.failed_attempts,
            "webhooks_given_up": webhooks.given_up,
            "webhooks_pending": webhooks.pending,
            "webhooks_duplicated": webhooks.duplicated,
            "webhooks_out_of_order": webhooks.out_of_order,
            "inbound_emitted": len(self.inbound.log),
            "inbound_delivered": webhooks.inbound.delivered,
            "inbound_attempts_failed": webhooks.inbound.failed_attempts,
            "inbound_given_up": webhooks.inbound.given_up,
            "inbound_duplicated": webhooks.inbound.duplicated,
        }

    # A timeout parameter (not asyncio.timeout around the call) is the documented API.
    async def wait_webhooks_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once no status webhook is pending (delivered or given up, including
        statuses still waiting for their delay); raise ``TimeoutError`` otherwise."""
        await self._webhooks.wait_idle(timeout)

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[_client_gone])
        app.router.add_post(SEND_ROUTE, self._handle_send)
        app.router.add_get(PHONE_NUMBER_ROUTE, self._handle_phone_number)
        app.router.add_get("/_sandbox/sends", self._handle_sends)
        app.router.add_get("/_sandbox/stats", self._handle_stats)
        app.router.add_post("/_sandbox/reset", self._handle_reset)
        app.router.add_get("/_sandbox/config", self._handle_get_config)
        app.router.add_post("/_sandbox/config", self._handle_set_config)
        self.whapi.mount(app)
        self.periskope.mount(app)
        self.media.mount(app)
        self.inbound.mount(app)
        self.web.mount(app)
        return app

    def _record_whapi_send(self, record: SendRecord) -> None:
        # One send log for every provider (WHAPI and web sessions too), so tests count
        # what arrived the same way.
        self.sends.append(record)
        self._counters.accepted += 1

    async def _handle_phone_number(self, request: web.Request) -> web.Response:
        """``GET /{phone_number_id}`` as Meta answers it: the number's id and display
        number, or the OAuth error (190) for a token that is not the sandbox's."""
        config = self._config
        if (
            config.access_token is not None
            and request.headers.get("Authorization") != f"Bearer {config.access_token}"
        ):
            return self._refuse(AUTH_FAILED)
        # Meta's GET /{id} serves numbers and media ids alike.
        media = self.media.describe(request, request.match_info["phone_number_id"])
        if media is not None:
            return media
        return web.json_response(
            {
                "id": request.match_info["phone_number_id"],
                "display_phone_number": config.display_phone_number,
                "verified_name": "wahub sandbox",
            }
        )

    async def _handle_send(self, request: web.Request) -> web.Response:
        config = self._config
        rng = self._rng
        if config.latency_ms or config.latency_jitter_ms:
            jitter = rng.uniform(0, config.latency_jitter_ms)
            await asyncio.sleep((config.latency_ms + jitter) / 1000)
        if (
            config.access_token is not None
            and request.headers.get("Authorization") != f"Bearer {config.access_token}"
        ):
            return self._refuse(AUTH_FAILED)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._refuse(invalid_parameter("Request body is not valid JSON"))
        try:
            send = validate_send(body)
        except InvalidSend as invalid:
            return self._refuse(invalid_parameter(invalid.details))
        unknown = self.media.unknown_media(request.match_info["phone_number_id"], body)
        if unknown is not None:
            return self._refuse(invalid_parameter(f"Invalid media id {unknown!r}: upload it first"))

        # One draw shared by all injected errors, so each knob takes exactly its own
        # fraction of the valid requests (see SandboxConfig).
        draw = rng.random() - config.rate_http_429
        if draw < 0:
            return self._refuse(APP_RATE_LIMIT)
        draw -= config.rate_throughput_130429
        if draw < 0:
            return self._refuse(THROUGHPUT_LIMIT)
        draw -= config.rate_pair_131056
        if draw < 0:
            return self._refuse(PAIR_RATE_LIMIT)
        draw -= config.rate_5xx
        if draw < 0:
            return self._refuse(UNKNOWN_ERROR if rng.random() < 0.5 else SERVICE_UNAVAILABLE)
        held = draw - config.rate_timeout < 0

        wamid = f"wamid.{self._wamid_prefix}{next(self._wamid_serial)}"
        record = SendRecord(
            wamid=wamid,
            phone_number_id=request.match_info["phone_number_id"],
            to=send.to,
            wa_id=send.wa_id,
            type=send.type,
            body=body,
            biz_opaque_callback_data=send.biz_opaque_callback_data,
            received_at=time.time(),
        )
        self.sends.append(record)
        self._counters.accepted += 1
        if config.webhook_url is not None:
            self._webhooks.emit(record)
        message: dict[str, str] = {"id": wamid}
        if send.type == "template":
            message["message_status"] = "accepted"
        response = web.Response(
            body=orjson.dumps(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": send.to, "wa_id": send.wa_id}],
                    "messages": [message],
                }
            ),
            content_type=JSON,
        )
        if held:
            self._counters.held += 1
            await self._hold(config.timeout_hold_s)
        return response

    def _refuse(self, error: MetaError) -> web.Response:
        self._counters.reject(error.kind)
        headers = None
        retry_after = self._config.retry_after_s
        if error.http_status == 429 and retry_after is not None:
            headers = {"Retry-After": f"{retry_after:g}"}
        return web.Response(
            status=error.http_status, body=error_body(error), content_type=JSON, headers=headers
        )

    async def _hold(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the sandbox is stopping (so stop() is prompt)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle_sends(self, request: web.Request) -> web.Response:
        # orjson serialises the slotted dataclasses directly, which keeps large dumps fast.
        return _json({"sends": self.sends, "count": len(self.sends)})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"reset": True})

    async def _handle_get_config(self, request: web.Request) -> web.Response:
        return _json({"config": self._config.to_dict()})

    async def _handle_set_config(self, request: web.Request) -> web.Response:
        """Apply a JSON object of knobs all or nothing; 400 names the bad field."""
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json_error("invalid_json", "Request body is not valid JSON")
        if not isinstance(changes, dict):
            return _json_error("invalid_config", "Request body must be a JSON object")
        try:
            self._config.update(changes)
        except ValueError as error:
            return _json_error("invalid_config", str(error))
        if "seed" in changes and self._config.seed is not None:
            self._rng.seed(self._config.seed)
        return _json({"config": self._config.to_dict()})


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON)


def _json_error(code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=400)


def run_sandbox(config: SandboxConfig, host: str, port: int) -> None:
    """Serve the sandbox on ``host:port`` until SIGINT or SIGTERM; blocks.

    Logs one line with the URL on ``wahub.providers.sandbox.server`` (configuring basic
    logging to stderr first if nothing else has), then stops cleanly on the signal.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_serve_until_signalled(config, host, port))


async def _serve_until_signalled(config: SandboxConfig, host: str, port: int) -> None:
    sandbox = Sandbox(config)
    url = await sandbox.start(host, port)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    logger.info(
        "wahub sandbox (fake Meta Cloud API; fake WHAPI under %s/whapi) listening on %s", url, url
    )
    try:
        await stop_requested.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await sandbox.stop()
