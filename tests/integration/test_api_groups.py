"""Accounts, group sync and lookup over the HTTP API, against the sandbox's WHAPI channel
over real HTTP: background sync on account changes, the seed-compatible shapes exactly,
422 for bad phones, permissions, health and metrics, 429 handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from wahub.config import Settings
from wahub.embedded import add_sandbox_whapi_channel
from wahub.providers.sandbox import Sandbox, SandboxConfig, lid_for
from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]

OWN = "14155550100"  # the sandbox WHAPI channel's own number
G1 = "120363000000000201@g.us"
G2 = "120363000000000202@g.us"
G3 = "120363000000000203@g.us"
LEFT = "120363000000000209@g.us"
ALICE = "4915111111111"
BOB = "4915122222222"
CAROL = "4915133333333"  # shown by linked id in G1, by phone in G2


def whapi_group(
    chat_id: str, name: str, *members: tuple[str, str], we_are_in: bool = True
) -> dict[str, Any]:
    participants = [{"id": ident, "rank": rank} for ident, rank in members]
    if we_are_in:
        participants.append({"id": OWN, "rank": "admin"})
    return {"id": chat_id, "name": name, "participants": participants}


DIRECTORY = [
    whapi_group(
        G1, "Nova Reyes - Team", (ALICE, "creator"), (BOB, "admin"), (lid_for(CAROL), "member")
    ),
    whapi_group(G2, "Leo Silva - Tour", (ALICE, "member"), (CAROL, "member")),
    whapi_group(G3, "Mara Costa - Promo", (BOB, "creator")),
    whapi_group(LEFT, "Old band", (ALICE, "creator"), we_are_in=False),
]


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Our own pacing well above the sandbox's rate limit, so tests that set a limit
    meet the provider's 429 instead of being paced below it. A test may add settings
    of its own by parametrizing ``settings`` indirectly."""
    own: dict[str, Any] = getattr(request, "param", {})
    return settings.model_copy(
        update={"group_sync_rate_per_second": 1000.0, "group_sync_burst": 1000.0, **own}
    )


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    started = Sandbox(SandboxConfig(whapi_own_phone=OWN))
    await started.start()
    started.whapi.set_groups(DIRECTORY)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def whapi_channel(hub: Hub, sandbox: Sandbox) -> dict[str, Any]:
    return await add_sandbox_whapi_channel(
        hub, sandbox.url, config=SandboxConfig(whapi_own_phone=OWN)
    )


