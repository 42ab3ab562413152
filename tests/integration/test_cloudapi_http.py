"""CloudApiProvider over real HTTP against a local server that plays Meta.

The server answers with the payloads documented in PROVIDERS.md 1.1 and 1.3; the
phone number id in the path picks the behaviour.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from wahub.domain.errors import (
    PermanentProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
)
from wahub.providers.base import OutboundMessage, SendResult
from wahub.providers.cloudapi.adapter import CloudApiProvider

TOKEN = "EAAG-test-token"

MESSAGE = OutboundMessage(
    tracking_id="msg_01",
    recipient="16505555555",
    is_group=False,
    content={"type": "text", "text": {"body": "hi", "preview_url": False}},
    reply_to="wamid.QUOTED",
)

SUCCESS = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "16505555555", "wa_id": "16505555555"}],
    "messages": [{"id": "wamid.HBgLMTY1MDU1NTU1NTUVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}],
}

RATE_LIMIT_HIT = {
    "error": {
        "message": "(#130429) Rate limit hit",
        "type": "OAuthException",
        "code": 130429,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": "Message failed to send because there were too many messages sent",
        },
        "error_subcode": 2494055,
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
}

UNDELIVERABLE = {
    "error": {
        "message": "(#131026) Message undeliverable",
        "type": "OAuthException",
        "code": 131026,
        "error_data": {"messaging_product": "whatsapp", "details": "Unable to deliver"},
        "fbtrace_id": "AbC",
    }
}

APP_RATE_LIMIT = {
    "error": {"message": "(#4) Application request limit reached", "code": 4, "fbtrace_id": "x"}
}

UNKNOWN_500 = {
    "error": {"message": "An unknown error occurred", "code": 1, "type": "OAuthException"}
}


@dataclass
class FakeMeta:
    """The server side: what it received, and a latch that holds the slow handler."""

    base_url: str
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)


def json_response(payload: Any, status: int, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


# Responses the fake Meta gives, by the phone number id in the path. Factories, because
# an aiohttp response object can be sent only once.
CANNED: dict[str, Callable[[], web.Response]] = {
    "ok": lambda: json_response(SUCCESS, 200),
    "throttled": lambda: json_response(RATE_LIMIT_HIT, 400),
    "undeliverable": lambda: json_response(UNDELIVERABLE, 400),
    "busy": lambda: json_response(APP_RATE_LIMIT, 429, **{"Retry-After": "7"}),
    "boom": lambda: json_response(UNKNOWN_500, 500),
    "html": lambda: web.Response(
        status=502,
        text="<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type="text/html",
    ),
    "no_id": lambda: json_response({"messaging_product": "whatsapp"}, 200),
    "redirect": lambda: web.Response(status=307, headers={"Location": "http://elsewhere.test/"}),
}


@pytest.fixture
async def meta() -> AsyncIterator[FakeMeta]:
    fake = FakeMeta(base_url="")

    async def answer(request: web.Request) -> web.Response:
        fake.requests.append((request.path, dict(request.headers), await request.json()))
        fake.received.set()
        phone_number_id = request.match_info["phone_number_id"]
        if phone_number_id == "slow":
            # Holds the answer until the test ends: past any client timeout.
            await fake.release.wait()
            return json_response(SUCCESS, 200)
        return CANNED[phone_number_id]()

    app = web.Application()
    app.router.add_post("/v21.0/{phone_number_id}/messages", answer)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


def provider(
    session: aiohttp.ClientSession, base_url: str, phone_number_id: str, timeout_s: float = 5.0
) -> CloudApiProvider:
    return CloudApiProvider(
        phone_number_id=phone_number_id,
        access_token=TOKEN,
        session=session,
        base_url=base_url,
        timeout_s=timeout_s,
    )


async def test_success_returns_the_wamid_and_wa_id(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    result = await provider(http, meta.base_url, "ok").send(MESSAGE)

    assert result == SendResult(
        provider_message_id=SUCCESS["messages"][0]["id"],  # type: ignore[index]
        wa_id="16505555555",
    )


async def test_request_has_the_path_auth_header_and_body(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    await provider(http, meta.base_url, "ok").send(MESSAGE)

    [(path, headers, body)] = meta.requests
    assert path == "/v21.0/ok/messages"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"].startswith("application/json")
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505555555",
        "type": "text",
        "text": {"body": "hi", "preview_url": False},
        "context": {"message_id": "wamid.QUOTED"},
        "biz_opaque_callback_data": "msg_01",
    }


async def test_throughput_limit_with_http_400_is_retryable(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(RetryableProviderError) as raised:
        await provider(http, meta.base_url, "throttled").send(MESSAGE)

    assert raised.value.provider_code == 130429
    assert raised.value.http_status == 400
    assert raised.value.details["fbtrace_id"] == "Az8or2yhqkZfEZ-_4Qn_Bam"


async def test_undeliverable_is_permanent(meta: FakeMeta, http: aiohttp.ClientSession) -> None:
    with pytest.raises(PermanentProviderError) as raised:
        await provider(http, meta.base_url, "undeliverable").send(MESSAGE)

    assert raised.value.message.startswith("Cloud API error 131026: Message undeliverable")


async def test_429_honours_retry_after(meta: FakeMeta, http: aiohttp.ClientSession) -> None:
    with pytest.raises(RetryableProviderError) as raised:
        await provider(http, meta.base_url, "busy").send(MESSAGE)

    assert raised.value.retry_after == 7.0
    assert raised.value.provider_code == 4


async def test_500_is_retryable(meta: FakeMeta, http: aiohttp.ClientSession) -> None:
    with pytest.raises(RetryableProviderError) as raised:
        await provider(http, meta.base_url, "boom").send(MESSAGE)

    assert raised.value.http_status == 500


async def test_non_json_502_is_retryable_with_a_readable_message(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(RetryableProviderError) as raised:
        await provider(http, meta.base_url, "html").send(MESSAGE)

    assert "HTTP 502 with a non-JSON body" in raised.value.message
    assert "Bad Gateway" in raised.value.message


async def test_success_without_message_id_is_outcome_unknown(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderOutcomeUnknown, match=r"messages\[0\]\.id"):
        await provider(http, meta.base_url, "no_id").send(MESSAGE)


async def test_redirect_is_not_followed(meta: FakeMeta, http: aiohttp.ClientSession) -> None:
    with pytest.raises(PermanentProviderError) as raised:
        await provider(http, meta.base_url, "redirect").send(MESSAGE)

    assert raised.value.http_status == 307
    assert len(meta.requests) == 1


async def test_timeout_after_sending_is_outcome_unknown(
    meta: FakeMeta, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderOutcomeUnknown):
        await provider(http, meta.base_url, "slow", timeout_s=0.3).send(MESSAGE)

    assert len(meta.requests) == 1, "the request did reach the server"


async def test_no_free_connection_in_time_is_retryable(meta: FakeMeta) -> None:
    # One connection, held by a send the server does not answer: the second send times
    # out waiting for a connection, before writing anything.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one_conn:
        holder = asyncio.create_task(provider(one_conn, meta.base_url, "slow").send(MESSAGE))
        try:
            await asyncio.wait_for(meta.received.wait(), timeout=5)

            with pytest.raises(RetryableProviderError, match="not sent"):
                await provider(one_conn, meta.base_url, "ok", timeout_s=0.2).send(MESSAGE)
        finally:
            meta.release.set()
            await asyncio.gather(holder, return_exceptions=True)
    assert [path for path, _, _ in meta.requests] == ["/v21.0/slow/messages"]


async def test_connection_refused_is_retryable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(RetryableProviderError, match="not sent"):
        await provider(http, f"http://127.0.0.1:{closed_port}", "ok").send(MESSAGE)


class FailingResolver(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, f"Name or service not known: {host}")

    async def close(self) -> None:
        return None


async def test_dns_failure_is_retryable() -> None:
    connector = aiohttp.TCPConnector(resolver=FailingResolver())
    async with aiohttp.ClientSession(connector=connector) as no_dns:
        with pytest.raises(RetryableProviderError, match="not sent"):
            await provider(no_dns, "https://graph.facebook.example", "ok").send(MESSAGE)


async def test_connection_closed_after_the_request_is_outcome_unknown(
    http: aiohttp.ClientSession,
) -> None:
    received = asyncio.Event()

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        writer.close()

    server = await asyncio.start_server(read_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ProviderOutcomeUnknown):
            await provider(http, f"http://127.0.0.1:{port}", "ok").send(MESSAGE)

    assert received.is_set()


async def test_close_leaves_the_callers_session_open(http: aiohttp.ClientSession) -> None:
    await provider(http, "http://127.0.0.1:1", "ok").close()

    assert not http.closed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phone_number_id": ""},
        {"access_token": ""},
        {"base_url": "graph.facebook.com"},
        {"timeout_s": 0},
    ],
    ids=["empty-id", "empty-token", "relative-url", "zero-timeout"],
)
async def test_bad_configuration_is_refused_at_construction(
    http: aiohttp.ClientSession, kwargs: dict[str, Any]
) -> None:
    config: dict[str, Any] = {
        "phone_number_id": "1",
        "access_token": TOKEN,
        "session": http,
        **kwargs,
    }

    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CloudApiProvider(**config)


async def test_repr_does_not_leak_the_token(http: aiohttp.ClientSession) -> None:
    assert TOKEN not in repr(provider(http, "http://127.0.0.1:1", "ok"))
