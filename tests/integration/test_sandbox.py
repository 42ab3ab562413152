"""The provider sandbox over real HTTP: Meta's shapes, the failure knobs, the send record
and signed, retried status webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from multiprocess import Processes, wait_http
from wahub.embedded import free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.webhook_secrets import is_placeholder

PHONE_NUMBER_ID = "106540352242922"
SEND_PATH = f"/v21.0/{PHONE_NUMBER_ID}/messages"
SECRET = "test-app-secret"


def text_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "text",
        "text": {"body": "hello"},
    }
    body.update(overrides)
    return body


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    raw: bytes

    @property
    def status(self) -> dict[str, Any]:
        """The single status this POST carries (the sandbox sends one per POST)."""
        payload = json.loads(self.raw)
        statuses = payload["entry"][0]["changes"][0]["value"]["statuses"]
        assert len(statuses) == 1, f"expected one status per POST, got {statuses}"
        status: dict[str, Any] = statuses[0]
        return status


@dataclass
class WebhookReceiver:
    """A stand-in hub: records every webhook it accepts; refuses the first
    ``fail_first`` with HTTP 500."""

    fail_first: int = 0
    received: list[ReceivedWebhook] = field(default_factory=list)
    refused: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.refused < self.fail_first:
            self.refused += 1
            return web.Response(status=500, text="hub is down")
        self.received.append(ReceivedWebhook(dict(request.headers), raw))
        return web.Response(text="ok")

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/webhook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def statuses_of(self, wamid: str) -> list[str]:
        return [w.status["status"] for w in self.received if w.status["id"] == wamid]


StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hub = WebhookReceiver()
    yield hub
    await hub.stop()


async def post_send(
    http: aiohttp.ClientSession,
    base_url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        base_url + SEND_PATH,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    ) as response:
        return response.status, await response.json(), response.headers


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as response:
        assert response.status == 200
        payload: dict[str, Any] = await response.json()
        return payload


def assert_meta_error(payload: dict[str, Any], code: int) -> dict[str, Any]:
    error = payload["error"]
    assert error["code"] == code, payload
    assert error["type"] == "OAuthException"
    assert error["message"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]
    assert isinstance(error["fbtrace_id"], str)
    assert error["fbtrace_id"]
    return dict(error)


# --- the send endpoint ---------------------------------------------------------------


async def test_accepted_send_is_answered_in_meta_shape_and_recorded(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox()
    body = text_body(biz_opaque_callback_data="msg_01")

    status, payload, _ = await post_send(http, url, body)

    assert status == 200
    wamid = payload["messages"][0]["id"]
    assert re.fullmatch(r"wamid\.[A-Za-z0-9]+", wamid), wamid
    assert payload == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": wamid}],
    }
    record = await get_json(http, url + "/_sandbox/sends")
    assert record["count"] == 1
    [send] = record["sends"]
    assert send["wamid"] == wamid
    assert send["phone_number_id"] == PHONE_NUMBER_ID
    assert send["to"] == "+16505551234"
    assert send["type"] == "text"
    assert send["body"] == body
    assert send["biz_opaque_callback_data"] == "msg_01"
    assert abs(send["received_at"] - time.time()) < 5
    assert [s.wamid for s in sandbox.sends] == [wamid]


async def test_a_client_killed_mid_request_is_one_log_line_not_a_traceback(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The crash tests SIGKILL workers while they send: the sandbox then sees requests
    whose body never ends. That is not its error, and it must say so without a
    traceback (the crash tests fail on tracebacks in any process's log)."""
    caplog.set_level(logging.INFO)
    sandbox, url = await start_sandbox()
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {SEND_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        'Authorization: Bearer x\r\nContent-Length: 500\r\n\r\n{"messaging_product"'.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is now waiting for the rest of the body
    writer.transport.abort()  # a reset, as a killed process leaves it
    deadline = time.monotonic() + 5
    while "client went away" not in caplog.text and time.monotonic() < deadline:
        await asyncio.sleep(0.02)

    assert "client went away" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    assert sandbox.sends == [], "a request that never arrived whole is not a send"
    status, _, _ = await post_send(http, url, text_body())
    assert status == 200, "and the sandbox goes on serving"


async def test_template_send_is_answered_with_accepted_status(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, url = await start_sandbox()
    body = {
        "messaging_product": "whatsapp",
        "to": "16505551234",
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}},
    }

    status, payload, _ = await post_send(http, url, body)

    assert status == 200
    assert payload["messages"][0]["message_status"] == "accepted"


