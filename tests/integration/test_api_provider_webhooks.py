"""``/v1/webhooks/whapi``, ``/v1/webhooks/periskope`` and ``/periskopewebhook``: the
secret or signature checked first (401, nothing stored), each delivery stored once
before the 200, oversize bodies refused, unknown events stored, and a receiver whose
secret is not configured refusing with 503."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from random_secrets import PERISKOPE_KEY, WHAPI_SECRET
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import inbox

MAX_BYTES = 64 * 1024  # conftest's settings

WHAPI_BODY = orjson.dumps(
    {
        "messages": [
            {
                "id": "p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw",
                "from_me": False,
                "type": "text",
                "chat_id": "919984351847@s.whatsapp.net",
                "timestamp": 1712995245,
                "text": {"body": "Hello world"},
                "from": "919984351847",
                "from_name": "Gerald",
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "MANTIS-M72HC",
    }
)

PERISKOPE_BODY = orjson.dumps(
    {
        "event": "message.created",
        "data": {
            "message_id": "false_919004312345@c.us_3EB0C767D26A1B2C_919004312345@c.us",
            "chat_id": "919004312345@c.us",
            "org_phone": "918527184400@c.us",
            "body": "Is the flat still available?",
            "message_type": "chat",
            "from_me": False,
            "timestamp": "2024-05-13 11:19:34+00",
        },
        "org_id": "org-1",
        "timestamp": "2024-05-13T11:19:35.000Z",
    }
)

PERISKOPE_URLS = ["/v1/webhooks/periskope", "/periskopewebhook"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "whapi_webhook_secret": SecretStr(WHAPI_SECRET),
            "periskope_webhook_secret": SecretStr(PERISKOPE_KEY),
        }
    )


def periskope_headers(body: bytes, key: str = PERISKOPE_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "x-periskope-signature": digest}


async def inbox_rows(hub: Hub) -> list[dict[str, Any]]:
    async with hub.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(inbox))]


# --- WHAPI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"secret": WHAPI_SECRET}, {}), ({}, {"X-Wahub-Secret": WHAPI_SECRET})],
    ids=["query", "header"],
)
async def test_whapi_delivery_with_the_secret_is_stored_once(
    client: httpx.AsyncClient, hub: Hub, params: dict[str, str], headers: dict[str, str]
) -> None:
    for _ in range(2):
        response = await client.post(
            "/v1/webhooks/whapi",
            params=params,
            content=WHAPI_BODY,
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    rows = await inbox_rows(hub)
    assert len(rows) == 1
    row = rows[0]
    assert (row["provider"], row["status"], row["body"]) == ("whapi", "pending", WHAPI_BODY)
    assert len(row["dedupe_key"]) == 64
    assert WHAPI_SECRET not in orjson.dumps(row["headers"]).decode()


async def test_whapi_redelivery_serialised_differently_is_still_stored_once(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    spaced = orjson.dumps(orjson.loads(WHAPI_BODY), option=orjson.OPT_INDENT_2)

    for body in (WHAPI_BODY, spaced):
        response = await client.post("/v1/webhooks/whapi?secret=" + WHAPI_SECRET, content=body)
        assert response.status_code == 200

    assert [r["body"] for r in await inbox_rows(hub)] == [WHAPI_BODY]


@pytest.mark.parametrize(
    ("params", "headers"),
    [({}, {}), ({"secret": "wrong"}, {}), ({}, {"X-Wahub-Secret": "wrong"}), ({"secret": ""}, {})],
    ids=["missing", "wrong query", "wrong header", "empty"],
)
async def test_whapi_without_the_right_secret_is_401_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/webhooks/whapi", params=params, content=WHAPI_BODY, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert WHAPI_SECRET not in response.text
    assert await inbox_rows(hub) == []


async def test_whapi_unknown_event_family_and_junk_are_stored_not_500(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    presence = orjson.dumps(
        {"presences": [{"contact_id": "1", "status": "online"}], "event": {"type": "presences"}}
    )
    junk = b"{not json"

    for body in (presence, junk):
        response = await client.post("/v1/webhooks/whapi?secret=" + WHAPI_SECRET, content=body)
        assert response.status_code == 200

    assert sorted(r["body"] for r in await inbox_rows(hub)) == sorted([presence, junk])


async def test_whapi_oversize_body_is_413_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    big = b'{"pad":"' + b"x" * MAX_BYTES + b'"}'

    response = await client.post("/v1/webhooks/whapi?secret=" + WHAPI_SECRET, content=big)

    assert response.status_code == 413
    assert await inbox_rows(hub) == []


# --- Periskope ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", PERISKOPE_URLS)
async def test_periskope_signed_delivery_is_stored_once(
    client: httpx.AsyncClient, hub: Hub, url: str
) -> None:
    for _ in range(2):
        response = await client.post(
            url, content=PERISKOPE_BODY, headers=periskope_headers(PERISKOPE_BODY)
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    rows = await inbox_rows(hub)
    assert len(rows) == 1
    assert (rows[0]["provider"], rows[0]["body"]) == ("periskope", PERISKOPE_BODY)
    assert "x-periskope-signature" in rows[0]["headers"]


async def test_both_periskope_paths_share_one_inbox_row_per_message(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    for url in PERISKOPE_URLS:
        await client.post(url, content=PERISKOPE_BODY, headers=periskope_headers(PERISKOPE_BODY))

    assert len(await inbox_rows(hub)) == 1


@pytest.mark.parametrize("url", PERISKOPE_URLS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-periskope-signature": "0" * 64},
        periskope_headers(PERISKOPE_BODY, "another-key"),
        periskope_headers(b"{}"),
    ],
    ids=["missing", "zeros", "other key", "other body"],
)
async def test_periskope_bad_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub, url: str, headers: dict[str, str]
) -> None:
    response = await client.post(url, content=PERISKOPE_BODY, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert await inbox_rows(hub) == []


async def test_periskope_other_events_are_stored(client: httpx.AsyncClient, hub: Hub) -> None:
    ticket = orjson.dumps({"event": "ticket.created", "data": {"ticket_id": "t1"}})

    response = await client.post(
        "/v1/webhooks/periskope", content=ticket, headers=periskope_headers(ticket)
    )

    assert response.status_code == 200
    assert [r["body"] for r in await inbox_rows(hub)] == [ticket]


@pytest.mark.parametrize("url", PERISKOPE_URLS)
async def test_periskope_oversize_body_is_413_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub, url: str
) -> None:
    big = b'{"pad":"' + b"x" * MAX_BYTES + b'"}'

    response = await client.post(url, content=big, headers=periskope_headers(big))

    assert response.status_code == 413
    assert await inbox_rows(hub) == []


# --- not configured ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/v1/webhooks/whapi?secret=anything", {}),
        ("/v1/webhooks/periskope", periskope_headers(PERISKOPE_BODY, "")),
        ("/periskopewebhook", periskope_headers(PERISKOPE_BODY, "")),
    ],
)
async def test_a_receiver_without_its_secret_refuses_with_503(
    client: httpx.AsyncClient, hub: Hub, url: str, headers: dict[str, str]
) -> None:
    # Handlers read the hub's settings per request.
    hub.settings = hub.settings.model_copy(
        update={"whapi_webhook_secret": None, "periskope_webhook_secret": SecretStr("")}
    )

    response = await client.post(url, content=PERISKOPE_BODY, headers=headers)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_not_configured"
    assert await inbox_rows(hub) == []
