"""``/v1/notifications``: an inbound message becomes a notification the people who see its
chat list (agents only those of chats assigned to them), newest first with an unread
count, paged with ``before``; marking one read keeps its first ``read_at``, read-all marks
what the caller sees, and bad query values are 422s in the error shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from inbound import SENDER, inbound_body, post_and_process
from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]

OTHER = "4915110000002"  # a second person writing in

pytestmark = pytest.mark.usefixtures("channel")


async def notifications(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get("/v1/notifications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def conversation_id_of(client: httpx.AsyncClient, headers_for: Headers, sender: str) -> str:
    listed = await client.get("/v1/conversations", headers=headers_for("admin"))
    chat_id = f"{sender}@s.whatsapp.net"
    return str(next(c["id"] for c in listed.json()["data"] if c["chat_id"] == chat_id))


async def test_an_inbound_message_is_a_notification_an_admin_lists(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    before = await notifications(client, headers_for("admin"))
    await post_and_process(client, hub, inbound_body("wamid.n1", "Is the flat available?"))

    listed = await notifications(client, headers_for("admin"))

    assert (before["data"], before["unread_count"]) == ([], 0)
    (item,) = listed["data"]
    assert item["kind"] == "message.received"
    assert item["conversation_id"] == await conversation_id_of(client, headers_for, SENDER)
    assert item["message_id"] is not None
    assert (item["title"], item["body"]) == ("New message from Kerry", "Is the flat available?")
    assert (item["user_id"], item["read_at"]) == (None, None)
    assert item["created_at"].endswith("Z")
    assert (listed["unread_count"], listed["next_before"]) == (1, None)


async def test_agents_see_only_notifications_of_chats_assigned_to_them(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.mine", "for the agent"))
    await post_and_process(
        client, hub, inbound_body("wamid.theirs", "not for the agent", name="Lee", sender=OTHER)
    )
    await hub.access.add_member(group_name="support", user_name="agent")
    await hub.access.assign_chat(group_name="support", chat_id=f"{SENDER}@s.whatsapp.net")
    everything = await notifications(client, headers_for("admin"))
    theirs = next(n for n in everything["data"] if n["body"] == "not for the agent")

    seen = await notifications(client, headers_for("agent"))
    read_theirs = await client.post(
        f"/v1/notifications/{theirs['id']}/read", headers=headers_for("agent")
    )
    read_all = await client.post("/v1/notifications/read-all", headers=headers_for("agent"))

    assert len(everything["data"]) == 2
    assert [n["body"] for n in seen["data"]] == ["for the agent"]
    assert seen["unread_count"] == 1
    assert read_theirs.status_code == 404, read_theirs.text
    assert read_theirs.json()["error"]["code"] == "not_found"
    assert read_all.json() == {"marked": 1}
    after = await notifications(client, headers_for("admin"), unread="true")
    assert [n["body"] for n in after["data"]] == ["not for the agent"]


async def test_the_unread_filter_and_count_follow_marking_read(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.u1", "first"))
    await post_and_process(client, hub, inbound_body("wamid.u2", "second"))
    newest = (await notifications(client, headers_for("admin")))["data"][0]

    read = await client.post(f"/v1/notifications/{newest['id']}/read", headers=headers_for("admin"))
    unread = await notifications(client, headers_for("viewer"), unread="true")
    every = await notifications(client, headers_for("viewer"), unread="false")

    assert read.status_code == 200, read.text
    assert (read.json()["id"], read.json()["body"]) == (newest["id"], "second")
    assert read.json()["read_at"] is not None
    assert [n["body"] for n in unread["data"]] == ["first"]
    assert unread["unread_count"] == every["unread_count"] == 1
    assert [(n["body"], n["read_at"] is None) for n in every["data"]] == [
        ("second", False),
        ("first", True),
    ]


async def test_reading_a_notification_twice_keeps_the_first_read_at(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.t1", "twice"))
    (item,) = (await notifications(client, headers_for("admin")))["data"]
    url = f"/v1/notifications/{item['id']}/read"

    first = await client.post(url, headers=headers_for("admin"))
    await asyncio.sleep(0.01)  # read_at has milliseconds: a second write would show
    second = await client.post(url, headers=headers_for("admin"))
    as_viewer = await client.post(url, headers=headers_for("viewer"))

    assert first.status_code == 200, first.text
    assert first.json()["read_at"] is not None
    assert second.status_code == 200, second.text
    assert second.json()["read_at"] == first.json()["read_at"]
    (listed,) = (await notifications(client, headers_for("admin")))["data"]
    assert listed["read_at"] == first.json()["read_at"]
    assert as_viewer.status_code == 403


async def test_reading_a_notification_that_is_not_there_is_404(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post("/v1/notifications/999/read", headers=headers_for("admin"))

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


async def test_a_notification_id_beyond_64_bits_is_refused_naming_it(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(f"/v1/notifications/{2**64}/read", headers=headers_for("admin"))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["errors"][0]["field"] == "notification_id"


async def test_read_all_marks_what_the_caller_sees_or_one_conversation(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    await post_and_process(client, hub, inbound_body("wamid.a1", "one"))
    await post_and_process(client, hub, inbound_body("wamid.a2", "two"))
    await post_and_process(client, hub, inbound_body("wamid.b1", "three", sender=OTHER))
    conversation = await conversation_id_of(client, headers_for, SENDER)
    url = "/v1/notifications/read-all"

    of_one = await client.post(
        url, params={"conversation_id": conversation}, headers=headers_for("admin")
    )
    left = await notifications(client, headers_for("admin"), unread="true")
    rest = await client.post(url, headers=headers_for("admin"))
    again = await client.post(url, headers=headers_for("admin"))
    unknown = await client.post(
        url, params={"conversation_id": "conv_unknown"}, headers=headers_for("admin")
    )

    assert of_one.json() == {"marked": 2}
    assert ([n["body"] for n in left["data"]], left["unread_count"]) == (["three"], 1)
    assert rest.json() == {"marked": 1}
    assert again.json() == {"marked": 0}
    assert (await notifications(client, headers_for("admin")))["unread_count"] == 0
    assert unknown.status_code == 404, unknown.text


async def test_pages_go_back_in_time_with_before(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    for n in range(3):
        await post_and_process(client, hub, inbound_body(f"wamid.p{n}", f"message {n}"))

    first = await notifications(client, headers_for("admin"), limit=2)
    second = await notifications(client, headers_for("admin"), limit=2, before=first["next_before"])

    assert [n["body"] for n in first["data"]] == ["message 2", "message 1"]
    assert first["next_before"] == first["data"][-1]["id"]
    assert [n["body"] for n in second["data"]] == ["message 0"]
    assert second["next_before"] is None
    assert first["unread_count"] == second["unread_count"] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": "0"}, "limit", id="limit=0"),
        pytest.param({"limit": "201"}, "limit", id="limit=201"),
        pytest.param({"limit": "ten"}, "limit", id="limit=ten"),
        pytest.param({"before": "0"}, "before", id="before=0"),
        pytest.param({"before": "abc"}, "before", id="before=abc"),
        pytest.param({"before": str(2**64)}, "before", id="before=2**64"),
        pytest.param({"unread": "maybe"}, "unread", id="unread=maybe"),
    ],
)
async def test_bad_query_values_are_422_naming_the_field(
    client: httpx.AsyncClient, headers_for: Headers, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/notifications", params=params, headers=headers_for("admin"))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [e["field"] for e in error["details"]["errors"]] == [field]