async def create_account(
    client: httpx.AsyncClient, headers: Headers, name: str, *groups: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/accounts",
        json={"name": name, "group_ids": list(groups), **extra},
        headers=headers("admin"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def synced(
    client: httpx.AsyncClient, headers: Headers, account_id: str, *, within: float = 15.0
) -> dict[str, Any]:
    """The account once none of its groups is pending (the background sync ran)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/v1/accounts/{account_id}", headers=headers("viewer"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if all(g["sync_status"] != "pending" for g in body["groups"]):
            return body
        assert time.monotonic() < deadline, f"background sync did not finish: {body}"
        await asyncio.sleep(0.05)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


# --- accounts and background sync --------------------------------------------------------


@pytest.mark.usefixtures("whapi_channel")
async def test_creating_an_account_answers_at_once_and_syncs_its_group_in_the_background(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox
) -> None:
    sandbox.config.whapi_latency_ms = 300  # the fetch cannot finish within the request

    created = await create_account(
        client, headers_for, "Nova Reyes", whatsapp_group_id=G1.removesuffix("@g.us")
    )

    assert [(g["chat_id"], g["sync_status"]) for g in created["groups"]] == [(G1, "pending")]
    account = await synced(client, headers_for, created["id"])
    [group] = account["groups"]
    assert group["sync_status"] == "success", group
    assert group["name"] == "Nova Reyes - Team"
    assert group["member_count"] == 4  # three people and our own number
    assert group["last_synced_at"] is not None
    assert sandbox.whapi.stats()["calls"]["GET /groups/{GroupID}"] == 1


@pytest.mark.usefixtures("whapi_channel")
async def test_changing_an_account_s_group_syncs_the_new_group(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    created = await create_account(client, headers_for, "Leo Silva", G1)
    await synced(client, headers_for, created["id"])

    response = await client.patch(
        f"/v1/accounts/{created['id']}",
        json={"group_ids": [G2], "external_ref": "crm-42"},
        headers=headers_for("admin"),
    )

    assert response.status_code == 200, response.text
    assert response.json()["external_ref"] == "crm-42"
    account = await synced(client, headers_for, created["id"])
    assert [(g["chat_id"], g["sync_status"], g["member_count"]) for g in account["groups"]] == [
        (G2, "success", 3)
    ]


@pytest.mark.usefixtures("whapi_channel")
async def test_accounts_crud(client: httpx.AsyncClient, headers_for: Headers) -> None:
    first = await create_account(client, headers_for, "B artist", external_ref="crm-1")
    await create_account(client, headers_for, "A artist")

    duplicate = await client.post(
        "/v1/accounts", json={"name": "C", "external_ref": "crm-1"}, headers=headers_for("admin")
    )
    listed = await client.get("/v1/accounts", headers=headers_for("agent"))
    deleted = await client.delete(f"/v1/accounts/{first['id']}", headers=headers_for("admin"))
    gone = await client.get(f"/v1/accounts/{first['id']}", headers=headers_for("admin"))

    assert assert_error(duplicate, 409, "conflict")["details"]["field"] == "external_ref"
    assert [a["name"] for a in listed.json()["data"]] == ["A artist", "B artist"]
    assert listed.json()["total"] == 2
    assert deleted.status_code == 204
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "group_ids": ["not a group"]}, "group_ids"),
        ({"name": "x", "whatsapp_group_id": "abc@g.us"}, "group_ids"),
        ({"name": ""}, "name"),
        ({"name": "x", "channel_id": "ch_nope"}, "channel_id"),
    ],
)
async def test_a_bad_account_is_422_naming_the_field(
    client: httpx.AsyncClient, headers_for: Headers, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/accounts", json=body, headers=headers_for("admin"))

    error = assert_error(response, 422, "validation_error")
    assert field in error["message"], error


# --- sync ------------------------------------------------------------------------------


# Two attempts, not five: the failing group would otherwise wait 1+2+4+8 s to give up.
@pytest.mark.parametrize(
    "settings", [{"group_sync_max_attempts": 2}], ids=["two_attempts"], indirect=True
)
@pytest.mark.usefixtures("whapi_channel")
async def test_compat_sync_answers_the_seed_shape_and_a_failing_group_keeps_its_members(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox, hub: Hub
) -> None:
    nova = await create_account(client, headers_for, "Nova Reyes", G1)
    mara = await create_account(client, headers_for, "Mara Costa", G3)
    await synced(client, headers_for, nova["id"])
    await synced(client, headers_for, mara["id"])
    sandbox.config.whapi_fail_groups = (G3,)

    response = await client.post(
        "/functions/v1/sync-whatsapp-group-members", json={}, headers=headers_for("agent")
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "message": "Synced 1 artist groups successfully",
        "total_artists": 2,
        "success_count": 1,
        "fail_count": 1,
        "results": [
            {
                "artist_id": mara["id"],
                "artist_name": "Mara Costa",
                "status": "failed",
                "members_synced": 0,
            },
            {
                "artist_id": nova["id"],
                "artist_name": "Nova Reyes",
                "status": "success",
                "members_synced": 4,
            },
        ],
    }
    kept = await client.get(f"/v1/groups/{G3}/members", headers=headers_for("admin"))
    assert [m["phone"] for m in kept.json()["data"]] == ["+" + BOB, "+" + OWN]
    assert kept.json()["group"]["sync_status"] == "failed"
    assert kept.json()["group"]["sync_error"]


@pytest.mark.usefixtures("whapi_channel")
async def test_compat_sync_of_one_artist(client: httpx.AsyncClient, headers_for: Headers) -> None:
    nova = await create_account(client, headers_for, "Nova Reyes", G1)
    await create_account(client, headers_for, "Mara Costa", G3)

    response = await client.post(
        "/functions/v1/sync-whatsapp-group-members",
        json={"artist_id": nova["id"]},
        headers=headers_for("admin"),
    )

    body = response.json()
    assert (body["total_artists"], body["success_count"]) == (1, 1)
    assert body["results"][0]["artist_id"] == nova["id"]


@pytest.mark.usefixtures("whapi_channel")
async def test_syncing_an_unknown_account_is_404(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    v1 = await client.post(
        "/v1/groups/sync", json={"account_id": "acc_nope"}, headers=headers_for("admin")
    )
    compat = await client.post(
        "/functions/v1/sync-whatsapp-group-members",
        json={"artist_id": "acc_nope"},
        headers=headers_for("admin"),
    )

    assert_error(v1, 404, "not_found")
    assert_error(compat, 404, "not_found")


@pytest.mark.usefixtures("whapi_channel")
async def test_the_directory_sync_stores_every_group_and_marks_the_one_we_left_readonly(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/groups/sync", json={"directory": True}, headers=headers_for("admin")
    )

    assert response.status_code == 200, response.text
    assert (response.json()["success_count"], response.json()["fail_count"]) == (4, 0)
    left = await client.get(f"/v1/groups/{LEFT}/members", headers=headers_for("admin"))
    assert left.json()["group"]["readonly"] is True
    send = await client.post(
        "/v1/messages",
        json={"to": LEFT, "type": "text", "text": {"body": "hi"}},
        headers=headers_for("admin"),
    )
    error = assert_error(send, 422, "validation_error")
    assert "not a participant" in error["message"]


@pytest.mark.usefixtures("whapi_channel")
async def test_a_rate_limited_sync_waits_as_told_and_syncs_every_group(
    client: httpx.AsyncClient, headers_for: Headers, sandbox: Sandbox
) -> None:
    for name, group_id in (("A", G1), ("B", G2), ("C", G3), ("D", LEFT)):
        created = await create_account(client, headers_for, name, group_id)
        await synced(client, headers_for, created["id"])
    sandbox.config.whapi_rate_limit = 2
    sandbox.config.whapi_rate_window_s = 1.0

    response = await client.post("/v1/groups/sync", json={}, headers=headers_for("admin"))

    assert response.status_code == 200, response.text
    assert response.json()["fail_count"] == 0, response.json()
    assert sandbox.whapi.stats()["refused"].get("rate_limited", 0) > 0, "the limit was hit"


# --- lookup ------------------------------------------------------------------------------


@pytest.fixture
async def synced_accounts(
    client: httpx.AsyncClient, headers_for: Headers, whapi_channel: dict[str, Any]
) -> dict[str, str]:
    nova = await create_account(client, headers_for, "Nova Reyes", G1)
    leo = await create_account(client, headers_for, "Leo Silva", G2)
    response = await client.post("/v1/groups/sync", json={}, headers=headers_for("admin"))
    assert response.json()["fail_count"] == 0, response.json()
    return {"nova": nova["id"], "leo": leo["id"]}


async def test_compat_lookup_answers_the_seed_shape(
    client: httpx.AsyncClient, headers_for: Headers, synced_accounts: dict[str, str]
) -> None:
    response = await client.post(
        "/functions/v1/lookup-whatsapp-groups",
        json={"phone": "+49 151 1111 1111"},
        headers=headers_for("viewer"),
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "artists": [
            {
                "id": synced_accounts["leo"],
                "name": "Leo Silva",
                "whatsapp_group_id": G2.removesuffix("@g.us"),
                "whatsapp_group_name": "Leo Silva - Tour",
                "member_rank": "member",
            },
            {
                "id": synced_accounts["nova"],
                "name": "Nova Reyes",
                "whatsapp_group_id": G1.removesuffix("@g.us"),
                "whatsapp_group_name": "Nova Reyes - Team",
                "member_rank": "creator",
            },
        ],
        "count": 2,
        "cached": True,
    }


async def test_lookup_finds_a_member_shown_only_by_linked_id(
    client: httpx.AsyncClient, headers_for: Headers, synced_accounts: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/lookup", json={"phone": "0049 151 3333-3333"}, headers=headers_for("agent")
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["phone"] == "+" + CAROL
    assert [(m["account_name"], m["chat_id"], m["rank"]) for m in body["data"]] == [
        ("Leo Silva", G2, "member"),
        ("Nova Reyes", G1, "member"),
    ]
    assert body["count"] == 2


async def test_lookup_of_a_phone_in_no_group_is_empty(
    client: httpx.AsyncClient, headers_for: Headers, synced_accounts: dict[str, str]
) -> None:
    response = await client.post(
        "/functions/v1/lookup-whatsapp-groups",
        json={"phone": "+1 415 555 2671"},
        headers=headers_for("viewer"),
    )

    assert response.json() == {"success": True, "artists": [], "count": 0, "cached": True}


NEW_RANGE = "491234567890"  # a German number libphonenumber does not know as valid (yet)


@pytest.mark.parametrize("path", ["/v1/lookup", "/functions/v1/lookup-whatsapp-groups"])
async def test_a_member_in_a_range_newer_than_the_phone_library_is_listed_and_found(
    client: httpx.AsyncClient,
    headers_for: Headers,
    sandbox: Sandbox,
    whapi_channel: dict[str, Any],
    path: str,
) -> None:
    sandbox.whapi.set_groups([whapi_group(G1, "Nova Reyes - Team", (NEW_RANGE, "admin"))])
    await create_account(client, headers_for, "Nova Reyes", G1)
    synced_now = await client.post("/v1/groups/sync", json={}, headers=headers_for("admin"))
    assert synced_now.json()["fail_count"] == 0, synced_now.json()
    members = await client.get(f"/v1/groups/{G1}/members", headers=headers_for("admin"))
    assert "+" + NEW_RANGE in [m["phone"] for m in members.json()["data"]]

    response = await client.post(
        path, json={"phone": "+" + NEW_RANGE}, headers=headers_for("viewer")
    )

    assert response.status_code == 200, response.text
    assert response.json()["count"] == 1, response.json()


@pytest.mark.parametrize("path", ["/v1/lookup", "/functions/v1/lookup-whatsapp-groups"])
async def test_a_national_number_without_a_default_region_asks_for_a_country_code(
    client: httpx.AsyncClient, headers_for: Headers, path: str
) -> None:
    response = await client.post(
        path, json={"phone": "0151 2345 6789"}, headers=headers_for("viewer")
    )

    error = assert_error(response, 422, "validation_error")
    assert "country code" in error["message"], error
    assert "WAHUB_DEFAULT_REGION" in error["message"], error


@pytest.mark.parametrize("path", ["/v1/lookup", "/functions/v1/lookup-whatsapp-groups"])
@pytest.mark.parametrize("phone", ["12", "not a phone", "+49 151", "0151 23456789"])
async def test_a_bad_phone_is_422_naming_the_field(
    client: httpx.AsyncClient, headers_for: Headers, path: str, phone: str
) -> None:
    response = await client.post(path, json={"phone": phone}, headers=headers_for("viewer"))

    error = assert_error(response, 422, "validation_error")
    assert error["details"]["field"] == "phone"
    assert error["message"].startswith("phone: "), error


@pytest.mark.parametrize("path", ["/v1/lookup", "/functions/v1/lookup-whatsapp-groups"])
async def test_a_missing_phone_is_422_naming_the_field(
    client: httpx.AsyncClient, headers_for: Headers, path: str
) -> None:
    response = await client.post(path, json={}, headers=headers_for("viewer"))

    error = assert_error(response, 422, "validation_error")
    assert error["details"]["errors"][0]["field"] == "phone"


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "status"),
    [
        ("agent", "POST", "/v1/accounts", {"name": "x"}, 403),
        ("viewer", "POST", "/v1/accounts", {"name": "x"}, 403),
        ("viewer", "POST", "/v1/groups/sync", {}, 403),
        ("viewer", "POST", "/functions/v1/sync-whatsapp-group-members", {}, 403),
        ("agent", "DELETE", "/v1/accounts/acc_x", None, 403),
        ("agent", "PATCH", "/v1/accounts/acc_x", {"name": "y"}, 403),
        (None, "POST", "/v1/lookup", {"phone": "+4915111111111"}, 401),
        (None, "POST", "/functions/v1/lookup-whatsapp-groups", {"phone": "+4915111111111"}, 401),
        (None, "GET", "/v1/accounts", None, 401),
        ("viewer", "GET", "/v1/accounts", None, 200),
        ("viewer", "GET", "/v1/groups/health", None, 200),
        ("viewer", "POST", "/v1/lookup", {"phone": "+4915111111111"}, 200),
        ("agent", "POST", "/v1/groups/sync", {}, 200),
    ],
)
async def test_permissions(
    client: httpx.AsyncClient,
    headers_for: Headers,
    role: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    headers = headers_for(role) if role else {}
    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == status, response.text


async def test_an_agent_sees_members_of_assigned_groups_only(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub, synced_accounts: dict[str, str]
) -> None:
    await hub.access.add_member(group_name="support", user_name="agent")
    await hub.access.assign_chat(group_name="support", chat_id=G1)

    assigned = await client.get(f"/v1/groups/{G1}/members", headers=headers_for("agent"))
    other = await client.get(f"/v1/groups/{G2}/members", headers=headers_for("agent"))

    assert assigned.status_code == 200, assigned.text
    assert {m["rank"] for m in assigned.json()["data"]} == {"creator", "admin", "member"}
    assert assigned.json()["data"][0]["phone"] == "+" + ALICE, "creator first"
    assert_error(other, 404, "not_found")


# --- health ----------------------------------------------------------------------------------


async def test_health_and_metrics_report_the_cache(
    client: httpx.AsyncClient, headers_for: Headers, synced_accounts: dict[str, str]
) -> None:
    await create_account(client, headers_for, "No groups yet")  # no group: not counted
    health = await client.get("/v1/groups/health", headers=headers_for("viewer"))
    metrics = await client.get("/metrics")

    figures = health.json()
    assert figures["total_cached_members"] == 7  # G1: 4, G2: 3
    assert figures["accounts_with_cache"] == 2
    assert figures["accounts_without_members_count"] == 0
    assert figures["failed_syncs"] == []
    assert figures["stale_groups_count"] == 0
    assert figures["most_recent_sync"].endswith("Z")
    assert "wahub_group_members_cached 7.0" in metrics.text
    assert "wahub_accounts_with_cached_members 2.0" in metrics.text
    assert "wahub_group_syncs_failed 0.0" in metrics.text
