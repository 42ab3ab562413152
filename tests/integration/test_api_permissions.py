"""Who may do what: the role x route matrix, what agents see, and the admin routes'
promise never to show a secret twice (or once, for hashes and tokens)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from wahub.domain.actors import Actor
from wahub.domain.content import SendRequest, TextBody
from wahub.domain.status import Status
from wahub.runtime import Hub
from wahub.store import messages as messages_q

Headers = Callable[[str], dict[str, str]]

PERSON = "+14155552671"
ROLES = ("admin", "agent", "viewer", "no key", "bad key")


@dataclass(frozen=True)
class World:
    """Ids the routes act on, created by the admin before each cell runs."""

    assigned_group: str
    unassigned_group: str
    message_in_assigned: str
    message_in_unassigned: str
    failed_in_assigned: str


async def admin_send(hub: Hub, admin: Actor, to: str) -> str:
    request = SendRequest(to=to, type="text", text=TextBody(body="from admin"))
    return str((await hub.messaging.send(admin, request)).message["id"])


@pytest.fixture
async def world(hub: Hub, api_keys: dict[str, str], groups: Any) -> World:
    admin = await hub.access.authenticate(api_keys["admin"])
    in_assigned = await admin_send(hub, admin, groups.assigned)
    in_unassigned = await admin_send(hub, admin, groups.unassigned)
    failed = await admin_send(hub, admin, groups.assigned)
    observed = messages_q.ObservedStatus("wamid.F", Status.FAILED, 1, tracking_id=failed)
    async with hub.db.transaction() as conn:
        await messages_q.apply_statuses(conn, [observed], time.time())
    return World(groups.assigned, groups.unassigned, in_assigned, in_unassigned, failed)


Call = Callable[[httpx.AsyncClient, dict[str, str], World], Awaitable[httpx.Response]]


def text_to(to: str) -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": "hi"}}


# route name -> (request, expected status for admin, agent, viewer, no key, bad key)
MATRIX: dict[str, tuple[Call, tuple[int, int, int, int, int]]] = {
    "send to person": (
        lambda c, h, w: c.post("/v1/messages", json=text_to(PERSON), headers=h),
        (202, 202, 403, 401, 401),
    ),
    "send to assigned group": (
        lambda c, h, w: c.post("/v1/messages", json=text_to(w.assigned_group), headers=h),
        (202, 202, 403, 401, 401),
    ),
    "send to unassigned group": (
        lambda c, h, w: c.post("/v1/messages", json=text_to(w.unassigned_group), headers=h),
        (202, 403, 403, 401, 401),
    ),
    "compat send to assigned group": (
        lambda c, h, w: c.post(
            "/api/messages/send", json={"groupJid": w.assigned_group, "content": "hi"}, headers=h
        ),
        (202, 202, 403, 401, 401),
    ),
    "compat send to unassigned group": (
        lambda c, h, w: c.post(
            "/api/messages/send", json={"groupJid": w.unassigned_group, "content": "hi"}, headers=h
        ),
        (202, 403, 403, 401, 401),
    ),
    "get message in assigned group": (
        lambda c, h, w: c.get(f"/v1/messages/{w.message_in_assigned}", headers=h),
        (200, 200, 200, 401, 401),
    ),
    "get message in unassigned group": (
        lambda c, h, w: c.get(f"/v1/messages/{w.message_in_unassigned}", headers=h),
        (200, 404, 200, 401, 401),
    ),
    "list messages": (
        lambda c, h, w: c.get("/v1/messages", headers=h),
        (200, 200, 200, 401, 401),
    ),
    "retry failed message in assigned group": (
        lambda c, h, w: c.post(f"/v1/messages/{w.failed_in_assigned}/retry", headers=h),
        (202, 202, 403, 401, 401),
    ),
    "list chats": (
        lambda c, h, w: c.get("/v1/chats", headers=h),
        (200, 200, 200, 401, 401),
    ),
    "list channels": (
        lambda c, h, w: c.get("/v1/channels", headers=h),
        (200, 200, 200, 401, 401),
    ),
    "create key": (
        lambda c, h, w: c.post("/v1/keys", json={"user": "newbie", "role": "agent"}, headers=h),
        (201, 403, 403, 401, 401),
    ),
    "list keys": (
        lambda c, h, w: c.get("/v1/keys", headers=h),
        (200, 403, 403, 401, 401),
    ),
    "create channel": (
        lambda c, h, w: c.post(
            "/v1/channels",
            json={"name": "second", "phone_number_id": "2", "access_token": "t"},
            headers=h,
        ),
        (201, 403, 403, 401, 401),
    ),
    "register group": (
        lambda c, h, w: c.post("/v1/chats", json={"chat_id": "120363000000000777@g.us"}, headers=h),
        (201, 403, 403, 401, 401),
    ),
    "assign group": (
        lambda c, h, w: c.post(
            "/v1/employee-groups/support/chats", json={"chat_id": w.unassigned_group}, headers=h
        ),
        (200, 403, 403, 401, 401),
    ),
    "add employee group member": (
        lambda c, h, w: c.post(
            "/v1/employee-groups/support/members", json={"user": "x"}, headers=h
        ),
        (200, 403, 403, 401, 401),
    ),
    "list subscriptions": (
        lambda c, h, w: c.get("/v1/subscriptions", headers=h),
        (200, 403, 403, 401, 401),
    ),
    "create subscription": (
        lambda c, h, w: c.post(
            "/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["message.received"]},
            headers=h,
        ),
        (201, 403, 403, 401, 401),
    ),
    "healthz needs no key": (
        lambda c, h, w: c.get("/healthz", headers=h),
        (200, 200, 200, 200, 200),
    ),
    "metrics need no key": (
        lambda c, h, w: c.get("/metrics", headers=h),
        (200, 200, 200, 200, 200),
    ),
}

CELLS = [
    pytest.param(route, role, expected[i], id=f"{route} as {role}")
    for route, (_, expected) in MATRIX.items()
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("route", "role", "expected"), CELLS)
async def test_permission_matrix(
    client: httpx.AsyncClient,
    headers_for: Headers,
    world: World,
    route: str,
    role: str,
    expected: int,
) -> None:
    if role == "no key":
        headers: dict[str, str] = {}
    elif role == "bad key":
        headers = {"Authorization": "Bearer wh_00000000_not-a-real-key"}
    else:
        headers = headers_for(role)
    call, _ = MATRIX[route]

    response = await call(client, headers, world)

    assert response.status_code == expected, f"{route} as {role}: {response.text}"
    if expected >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_x_api_key_header_authenticates_like_bearer(
    client: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    response = await client.get("/v1/messages", headers={"X-API-Key": api_keys["viewer"]})

    assert response.status_code == 200


async def test_agent_lists_only_assigned_chats_and_own_messages(
    client: httpx.AsyncClient,
    hub: Hub,
    headers_for: Headers,
    api_keys: dict[str, str],
    world: World,
) -> None:
    own = await client.post(
        "/v1/messages", json=text_to("+442071838750"), headers=headers_for("agent")
    )
    admin = await hub.access.authenticate(api_keys["admin"])
    admins_person_message = await admin_send(hub, admin, PERSON)

    agent_view = await client.get("/v1/messages", headers=headers_for("agent"))
    viewer_view = await client.get("/v1/messages", headers=headers_for("viewer"))

    agent_ids = {m["id"] for m in agent_view.json()["data"]}
    assert agent_ids == {own.json()["id"], world.message_in_assigned, world.failed_in_assigned}
    viewer_ids = {m["id"] for m in viewer_view.json()["data"]}
    assert {world.message_in_unassigned, admins_person_message} <= viewer_ids


async def test_agent_listing_an_unassigned_chat_gets_nothing(
    client: httpx.AsyncClient, headers_for: Headers, world: World
) -> None:
    response = await client.get(
        "/v1/messages", params={"chat": world.unassigned_group}, headers=headers_for("agent")
    )

    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}


async def test_chat_list_is_filtered_for_agents_only(
    client: httpx.AsyncClient, headers_for: Headers, world: World
) -> None:
    agent = await client.get("/v1/chats", headers=headers_for("agent"))
    viewer = await client.get("/v1/chats", headers=headers_for("viewer"))

    assert [c["chat_id"] for c in agent.json()["data"]] == [world.assigned_group]
    assert {c["chat_id"] for c in viewer.json()["data"]} == {
        world.assigned_group,
        world.unassigned_group,
    }


async def test_assigning_a_group_lets_the_agent_send_to_it(
    client: httpx.AsyncClient, headers_for: Headers, world: World
) -> None:
    before = await client.post(
        "/v1/messages", json=text_to(world.unassigned_group), headers=headers_for("agent")
    )
    assigned = await client.post(
        "/v1/employee-groups/support/chats",
        json={"chat_id": world.unassigned_group},
        headers=headers_for("admin"),
    )
    after = await client.post(
        "/v1/messages", json=text_to(world.unassigned_group), headers=headers_for("agent")
    )

    assert (before.status_code, assigned.status_code, after.status_code) == (403, 200, 202)


# --- admin routes ------------------------------------------------------------------------


async def test_created_key_is_shown_once_and_works(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    created = await client.post(
        "/v1/keys", json={"user": "dana", "role": "viewer"}, headers=headers_for("admin")
    )
    listed = await client.get("/v1/keys", headers=headers_for("admin"))

    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith(f"wh_{created.json()['prefix']}_")
    assert created.json()["role"] == "viewer"
    usable = await client.get("/v1/messages", headers={"X-API-Key": key})
    assert usable.status_code == 200
    assert key not in listed.text
    dana = [k for k in listed.json()["data"] if k["user"] == "dana"]
    assert len(dana) == 1
    assert set(dana[0]) == {"id", "user_id", "user", "role", "prefix", "created_at", "revoked_at"}


async def test_key_with_unknown_role_is_422_naming_role(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/keys", json={"user": "dana", "role": "root"}, headers=headers_for("admin")
    )

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("role: Input should be")


async def test_channel_is_created_without_ever_returning_its_token(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    body = {
        "name": "sales",
        "phone_number_id": "123456",
        "access_token": "EAAG-very-secret-token",
        "phone_number": "+15550009999",
        "rate_per_second": 20,
    }

    created = await client.post("/v1/channels", json=body, headers=headers_for("admin"))
    listed = await client.get("/v1/channels", headers=headers_for("viewer"))

    assert created.status_code == 201, created.text
    assert created.json()["rate_per_second"] == 20
    assert created.json()["phone_number_id"] == "123456"
    for response in (created, listed):
        assert "EAAG-very-secret-token" not in response.text
        assert "credentials" not in response.text
        assert "access_token" not in response.text
    assert [c["name"] for c in listed.json()["data"]] == ["sales"]


async def test_unknown_fields_in_admin_bodies_are_refused(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/chats",
        json={"chat_id": "120363000000000777@g.us", "owner": "me"},
        headers=headers_for("admin"),
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"] == [
        {"field": "owner", "reason": "Extra inputs are not permitted"}
    ]


async def test_templates_are_registered_and_listed_per_channel(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    path = f"/v1/channels/{channel['id']}/templates"
    template = {"name": "order_update", "language": "en_US", "body_parameters": 2}

    created = await client.post(path, json=template, headers=headers_for("admin"))
    listed = await client.get(path, headers=headers_for("agent"))
    missing = await client.get("/v1/channels/ch_nope/templates", headers=headers_for("agent"))

    assert created.status_code == 201
    assert [(t["name"], t["body_parameters"], t["category"]) for t in listed.json()["data"]] == [
        ("order_update", 2, "utility")
    ]
    assert missing.status_code == 404


async def test_compat_send_answers_in_the_seed_shape(
    client: httpx.AsyncClient, headers_for: Headers, world: World
) -> None:
    response = await client.post(
        "/api/messages/send",
        json={"groupJid": world.assigned_group, "content": "Müşteri dosyasi güncellendi ✓"},
        headers=headers_for("agent"),
    )

    assert response.status_code == 202
    body = response.json()
    assert body == {"success": True, "messageId": body["messageId"], "status": "pending"}
    stored = await client.get(f"/v1/messages/{body['messageId']}", headers=headers_for("agent"))
    assert stored.json()["content"]["text"]["body"] == "Müşteri dosyasi güncellendi ✓"
    assert stored.json()["chat_id"] == world.assigned_group


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"groupJid": "+14155552671", "content": "hi"}, "groupJid: expected a group id"),
        ({"groupJid": "120363000000000555@g.us", "content": "hi"}, "groupJid: unknown group"),
        ({"groupJid": "120363000000000001@g.us", "content": "  "}, "content: text must not be"),
        ({"content": "hi"}, "groupJid: field required"),
    ],
)
async def test_compat_send_errors_name_the_seed_fields(
    client: httpx.AsyncClient,
    headers_for: Headers,
    world: World,
    body: dict[str, Any],
    expected: str,
) -> None:
    response = await client.post("/api/messages/send", json=body, headers=headers_for("admin"))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(expected)
