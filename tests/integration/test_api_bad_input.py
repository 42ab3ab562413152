"""Careless requests a new user sends, found by trying (issue 14, point 9): each gets a
clear answer naming what is wrong, or is understood when there is only one meaning."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from asgi_probe import post_declaring
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store import messages as messages_q

Headers = Callable[[str], dict[str, str]]

PERSON = "+14155552671"
JSON = {"Content-Type": "application/json"}
TEMPLATE = {
    "name": "order_update",
    "language": {"code": "en_US"},
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-17"}]}],
}


@pytest.fixture
async def template(hub: Hub, channel: dict[str, Any]) -> None:
    await hub.channels.add_template(
        channel["id"], name="order_update", language="en_US", body_parameters=1, category="utility"
    )


# --- a template without "type" ---------------------------------------------------------


@pytest.mark.usefixtures("template")
async def test_a_template_body_without_type_is_sent_as_a_template(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/messages", json={"to": PERSON, "template": TEMPLATE}, headers=headers_for("admin")
    )

    assert response.status_code == 202, response.text
    assert response.json()["type"] == "template"
    assert response.json()["content"]["template"]["name"] == "order_update"


# --- reply_to ---------------------------------------------------------------------------


@pytest.mark.usefixtures("channel")
async def test_a_reply_to_a_message_we_never_sent_is_422_naming_reply_to(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    body = {"to": PERSON, "text": {"body": "re"}, "reply_to": "msg_01m9700000000000000000000"}

    response = await client.post("/v1/messages", json=body, headers=headers_for("admin"))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"] == "reply_to: no message msg_01m9700000000000000000000"
    assert error["details"]["field"] == "reply_to"
    assert await stored_messages(hub) == 0


# --- request bodies: content type, encoding, size ----------------------------------------

SIXTY_MB = 60 * 1024 * 1024


def text_message(**extra: Any) -> dict[str, Any]:
    return {"to": PERSON, "text": {"body": "hello"}, **extra}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


async def stored_messages(hub: Hub) -> int:
    async with hub.db.read() as conn:
        return len(await messages_q.statuses_by_id(conn))


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", None]
)
async def test_a_body_that_is_not_json_is_415_naming_the_content_type(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers, content_type: str | None
) -> None:
    headers = headers_for("admin")
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = await client.post(
        "/v1/messages", content=orjson.dumps(text_message()), headers=headers
    )

    error = assert_error(response, 415, "unsupported_media_type")
    assert error["message"].startswith(f"Content-Type: {content_type or 'missing'}")
    assert "application/json" in error["message"]
    assert error["details"]["field"] == "Content-Type"
    assert await stored_messages(hub) == 0


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"]
)
async def test_json_content_types_with_parameters_or_a_json_suffix_are_accepted(
    client: httpx.AsyncClient, headers_for: Headers, content_type: str
) -> None:
    response = await client.post(
        "/v1/messages",
        content=orjson.dumps(text_message()),
        headers={**headers_for("admin"), "Content-Type": content_type},
    )

    assert response.status_code == 202, response.text


@pytest.mark.usefixtures("channel")
async def test_a_body_that_is_not_utf8_is_400_naming_the_body_and_the_byte(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    body = b'{"to": "+14155552671", "text": {"body": "caf\xe9"}}'  # Latin-1

    response = await client.post(
        "/v1/messages", content=body, headers={**headers_for("admin"), **JSON}
    )

    error = assert_error(response, 400, "invalid_encoding")
    offset = body.index(b"\xe9")
    assert error["message"].startswith(f"body: not UTF-8 (byte 0xe9 at offset {offset})")
    assert error["details"] == {"field": "body", "offset": offset}
    assert await stored_messages(hub) == 0


@pytest.mark.usefixtures("channel")
async def test_a_body_of_exactly_the_limit_is_read(
    client: httpx.AsyncClient, settings: Settings, headers_for: Headers
) -> None:
    message = orjson.dumps(text_message())
    body = message + b" " * (settings.max_request_bytes - len(message))  # JSON allows it

    response = await client.post(
        "/v1/messages", content=body, headers={**headers_for("admin"), **JSON}
    )

    assert response.status_code == 202, response.text


@pytest.mark.usefixtures("channel")
async def test_a_body_one_byte_over_the_limit_is_413_naming_the_setting(
    client: httpx.AsyncClient, hub: Hub, settings: Settings, headers_for: Headers
) -> None:
    message = orjson.dumps(text_message())
    body = message + b" " * (settings.max_request_bytes + 1 - len(message))

    response = await client.post(
        "/v1/messages", content=body, headers={**headers_for("admin"), **JSON}
    )

    error = assert_error(response, 413, "payload_too_large")
    assert "WAHUB_MAX_REQUEST_BYTES" in error["message"]
    assert error["details"]["max_bytes"] == settings.max_request_bytes
    assert await stored_messages(hub) == 0


async def http_exchange(url: str, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then the chunks over a raw connection, stopping as soon as an answer
    arrives: (the answer's status line and headers, body bytes sent before it came).
    A server that never answers fails the test after two minutes instead of hanging it."""
    async with asyncio.timeout(120):
        return await _exchange(url, head, body_chunks)


