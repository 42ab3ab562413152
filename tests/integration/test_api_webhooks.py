"""``/v1/webhooks/cloudapi``: Meta's handshake, and signed deliveries stored exactly once
before the 200 (invariant 9), with nothing stored for a bad signature or a huge body."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from asgi_probe import post_declaring
from random_secrets import APP_SECRET, VERIFY_TOKEN  # conftest's settings
from wahub.runtime import Hub
from wahub.store.schema import inbox

URL = "/v1/webhooks/cloudapi"
MAX_BYTES = 64 * 1024

BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
    b'"value":{"statuses":[{"id":"wamid.A","status":"delivered","timestamp":"1700000000"}]}}]}]}'
)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}


async def inbox_rows(hub: Hub) -> list[dict[str, Any]]:
    async with hub.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(inbox))]


# --- handshake ---------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge_as_plain_text(client: httpx.AsyncClient) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }

    response = await client.get(URL, params=params)

    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
    ids=["wrong token", "wrong mode", "no token", "no parameters"],
)
async def test_handshake_with_wrong_parameters_is_403(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(URL, params=params)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert VERIFY_TOKEN not in response.text


# --- deliveries --------------------------------------------------------------------------


async def test_signed_delivery_is_stored_once_then_acknowledged(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    response = await client.post(URL, content=BODY, headers=signed_headers(BODY))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    rows = await inbox_rows(hub)
    assert len(rows) == 1
    row = rows[0]
    assert row["provider"] == "cloudapi"
    assert row["status"] == "pending"
    assert row["body"] == BODY
    assert row["dedupe_key"] == hashlib.sha256(BODY).hexdigest()
    assert row["headers"]["content-type"] == "application/json"
    assert "authorization" not in row["headers"]


async def test_redelivery_of_the_same_body_is_acknowledged_but_stored_once(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    first = await client.post(URL, content=BODY, headers=signed_headers(BODY))
    second = await client.post(URL, content=BODY, headers=signed_headers(BODY))

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(await inbox_rows(hub)) == 1


async def test_different_bodies_are_different_deliveries(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    other = BODY.replace(b"wamid.A", b"wamid.B")

    await client.post(URL, content=BODY, headers=signed_headers(BODY))
    await client.post(URL, content=other, headers=signed_headers(other))

    assert sorted(r["body"] for r in await inbox_rows(hub)) == sorted([BODY, other])


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, sign(BODY, "another-secret"), sign(BODY)[7:]],
    ids=["missing", "zeros", "other secret", "no sha256= prefix"],
)
async def test_bad_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub, signature: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature

    response = await client.post(URL, content=BODY, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert await inbox_rows(hub) == []


async def test_signature_of_a_tampered_body_is_401(client: httpx.AsyncClient, hub: Hub) -> None:
    tampered = BODY.replace(b"delivered", b"read")

    response = await client.post(URL, content=tampered, headers=signed_headers(BODY))

    assert response.status_code == 401
    assert await inbox_rows(hub) == []


async def test_oversize_body_is_413_by_content_length_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    big = b'{"pad":"' + b"x" * MAX_BYTES + b'"}'

    response = await client.post(URL, content=big, headers=signed_headers(big))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await inbox_rows(hub) == []


async def test_oversize_content_length_is_refused_without_reading_the_body(
    app: FastAPI, hub: Hub
) -> None:
    probe = await post_declaring(
        app, URL, content_length=MAX_BYTES + 1, content_type="application/json"
    )

    assert probe.sent[0]["type"] == "http.response.start"
    assert probe.status == 413
    assert probe.reads == 0, "the body was read before its declared size was checked"
    assert await inbox_rows(hub) == []


async def test_oversize_chunked_body_without_length_is_413(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    chunk = b"x" * 8192
    chunks = MAX_BYTES // len(chunk) + 2
    body = chunk * chunks

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield chunk

    response = await client.post(URL, content=stream(), headers=signed_headers(body))

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert await inbox_rows(hub) == []


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient, hub: Hub) -> None:
    body = b'{"pad":"' + b"x" * (MAX_BYTES - 10) + b'"}'
    assert len(body) == MAX_BYTES

    response = await client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    assert len(await inbox_rows(hub)) == 1


async def test_malformed_json_is_stored_for_the_processor_to_dead_letter(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    body = b'{"entry": [not json'

    response = await client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    assert [r["body"] for r in await inbox_rows(hub)] == [body]


async def test_webhook_needs_no_api_key_but_ignores_one(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    headers = {**signed_headers(BODY), "Authorization": "Bearer not-a-key"}

    response = await client.post(URL, content=BODY, headers=headers)

    assert response.status_code == 200
    assert "authorization" not in (await inbox_rows(hub))[0]["headers"]
