"""The sandbox channel of ``serve --sandbox`` in process: it follows the current run's
sandbox, and it is where a send without ``channel_id`` goes even beside other channels
(issue 14, points 4 and 5; tests/integration/test_serve_sandbox.py runs the real CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import update

from wahub.embedded import SANDBOX_PHONE_NUMBER_ID, describe_send_default, follow_sandbox
from wahub.runtime import Hub
from wahub.store.schema import channels

PREVIOUS_RUN = "http://127.0.0.1:9"  # the port a previous run's sandbox listened on
THIS_RUN = "http://127.0.0.1:10"
TEXT = {"to": "+4915112345678", "text": {"body": "hi"}}


async def sandbox_channels(hub: Hub) -> list[dict[str, Any]]:
    return [
        c for c in await hub.channels.list_all() if c["phone_number_id"] == SANDBOX_PHONE_NUMBER_ID
    ]


async def test_a_new_run_points_the_stored_sandbox_channel_at_its_sandbox(hub: Hub) -> None:
    first = await follow_sandbox(hub, PREVIOUS_RUN)

    again = await follow_sandbox(hub, THIS_RUN + "/")

    [stored] = await sandbox_channels(hub)
    assert again["id"] == first["id"] == stored["id"]
    assert stored["base_url"] == again["base_url"] == THIS_RUN
    templates = {t["name"] for t in await hub.channels.list_templates(stored["id"])}
    assert templates == {"order_update", "welcome"}


async def test_the_sandbox_channel_is_found_whatever_it_was_renamed(hub: Hub) -> None:
    first = await follow_sandbox(hub, PREVIOUS_RUN)
    async with hub.db.transaction() as conn:
        await conn.execute(
            update(channels).where(channels.c.id == first["id"]).values(name="my sandbox")
        )

    again = await follow_sandbox(hub, THIS_RUN)

    assert again["id"] == first["id"]
    assert len(await sandbox_channels(hub)) == 1


async def test_a_send_without_channel_id_goes_to_the_default_beside_other_channels(
    hub: Hub,
    client: httpx.AsyncClient,
    channel: dict[str, Any],
    headers_for: Callable[[str], dict[str, str]],
) -> None:
    sandbox = await follow_sandbox(hub, THIS_RUN)
    refused = await client.post("/v1/messages", json=TEXT, headers=headers_for("admin"))
    hub.messaging.default_channel_id = sandbox["id"]

    accepted = await client.post("/v1/messages", json=TEXT, headers=headers_for("admin"))
    named = await client.post(
        "/v1/messages", json={**TEXT, "channel_id": channel["id"]}, headers=headers_for("admin")
    )

    assert refused.status_code == 422, refused.json()
    assert refused.json()["error"]["details"]["field"] == "channel_id"
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["channel_id"] == sandbox["id"]
    assert named.json()["channel_id"] == channel["id"], "channel_id still wins"


async def test_the_start_banner_says_where_a_send_without_channel_id_goes(hub: Hub) -> None:
    none = await describe_send_default(hub)
    main = await hub.channels.create(
        name="main", phone_number_id="1234567890", access_token="t", base_url=PREVIOUS_RUN
    )
    only = await describe_send_default(hub)
    sandbox = await follow_sandbox(hub, THIS_RUN)
    several = await describe_send_default(hub)
    hub.messaging.default_channel_id = sandbox["id"]
    chosen = await describe_send_default(hub)

    assert none.startswith("no channel yet")
    assert only.startswith(f"sends without channel_id go to channel main ({main['id']}, ")
    assert several == "2 channels and no default: sends must name their channel_id"
    assert chosen == (
        f"sends without channel_id go to channel sandbox ({sandbox['id']}, cloudapi at {THIS_RUN})"
    )