async def _exchange(url: str, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
    sent = 0
    try:
        writer.write(head)
        await writer.drain()
        for chunk in body_chunks:
            if answer.done():
                break
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server answered and closed: the answer is in the reader
            sent += len(chunk)
        return await answer, sent
    finally:
        answer.cancel()
        writer.close()


def request_head(url: str, key: str, framing: str) -> bytes:
    return (
        f"POST /v1/messages HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n{framing}\r\n"
    ).encode()


@pytest.mark.usefixtures("channel")
async def test_a_60_mb_body_is_refused_with_413_before_the_client_has_sent_it(
    live_server: str, api_keys: dict[str, str]
) -> None:
    head = request_head(live_server, api_keys["admin"], f"Content-Length: {SIXTY_MB}\r\n")
    chunks = (b" " * 65536 for _ in range(SIXTY_MB // 65536))

    answer, sent = await http_exchange(live_server, head, chunks)

    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert sent < SIXTY_MB // 4, f"the answer came only after {sent} bytes were sent"


@pytest.mark.usefixtures("channel")
async def test_a_60_mb_chunked_body_is_refused_with_413_once_the_limit_is_read(
    live_server: str, api_keys: dict[str, str], settings: Settings
) -> None:
    head = request_head(live_server, api_keys["admin"], "Transfer-Encoding: chunked\r\n")
    frame = b"10000\r\n" + b" " * 65536 + b"\r\n"  # 64 KiB of body per chunk
    chunks = (frame for _ in range(SIXTY_MB // 65536))

    answer, sent = await http_exchange(live_server, head, chunks)

    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert sent < SIXTY_MB // 4, f"the answer came only after {sent} bytes were sent"
    assert sent > settings.max_request_bytes, "without a length, the limit is found by reading"


async def test_every_json_route_refuses_a_body_that_is_not_json(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    """Every route documenting a JSON request body, except the provider receivers (which
    store deliveries raw, as signed): a router added without JsonBodyRoute fails here."""
    schema = (await client.get("/openapi.json")).json()
    checked = []
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/webhooks/") or path == "/periskopewebhook":
            continue
        for method, operation in operations.items():
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = await client.request(
                method,
                url,
                content=b"to=+14155552671",
                headers={**headers_for("admin"), "Content-Type": "text/plain"},
            )
            assert response.status_code == 415, f"{method.upper()} {path}: {response.text}"
            checked.append(f"{method.upper()} {path}")
    assert "POST /v1/messages" in checked
    assert "POST /v1/campaigns" in checked


@pytest.mark.usefixtures("channel")
async def test_a_campaign_csv_that_is_not_utf8_is_400_naming_the_body(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    csv = "phone,name\n+14155552671,Zoë\n".encode("utf-16")

    response = await client.post(
        "/v1/campaigns?name=spring&templates=[]",
        content=csv,
        headers={**headers_for("admin"), "Content-Type": "text/csv"},
    )

    error = assert_error(response, 400, "invalid_encoding")
    assert error["details"]["field"] == "body"


async def test_a_campaign_upload_over_its_limit_is_413_before_a_byte_is_read(
    app: FastAPI, settings: Settings, api_keys: dict[str, str]
) -> None:
    probe = await post_declaring(
        app,
        "/v1/campaigns",
        content_length=settings.max_upload_bytes + 1,
        content_type="text/csv",
        query=b"name=spring",
        headers=[(b"authorization", f"Bearer {api_keys['admin']}".encode())],
        chunk=b"phone\n",
    )

    assert probe.status == 413
    assert b"WAHUB_MAX_UPLOAD_BYTES" in probe.body
    assert probe.reads == 0, "the body was read before its declared size was checked"