async def test_group_jid_and_4096_char_text_are_accepted(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, url = await start_sandbox()
    group = "120363271212442249@g.us"

    status, payload, _ = await post_send(http, url, text_body(to=group, text={"body": "x" * 4096}))

    assert status == 200, payload
    assert payload["contacts"] == [{"input": group, "wa_id": group}]


async def test_every_wamid_is_unique_even_across_sandboxes(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, first_url = await start_sandbox()
    _, second_url = await start_sandbox()
    wamids = set()
    for url in (first_url, second_url) * 10:
        _, payload, _ = await post_send(http, url, text_body())
        wamids.add(payload["messages"][0]["id"])
    assert len(wamids) == 20


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (text_body(to=None), "'to'"),
        ({k: v for k, v in text_body().items() if k != "to"}, "'to'"),
        (text_body(to="not-a-number"), "'to'"),
        (text_body(text={"body": ""}), "text.body"),
        (text_body(text={"body": "x" * 4097}), "text.body"),
        (text_body(type="carrier_pigeon"), "'type'"),
        (text_body(messaging_product="telegram"), "messaging_product"),
        (text_body(type="image", text=None), "'image'"),
        (text_body(type="image", image={"caption": "no media"}), "image"),
        (
            text_body(type="template", template={"name": "t", "language": {}}),
            "template.language.code",
        ),
        (text_body(type="template", template={"language": {"code": "en"}}), "template.name"),
        (text_body(biz_opaque_callback_data="x" * 513), "biz_opaque_callback_data"),
        (b"{not json", "JSON"),
        ([1, 2, 3], "JSON object"),
    ],
)
async def test_invalid_send_is_refused_with_code_100_naming_the_field(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, body: Any, field: str
) -> None:
    sandbox, url = await start_sandbox(rate_5xx=1.0)  # validation comes before injection

    status, payload, _ = await post_send(http, url, body)

    assert status == 400
    error = assert_meta_error(payload, 100)
    assert error["message"] == "(#100) Invalid parameter"
    assert field in error["error_data"]["details"], error
    assert sandbox.sends == []
    assert sandbox.stats()["rejected"] == {"invalid": 1}


