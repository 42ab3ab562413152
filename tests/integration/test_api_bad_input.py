"""Careless requests a new user sends, found by trying (issue 14, point 9): each gets a
clear answer naming what is wrong, or is understood when there is only one meaning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]

PERSON = "+14155552671"
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
