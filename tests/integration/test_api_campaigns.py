"""``/v1/campaigns`` over HTTP: create from JSON, text/csv and multipart, the row report,
state changes with their 409 and 422, the funnel, and who may do what."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]

TEMPLATES = [{"name": "spring_sale", "language": "en", "parameters": ["first_name"]}]
CSV = (
    "phone,first_name\n"
    "+4915110000001,Ana\n"
    "not-a-phone,Bob\n"
    "+4915110000002,\n"
    "+4915110000001,Ana again\n"
    "+4915110000003,Cem\n"
)


@pytest.fixture
async def template(hub: Hub, channel: dict[str, Any]) -> None:
    await hub.channels.add_template(
        channel["id"], name="spring_sale", language="en", body_parameters=1, category="marketing"
    )


async def create_json(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/v1/campaigns",
        json={"name": "spring", "templates": TEMPLATES, "csv": CSV},
        headers=headers,
    )


async def test_create_reports_each_bad_row_by_line_and_keeps_the_good_ones(
    client: httpx.AsyncClient, headers_for: Headers, template: None
) -> None:
    response = await create_json(client, headers_for("admin"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(e["line"], e["code"]) for e in body["rejected"]] == [
        (3, "bad_phone"),
        (4, "missing_variables"),
        (5, "duplicate"),
    ]
    assert body["campaign"]["status"] == "scheduled"
    assert response.headers["location"] == f"/v1/campaigns/{body['campaign']['id']}"


async def test_create_from_a_text_csv_body_and_from_multipart(
    client: httpx.AsyncClient, headers_for: Headers, template: None
) -> None:
    as_csv = await client.post(
        "/v1/campaigns",
        params={"name": "csv body", "templates": json.dumps(TEMPLATES)},
        content=CSV.encode(),
        headers={**headers_for("admin"), "Content-Type": "text/csv"},
    )
    as_multipart = await client.post(
        "/v1/campaigns",
        data={"campaign": json.dumps({"name": "upload", "templates": TEMPLATES})},
        files={"audience": ("audience.csv", CSV.encode(), "text/csv")},
        headers=headers_for("admin"),
    )

    assert as_csv.status_code == 201, as_csv.text
    assert as_multipart.status_code == 201, as_multipart.text
    assert as_csv.json()["accepted"] == as_multipart.json()["accepted"] == 2


async def test_a_file_with_nothing_usable_is_refused_with_every_reason(
    client: httpx.AsyncClient, headers_for: Headers, template: None
) -> None:
    response = await client.post(
        "/v1/campaigns",
        json={"name": "bad", "templates": TEMPLATES, "csv": "number,first_name\n1,a\n"},
        headers=headers_for("admin"),
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert "no usable recipient" in error["message"]
    assert error["details"]["errors"][0]["code"] == "bad_header"


async def test_a_template_the_channel_does_not_know_is_422(
    client: httpx.AsyncClient, headers_for: Headers, channel: dict[str, Any]
) -> None:
    response = await create_json(client, headers_for("admin"))

    assert response.status_code == 422
    assert "not approved on channel" in response.json()["error"]["message"]


async def test_start_twice_then_dispatch_then_start_again_is_409(
    client: httpx.AsyncClient, headers_for: Headers, template: None, hub: Hub
) -> None:
    admin = headers_for("admin")
    campaign_id = (await create_json(client, admin)).json()["campaign"]["id"]

    first = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=admin)
    second = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=admin)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "running"

    await hub.campaigns.dispatch_chunk(campaign_id)
    await hub.campaigns.dispatch_chunk(campaign_id)
    stats = (await client.get(f"/v1/campaigns/{campaign_id}/stats", headers=admin)).json()
    assert stats["totals"]["queued"] == 2
    assert stats["templates"][0]["template_name"] == "spring_sale"
    assert (await client.get(f"/v1/campaigns/{campaign_id}", headers=admin)).json()[
        "status"
    ] == "completed"

    again = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


async def test_pause_resume_cancel_and_list(
    client: httpx.AsyncClient, headers_for: Headers, template: None
) -> None:
    admin = headers_for("admin")
    campaign_id = (await create_json(client, admin)).json()["campaign"]["id"]

    for action, status in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        response = await client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=admin)
        assert (response.status_code, response.json()["status"]) == (200, status), action
    listed = (await client.get("/v1/campaigns?status=cancelled", headers=admin)).json()["data"]
    assert [c["id"] for c in listed] == [campaign_id]


async def test_viewers_read_but_only_admins_manage_campaigns(
    client: httpx.AsyncClient, headers_for: Headers, template: None
) -> None:
    campaign_id = (await create_json(client, headers_for("admin"))).json()["campaign"]["id"]

    assert (await create_json(client, headers_for("agent"))).status_code == 403
    viewer = headers_for("viewer")
    assert (
        await client.post(f"/v1/campaigns/{campaign_id}/start", headers=viewer)
    ).status_code == 403
    assert (
        await client.get(f"/v1/campaigns/{campaign_id}/stats", headers=viewer)
    ).status_code == 200
    assert (await client.get("/v1/campaigns/cmp_missing/stats", headers=viewer)).status_code == 404


async def test_funnel_changes_are_pushed_as_campaign_stats_events(
    client: httpx.AsyncClient, headers_for: Headers, template: None, hub: Hub
) -> None:
    admin = headers_for("admin")
    campaign_id = (await create_json(client, admin)).json()["campaign"]["id"]
    sub = hub.realtime.subscribe(lambda event: event["type"] == "campaign.stats")
    try:
        await client.post(f"/v1/campaigns/{campaign_id}/start", headers=admin)
        await hub.campaigns.dispatch_chunk(campaign_id)
        hub.realtime.poke()

        event = await asyncio.wait_for(sub.queue.get(), timeout=10)
    finally:
        hub.realtime.unsubscribe(sub)

    assert event["campaign_id"] == campaign_id
    assert event["totals"]["queued"] == 2, "the event carries the funnel after the change"