@pytest.mark.parametrize(
    ("knob", "http_status", "code", "kind"),
    [
        ("rate_http_429", 429, 4, "http_429"),
        ("rate_throughput_130429", 400, 130429, "throughput_130429"),
        ("rate_pair_131056", 400, 131056, "pair_131056"),
    ],
)
async def test_injected_refusal_has_meta_status_and_code_and_records_nothing(
    http: aiohttp.ClientSession,
    start_sandbox: StartSandbox,
    receiver: WebhookReceiver,
    knob: str,
    http_status: int,
    code: int,
    kind: str,
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(**{knob: 1.0}, webhook_url=hook)

    for _ in range(3):
        status, payload, _ = await post_send(http, url, text_body())
        assert status == http_status
        assert_meta_error(payload, code)

    assert sandbox.sends == []
    assert sandbox.stats()["rejected"] == {kind: 3}
    assert sandbox.stats()["webhooks_pending"] == 0
    assert (await get_json(http, url + "/_sandbox/sends"))["count"] == 0


async def test_injected_5xx_is_500_with_131000_or_503_with_2(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(rate_5xx=1.0, seed=7)
    seen = set()
    for _ in range(30):
        status, payload, _ = await post_send(http, url, text_body())
        seen.add((status, payload["error"]["code"]))
        assert_meta_error(payload, payload["error"]["code"])

    assert seen == {(500, 131000), (503, 2)}
    assert sandbox.sends == []
    assert sandbox.stats()["rejected"] == {"server_error": 30}


async def test_429_carries_retry_after_only_when_configured(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, with_hint = await start_sandbox(rate_http_429=1.0, retry_after_s=2.5)
    _, without_hint = await start_sandbox(rate_http_429=1.0)

    _, _, headers = await post_send(http, with_hint, text_body())
    _, _, bare_headers = await post_send(http, without_hint, text_body())

    assert headers.get("Retry-After") == "2.5"
    assert "Retry-After" not in bare_headers


async def test_wrong_access_token_gets_401_code_190(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(access_token="good-token")

    missing, missing_payload, _ = await post_send(http, url, text_body())
    wrong, wrong_payload, _ = await post_send(
        http, url, text_body(), {"Authorization": "Bearer bad-token"}
    )
    right, _, _ = await post_send(http, url, text_body(), {"Authorization": "Bearer good-token"})

    assert (missing, wrong, right) == (401, 401, 200)
    assert_meta_error(missing_payload, 190)
    assert_meta_error(wrong_payload, 190)
    assert len(sandbox.sends) == 1
    assert sandbox.stats()["rejected"] == {"auth": 2}


async def test_timeout_knob_records_and_emits_but_holds_the_answer(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(rate_timeout=1.0, timeout_hold_s=0.6, webhook_url=hook)

    started = time.monotonic()
    request = asyncio.create_task(post_send(http, url, text_body()))
    await asyncio.sleep(0.3)
    assert not request.done(), "the answer must be held"
    assert len(sandbox.sends) == 1, "a held send is recorded before it is answered"
    assert receiver.statuses_of(sandbox.sends[0].wamid) == ["sent", "delivered", "read"]
    status, payload, _ = await request

    assert time.monotonic() - started >= 0.55
    assert status == 200
    assert payload["messages"][0]["id"] == sandbox.sends[0].wamid
    assert sandbox.stats()["held"] == 1


async def test_client_timeout_on_held_send_leaves_it_recorded(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(rate_timeout=1.0, timeout_hold_s=5)

    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            url + SEND_PATH, json=text_body(), timeout=aiohttp.ClientTimeout(total=0.2)
        ) as response:
            await response.read()

    assert len(sandbox.sends) == 1


async def test_stop_answers_held_requests_at_once(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(rate_timeout=1.0, timeout_hold_s=30)
    request = asyncio.create_task(post_send(http, url, text_body()))
    await asyncio.sleep(0.1)

    started = time.monotonic()
    await sandbox.stop()

    assert time.monotonic() - started < 3
    status, _, _ = await asyncio.wait_for(request, 3)
    assert status == 200


async def test_latency_delays_the_answer(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, url = await start_sandbox(latency_ms=150, latency_jitter_ms=50)

    started = time.monotonic()
    status, _, _ = await post_send(http, url, text_body())

    assert status == 200
    assert 0.15 <= time.monotonic() - started < 2


# --- status webhooks -----------------------------------------------------------------


async def test_webhooks_are_signed_one_status_each_in_order_and_echo_tracking(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(app_secret=SECRET, webhook_url=hook)
    _, payload, _ = await post_send(http, url, text_body(biz_opaque_callback_data="msg_42"))
    wamid = payload["messages"][0]["id"]

    await sandbox.wait_webhooks_idle(5)

    assert len(receiver.received) == 3
    for webhook in receiver.received:
        expected = hmac.new(SECRET.encode(), webhook.raw, hashlib.sha256).hexdigest()
        assert webhook.headers["X-Hub-Signature-256"] == f"sha256={expected}"
        envelope = json.loads(webhook.raw)
        assert envelope["object"] == "whatsapp_business_account"
        [entry] = envelope["entry"]
        assert entry["id"] == sandbox.config.waba_id
        [change] = entry["changes"]
        assert change["field"] == "messages"
        assert change["value"]["messaging_product"] == "whatsapp"
        assert change["value"]["metadata"] == {
            "display_phone_number": sandbox.config.display_phone_number,
            "phone_number_id": PHONE_NUMBER_ID,
        }
    statuses = [w.status for w in receiver.received]
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == wamid
        assert status["recipient_id"] == "16505551234"
        assert status["biz_opaque_callback_data"] == "msg_42"
        assert "errors" not in status
    timestamps = [s["timestamp"] for s in statuses]
    assert all(isinstance(t, str) and t.isdigit() for t in timestamps)
    assert [int(t) for t in timestamps] == sorted(int(t) for t in timestamps)
    assert abs(int(timestamps[0]) - time.time()) < 10
    assert sandbox.stats()["webhooks_delivered"] == 3


async def test_the_standalone_sandbox_signs_with_a_random_secret_it_prints(
    http: aiohttp.ClientSession, receiver: WebhookReceiver, procs: Processes
) -> None:
    hook = await receiver.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    procs.spawn("sandbox", ["sandbox", "--port", str(port), "--webhook-url", hook], env)
    await wait_http(f"{url}/_sandbox/stats", timeout=60)
    await post_send(http, url, text_body())
    deadline = time.monotonic() + 30
    while len(receiver.received) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)

    printed = re.search(r"random app secret: (\S+)", (procs.log_dir / "sandbox.log").read_text())
    assert printed is not None, procs.log_tails()
    secret = printed.group(1)
    assert not is_placeholder(secret)
    assert len(receiver.received) == 3
    for webhook in receiver.received:
        expected = hmac.new(secret.encode(), webhook.raw, hashlib.sha256).hexdigest()
        assert webhook.headers["X-Hub-Signature-256"] == f"sha256={expected}"


async def test_webhooks_omit_tracking_when_the_send_had_none(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(webhook_url=hook, statuses=["sent"])
    await post_send(http, url, text_body())

    await sandbox.wait_webhooks_idle(5)

    [webhook] = receiver.received
    assert "biz_opaque_callback_data" not in webhook.status


async def test_statuses_knob_limits_what_is_emitted(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(webhook_url=hook, statuses=["read", "sent"])
    _, payload, _ = await post_send(http, url, text_body())

    await sandbox.wait_webhooks_idle(5)

    assert receiver.statuses_of(payload["messages"][0]["id"]) == ["sent", "read"]


async def test_fail_fraction_ends_the_stream_in_failed_with_errors(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(webhook_url=hook, fail_fraction=1.0)
    _, payload, _ = await post_send(http, url, text_body(biz_opaque_callback_data="msg_9"))

    await sandbox.wait_webhooks_idle(5)

    wamid = payload["messages"][0]["id"]
    assert receiver.statuses_of(wamid) == ["sent", "failed"]
    failed = receiver.received[-1].status
    assert failed["biz_opaque_callback_data"] == "msg_9"
    [error] = failed["errors"]
    assert error["code"] == 131026
    assert error["title"] == "Message undeliverable"
    assert error["error_data"]["details"]


async def test_duplicate_fraction_delivers_every_status_twice_byte_identical(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(webhook_url=hook, duplicate_fraction=1.0)
    _, payload, _ = await post_send(http, url, text_body())

    await sandbox.wait_webhooks_idle(5)

    wamid = payload["messages"][0]["id"]
    assert receiver.statuses_of(wamid) == ["sent", "sent", "delivered", "delivered", "read", "read"]
    raws = [w.raw for w in receiver.received]
    assert raws[0] == raws[1]
    assert raws[2] == raws[3]
    assert raws[4] == raws[5]


async def test_shuffle_reorders_arrivals_but_not_timestamps(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    sandbox, url = await start_sandbox(webhook_url=hook, shuffle=True, webhook_delay_ms=300, seed=3)
    wamids = []
    for _ in range(10):
        _, payload, _ = await post_send(http, url, text_body())
        wamids.append(payload["messages"][0]["id"])

    await sandbox.wait_webhooks_idle(15)

    rank = {"sent": 0, "delivered": 1, "read": 2}
    arrivals = [receiver.statuses_of(wamid) for wamid in wamids]
    assert all(sorted(a, key=rank.__getitem__) == ["sent", "delivered", "read"] for a in arrivals)
    assert any(a != ["sent", "delivered", "read"] for a in arrivals), arrivals
    for wamid in wamids:
        stamped = {
            w.status["status"]: int(w.status["timestamp"])
            for w in receiver.received
            if w.status["id"] == wamid
        }
        assert stamped["sent"] <= stamped["delivered"] <= stamped["read"]


async def test_refused_deliveries_are_retried_until_every_status_arrives_in_order(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    hub = WebhookReceiver(fail_first=6)
    hook = await hub.start()
    try:
        sandbox, url = await start_sandbox(webhook_url=hook, webhook_backoff_initial_s=0.02)
        wamids = []
        for _ in range(2):
            _, payload, _ = await post_send(http, url, text_body())
            wamids.append(payload["messages"][0]["id"])

        await sandbox.wait_webhooks_idle(10)

        assert hub.refused == 6
        for wamid in wamids:
            assert hub.statuses_of(wamid) == ["sent", "delivered", "read"]
        stats = sandbox.stats()
        assert stats["webhooks_delivered"] == 6
        assert stats["webhook_attempts_failed"] == 6
        assert stats["webhooks_given_up"] == 0
    finally:
        await hub.stop()


async def test_statuses_survive_a_hub_that_is_down_then_comes_up(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sandbox, url = await start_sandbox(
        webhook_url=f"http://127.0.0.1:{port}/webhook", webhook_backoff_initial_s=0.05
    )
    _, payload, _ = await post_send(http, url, text_body())
    await asyncio.sleep(0.3)
    assert sandbox.stats()["webhook_attempts_failed"] >= 1, "the hub was down"

    await receiver.start(port)
    await sandbox.wait_webhooks_idle(10)

    assert receiver.statuses_of(payload["messages"][0]["id"]) == ["sent", "delivered", "read"]


async def test_delivery_is_given_up_after_max_attempts(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    hub = WebhookReceiver(fail_first=1_000)
    hook = await hub.start()
    try:
        sandbox, url = await start_sandbox(
            webhook_url=hook, webhook_max_attempts=2, webhook_backoff_initial_s=0.01
        )
        await post_send(http, url, text_body())

        await sandbox.wait_webhooks_idle(5)

        stats = sandbox.stats()
        assert stats["webhooks_given_up"] == 3
        assert stats["webhook_attempts_failed"] == 6
        assert stats["webhooks_delivered"] == 0
        assert hub.refused == 6
    finally:
        await hub.stop()


async def test_wait_webhooks_idle_times_out_while_deliveries_are_pending(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(
        webhook_url="http://127.0.0.1:9/unreachable", webhook_backoff_initial_s=1.0
    )
    await post_send(http, url, text_body())

    with pytest.raises(TimeoutError):
        await sandbox.wait_webhooks_idle(0.2)
    assert sandbox.stats()["webhooks_pending"] == 3


# --- admin endpoints -----------------------------------------------------------------


async def test_reset_forgets_sends_counters_and_pending_webhooks(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox, receiver: WebhookReceiver
) -> None:
    hook = await receiver.start()
    _, url = await start_sandbox(webhook_url=hook, webhook_delay_ms=300)
    await post_send(http, url, text_body())
    await post_send(http, url, text_body(to=None))

    async with http.post(url + "/_sandbox/reset") as response:
        assert response.status == 200

    assert (await get_json(http, url + "/_sandbox/sends")) == {"sends": [], "count": 0}
    stats = await get_json(http, url + "/_sandbox/stats")
    assert stats == {
        "accepted": 0,
        "held": 0,
        "rejected": {},
        "rejected_total": 0,
        "webhooks_delivered": 0,
        "webhook_attempts_failed": 0,
        "webhooks_given_up": 0,
        "webhooks_pending": 0,
        "webhooks_duplicated": 0,
        "webhooks_out_of_order": 0,
        "inbound_emitted": 0,
        "inbound_delivered": 0,
        "inbound_attempts_failed": 0,
        "inbound_given_up": 0,
        "inbound_duplicated": 0,
    }
    await asyncio.sleep(0.5)
    assert receiver.received == [], "webhooks planned before the reset must not arrive"


async def test_stats_count_accepted_and_rejected_sends(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    _, url = await start_sandbox()
    await post_send(http, url, text_body())
    await post_send(http, url, text_body())
    await post_send(http, url, text_body(type="fax"))

    stats = await get_json(http, url + "/_sandbox/stats")

    assert stats["accepted"] == 2
    assert stats["rejected"] == {"invalid": 1}
    assert stats["rejected_total"] == 1


async def test_config_endpoint_changes_knobs_at_runtime(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox()

    async with http.post(
        url + "/_sandbox/config", json={"rate_pair_131056": 1, "statuses": ["sent"]}
    ) as response:
        assert response.status == 200
        config = (await response.json())["config"]
    status, payload, _ = await post_send(http, url, text_body())

    assert config["rate_pair_131056"] == 1.0
    assert config["statuses"] == ["sent"]
    assert sandbox.config.rate_pair_131056 == 1.0
    assert (await get_json(http, url + "/_sandbox/config"))["config"] == config
    assert config["app_secret"] == "***", "secrets are write-only"
    assert status == 400
    assert_meta_error(payload, 131056)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rate_5xx": 0.5, "rate_of_doom": 1}, "rate_of_doom"),
        ({"rate_5xx": 0.5, "rate_timeout": 2}, "rate_timeout"),
        ({"rate_5xx": 0.5, "shuffle": "yes"}, "shuffle"),
        ({"rate_5xx": 0.5, "statuses": ["sent", "seen"]}, "statuses"),
        ({"rate_5xx": 0.5, "webhook_concurrency": 4}, "webhook_concurrency"),
    ],
)
async def test_config_endpoint_refuses_bad_fields_and_changes_nothing(
    http: aiohttp.ClientSession,
    start_sandbox: StartSandbox,
    changes: dict[str, Any],
    named: str,
) -> None:
    sandbox, url = await start_sandbox()

    async with http.post(url + "/_sandbox/config", json=changes) as response:
        assert response.status == 400
        error = (await response.json())["error"]

    assert named in error["message"]
    assert sandbox.config.rate_5xx == 0.0, "a refused update must change nothing"


def test_config_rejects_out_of_range_knobs_and_orders_statuses() -> None:
    with pytest.raises(ValueError, match="rate_5xx"):
        SandboxConfig(rate_5xx=1.5)
    config = SandboxConfig(statuses=("read", "sent"))
    assert config.statuses == ("sent", "read")
    with pytest.raises(ValueError, match="fail_fraction"):
        config.fail_fraction = -0.1
    with pytest.raises(AttributeError):
        config.rate_teleport = 1.0


# --- received media (GET /{media_id}, then its URL) ------------------------------------


async def test_a_received_file_is_described_then_served_with_the_token_only(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox(access_token="good-token")
    media_id = sandbox.media.register_received("image/jpeg")
    token = {"Authorization": "Bearer good-token"}

    async with http.get(f"{url}/v21.0/{media_id}", headers=token) as response:
        assert response.status == 200
        described = await response.json()
    async with http.get(described["url"]) as response:
        anonymous = response.status, await response.json()
    async with http.get(described["url"], headers=token) as response:
        served = response.status, response.content_type, await response.read()
    async with http.get(f"{url}/v21.0/{PHONE_NUMBER_ID}", headers=token) as response:
        number = await response.json()

    assert described["id"] == media_id
    assert described["mime_type"] == "image/jpeg"
    assert described["file_size"] == len(served[2])
    assert described["url"].startswith(url)
    assert anonymous[0] == 401
    assert_meta_error(anonymous[1], 190)
    assert served[:2] == (200, "image/jpeg")
    assert served[2].startswith(b"\xff\xd8\xff"), "a JPEG's magic number"
    assert number["id"] == PHONE_NUMBER_ID, "a number is still a number"
    counts = await get_json(http, url + "/_sandbox/media")
    assert (counts["received"], counts["downloads"]) == (1, 1)


async def test_fail_downloads_fails_the_next_ones_and_refuses_a_bad_count(
    http: aiohttp.ClientSession, start_sandbox: StartSandbox
) -> None:
    sandbox, url = await start_sandbox()
    link = f"{url}/_sandbox/media/links/{sandbox.media.register_received('application/pdf')}"

    async with http.post(f"{url}/_sandbox/media/fail-downloads", json={"count": -1}) as bad:
        assert bad.status == 400
    async with http.post(f"{url}/_sandbox/media/fail-downloads", json={"count": 1}) as armed:
        assert armed.status == 200
    async with http.get(link) as first:
        assert first.status == 500
    async with http.get(link) as second:
        assert second.status == 200
        assert (await second.read()).startswith(b"%PDF")
    async with http.get(f"{url}/_sandbox/media/links/unknown") as unknown:
        assert unknown.status == 404
    counts = await get_json(http, url + "/_sandbox/media")
    assert (counts["downloads_failed"], counts["downloads"]) == (1, 1)
