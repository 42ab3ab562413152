"""``/v1/messages`` over the real app and a real SQLite file: acceptance, idempotency,
validation, reading with history, listing, retry; plus the error shape, health and
metrics every route shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from wahub.api.serializers import MessageOut
from wahub.app import create_app
from wahub.config import Settings
from wahub.domain.errors import StoreUnavailable
from wahub.domain.status import Status
from wahub.runtime import Hub
from wahub.store import messages as messages_q
from wahub.store.schema import messages

Headers = Callable[[str], dict[str, str]]

PERSON = "+14155552671"
PERSON_CHAT = "14155552671@s.whatsapp.net"
OTHER_PERSON = "+442071838750"


def text_message(to: str = PERSON, body: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": body}, **extra}


async def message_count(hub: Hub) -> int:
    async with hub.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(messages))).scalar_one())


async def apply_status(hub: Hub, message_id: str, status: Status, *, wamid: str) -> None:
    """What the inbox processor does for a status webhook that echoes our id."""
    observed = messages_q.ObservedStatus(wamid, status, int(time.time()), tracking_id=message_id)
    async with hub.db.transaction() as conn:
        await messages_q.apply_statuses(conn, [observed], time.time())


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


# --- sending -----------------------------------------------------------------------------


@pytest.mark.usefixtures("channel")
async def test_send_answers_202_with_the_committed_message(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    response = await client.post("/v1/messages", json=text_message(), headers=headers_for("agent"))

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["to"] == "14155552671"
    assert body["chat_id"] == PERSON_CHAT
    assert body["content"] == {"type": "text", "text": {"body": "hello", "preview_url": False}}
    assert response.headers["location"] == f"/v1/messages/{body['id']}"
    # Read through a separate connection: the row is committed, not just in a transaction.
    async with hub.db.read() as conn:
        row = await messages_q.get_message(conn, body["id"])
    assert row is not None
    assert row["status"] == "queued"
    assert row["chat_id"] == PERSON_CHAT


@pytest.mark.usefixtures("channel")
async def test_serialized_message_has_exactly_the_documented_fields(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post("/v1/messages", json=text_message(), headers=headers_for("admin"))

    body = response.json()
    assert set(body) == set(MessageOut.model_fields) - {"history"}
    for hidden in ("idempotency_key", "request_hash", "lease_owner", "lease_until", "seq"):
        assert hidden not in body
    assert body["created_at"].endswith("Z")
    assert datetime.fromisoformat(body["created_at"]).timestamp() == pytest.approx(
        time.time(), abs=60
    )
    assert body["sent_at"] is None
    assert body["error"] is None


@pytest.mark.usefixtures("channel")
async def test_same_idempotency_key_and_body_returns_the_same_message_with_200(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    headers = {**headers_for("agent"), "Idempotency-Key": "order-17"}

    first = await client.post("/v1/messages", json=text_message(), headers=headers)
    second = await client.post("/v1/messages", json=text_message(), headers=headers)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert await message_count(hub) == 1


@pytest.mark.usefixtures("channel")
async def test_same_idempotency_key_with_another_body_is_409(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    headers = {**headers_for("agent"), "Idempotency-Key": "order-17"}
    first = await client.post("/v1/messages", json=text_message(body="one"), headers=headers)

    second = await client.post("/v1/messages", json=text_message(body="two"), headers=headers)

    error = assert_error(second, 409, "conflict")
    assert error["details"]["message_id"] == first.json()["id"]
    assert await message_count(hub) == 1


@pytest.mark.usefixtures("channel")
async def test_idempotency_keys_of_different_users_are_independent(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    body = text_message()

    mine = await client.post(
        "/v1/messages", json=body, headers={**headers_for("agent"), "Idempotency-Key": "k1"}
    )
    theirs = await client.post(
        "/v1/messages", json=body, headers={**headers_for("admin"), "Idempotency-Key": "k1"}
    )

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert await message_count(hub) == 2


# --- validation --------------------------------------------------------------------------

TEMPLATE = {"name": "order_update", "language": {"code": "en_US"}}

# (case, request body, text the error message must contain: the field, and the reason)
VALIDATION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("invalid phone", text_message(to="+1 12"), "to: '+1 12' is not a valid phone number"),
    ("empty text", text_message(body=""), "text.body: String should have at least 1 character"),
    (
        "text of 4097 characters",
        text_message(body="x" * 4097),
        "text.body: String should have at most 4096 characters",
    ),
    ("unknown type", {**text_message(), "type": "sticker"}, "type: Input should be 'text'"),
    ("missing to", {"type": "text", "text": {"body": "hi"}}, "to: field required"),
    ("to of wrong type", text_message(to=4155552671), "to: Input should be a valid string"),  # type: ignore[arg-type]
    (
        "priority of wrong type",
        text_message(priority="high"),
        "priority: Input should be a valid integer",
    ),
    (
        "template not registered",
        {"to": PERSON, "type": "template", "template": {**TEMPLATE, "name": "nope"}},
        "template.name: template 'nope' (en_US) is not registered",
    ),
    (
        "template parameter count mismatch",
        {"to": PERSON, "type": "template", "template": TEMPLATE},
        "template.components: 'order_update' takes 1 body parameter(s), 0 given",
    ),
    ("unknown group", text_message(to="120363999999999999@g.us"), "to: unknown group"),
    ("readonly group", text_message(to="120363000000000009@g.us"), "to: our number is not a"),
    ("unknown channel", text_message(channel_id="ch_nope"), "channel_id: unknown channel"),
]


@pytest.fixture
async def send_setup(hub: Hub, channel: dict[str, Any]) -> None:
    await hub.channels.add_template(
        channel["id"], name="order_update", language="en_US", body_parameters=1, category="utility"
    )
    await hub.channels.register_group(
        chat_id="120363000000000009@g.us", name="Old group", channel_id=None, readonly=True
    )


@pytest.mark.usefixtures("send_setup")
@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=case) for case, body, expected in VALIDATION_CASES],
)
async def test_invalid_send_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers, body: dict[str, Any], expected: str
) -> None:
    response = await client.post("/v1/messages", json=body, headers=headers_for("admin"))

    error = assert_error(response, 422, "validation_error")
    assert expected in error["message"]
    assert await message_count(hub) == 0


@pytest.mark.usefixtures("channel")
async def test_a_national_number_without_a_default_region_is_422_asking_for_a_country_code(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/messages", json=text_message(to="0151 2345 6789"), headers=headers_for("admin")
    )

    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith("to: '0151 2345 6789' has no country code"), error
    assert "WAHUB_DEFAULT_REGION" in error["message"], error
    assert error["details"]["field"] == "to"
    assert await message_count(hub) == 0


@pytest.mark.usefixtures("channel")
async def test_a_number_newer_than_the_phone_library_can_be_sent_to(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    # The same rule as group sync and lookup: a possible number, not only a known range.
    response = await client.post(
        "/v1/messages", json=text_message(to="+49 1234 567890"), headers=headers_for("admin")
    )

    assert response.status_code == 202, response.text
    assert response.json()["chat_id"] == "491234567890@s.whatsapp.net"


@pytest.mark.usefixtures("channel")
async def test_more_than_one_channel_without_channel_id_is_422(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await hub.channels.create(name="second", phone_number_id="2", access_token="t2")

    response = await client.post("/v1/messages", json=text_message(), headers=headers_for("admin"))

    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith("channel_id is required")
    assert error["details"]["field"] == "channel_id"
    assert len(error["details"]["choices"]) == 2


@pytest.mark.usefixtures("channel")
async def test_request_validation_lists_every_bad_field(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    body = {"type": "text", "text": {"body": "x" * 4097}, "colour": "red"}

    response = await client.post("/v1/messages", json=body, headers=headers_for("admin"))

    error = assert_error(response, 422, "validation_error")
    assert error["details"]["errors"] == [
        {"field": "to", "reason": "field required"},
        {"field": "text.body", "reason": "String should have at most 4096 characters"},
        {"field": "colour", "reason": "Extra inputs are not permitted"},
    ]


async def test_invalid_json_is_422_invalid_json(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/messages",
        content=b'{"to": "+14155552671",',
        headers={**headers_for("admin"), "Content-Type": "application/json"},
    )

    error = assert_error(response, 422, "invalid_json")
    assert error["message"].startswith("request body is not valid JSON")


# --- reading -----------------------------------------------------------------------------


@pytest.mark.usefixtures("channel")
async def test_get_returns_the_message_with_its_status_history(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    sent = await client.post("/v1/messages", json=text_message(), headers=headers_for("admin"))
    message_id = sent.json()["id"]
    await apply_status(hub, message_id, Status.SENT, wamid="wamid.A1")

    response = await client.get(f"/v1/messages/{message_id}", headers=headers_for("viewer"))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    assert body["provider_message_id"] == "wamid.A1"
    assert body["sent_at"] is not None
    assert [(h["status"], h["source"]) for h in body["history"]] == [
        ("queued", "api"),
        ("sent", "webhook"),
    ]
    for entry in body["history"]:
        assert set(entry) == {"status", "source", "attempt", "at", "error_code", "detail"}
        assert datetime.fromisoformat(entry["at"]).tzinfo is not None


async def test_get_unknown_message_is_404(client: httpx.AsyncClient, headers_for: Headers) -> None:
    response = await client.get("/v1/messages/msg_nope", headers=headers_for("admin"))

    error = assert_error(response, 404, "not_found")
    assert "msg_nope" in error["message"]


@pytest.mark.usefixtures("channel")
async def test_list_pages_newest_first_with_a_cursor(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    ids = []
    for n in range(7):
        response = await client.post(
            "/v1/messages", json=text_message(body=f"m{n}"), headers=headers_for("admin")
        )
        ids.append(response.json()["id"])

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/messages", params=params, headers=headers_for("admin"))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([m["id"] for m in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == list(reversed(ids))


@pytest.mark.usefixtures("channel")
async def test_list_filters_by_chat_and_status(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    first = (await client.post("/v1/messages", json=text_message(), headers=admin)).json()
    other = (
        await client.post("/v1/messages", json=text_message(to=OTHER_PERSON), headers=admin)
    ).json()
    await apply_status(hub, other["id"], Status.FAILED, wamid="wamid.F1")

    by_chat = await client.get("/v1/messages", params={"chat": PERSON}, headers=admin)
    by_status = await client.get("/v1/messages", params={"status": "failed"}, headers=admin)

    assert [m["id"] for m in by_chat.json()["data"]] == [first["id"]]
    assert [m["id"] for m in by_status.json()["data"]] == [other["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "pending"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
    ],
)
async def test_list_rejects_bad_query_parameters(
    client: httpx.AsyncClient, headers_for: Headers, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/messages", params=params, headers=headers_for("admin"))

    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith(f"{field}: ")


# --- retry -------------------------------------------------------------------------------


@pytest.mark.usefixtures("channel")
async def test_retry_of_a_message_that_did_not_fail_is_409(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    sent = await client.post("/v1/messages", json=text_message(), headers=headers_for("admin"))

    response = await client.post(
        f"/v1/messages/{sent.json()['id']}/retry", headers=headers_for("admin")
    )

    error = assert_error(response, 409, "conflict")
    assert error["details"]["status"] == "queued"


@pytest.mark.usefixtures("channel")
async def test_retry_of_a_failed_message_queues_it_again(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    sent = await client.post("/v1/messages", json=text_message(), headers=headers_for("admin"))
    message_id = sent.json()["id"]
    await apply_status(hub, message_id, Status.FAILED, wamid="wamid.F2")

    response = await client.post(f"/v1/messages/{message_id}/retry", headers=headers_for("admin"))

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["failed_at"] is None
    assert [h["status"] for h in body["history"]] == ["queued", "failed", "queued"]


# --- shared behaviour: error shape, probes, metrics, docs ---------------------------------


async def test_unknown_route_is_404_and_wrong_method_405_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    assert_error(await client.get("/v1/nothing-here"), 404, "not_found")
    error = assert_error(await client.delete("/v1/messages"), 405, "method_not_allowed")
    assert "DELETE" in error["message"]


async def test_unexpected_exception_is_a_generic_500_without_internals(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path")

    app.add_api_route("/boom", explode)

    response = await client.get("/boom")

    error = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in error["message"]
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


async def test_root_and_healthz_need_no_key(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    health = await client.get("/healthz")

    assert (root.status_code, root.json()) == (200, {"message": "wahub is running", "status": "ok"})
    assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok"})


async def test_healthz_is_503_when_the_database_read_fails(
    client: httpx.AsyncClient, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_read() -> Any:
        raise StoreUnavailable("database wahub.db unavailable: disk I/O error")

    monkeypatch.setattr(hub.db, "read", broken_read)

    response = await client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "unavailable"
    assert body["error"]["code"] == "store_unavailable"
    assert "disk I/O error" in body["error"]["message"]


async def test_database_outage_is_503_store_unavailable(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = headers_for("admin")  # the key exists before the outage

    def broken_read() -> Any:
        raise StoreUnavailable("database wahub.db unavailable: unable to open database file")

    monkeypatch.setattr(hub.db, "read", broken_read)

    response = await client.get("/v1/messages", headers=headers)

    error = assert_error(response, 503, "store_unavailable")
    assert "unable to open database file" in error["message"]


@pytest.mark.usefixtures("channel")
async def test_metrics_count_messages_by_status_and_requests_by_route_template(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    sent = await client.post("/v1/messages", json=text_message(), headers=admin)
    await client.get(f"/v1/messages/{sent.json()['id']}", headers=admin)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'wahub_messages{status="queued"} 1.0' in text
    assert 'wahub_messages{status="failed"} 0.0' in text
    assert 'wahub_inbox_deliveries{status="pending"} 0.0' in text
    assert 'wahub_http_requests_total{method="POST",route="/v1/messages",status="202"} 1.0' in text
    assert 'route="/v1/messages/{message_id}",status="200"} 1.0' in text
    assert sent.json()["id"] not in text  # ids would make one series per message


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    spec = (await client.get("/openapi.json")).json()

    assert docs.status_code == 200
    for path in ("/v1/messages", "/v1/messages/{message_id}", "/api/messages/send", "/healthz"):
        assert path in spec["paths"], path


@pytest.mark.parametrize("start_workers", [False, True])
async def test_app_without_a_hub_builds_starts_and_stops_its_own(
    settings: Settings, start_workers: bool
) -> None:
    app = create_app(settings, start_workers=start_workers)

    async with app.router.lifespan_context(app):
        own_hub: Hub = app.state.hub
        assert (own_hub.outbox is not None) is start_workers
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200

    assert own_hub.realtime._task is not None
    assert own_hub.realtime._task.done()


async def test_app_leaves_a_hub_it_was_given_running(app: FastAPI, hub: Hub) -> None:
    async with app.router.lifespan_context(app):
        pass

    assert hub.realtime._task is not None
    assert not hub.realtime._task.done()
    async with hub.db.read() as conn:
        assert await messages_q.count_by_status(conn) == {}
