"""The OpenAPI document describes every error an operation can answer, and a 405 says
which methods the path does serve."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from wahub.api.openapi import ERROR_SCHEMA_REF

Headers = Callable[[str], dict[str, str]]


def error_responses(app: FastAPI) -> list[tuple[str, str, str, dict[str, object]]]:
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    found.append((method.upper(), path, status, response))
    return found


def test_every_error_response_is_the_json_error_envelope(app: FastAPI) -> None:
    document = app.openapi()
    assert set(document["components"]["schemas"]["ErrorOut"]["required"]) == {"error"}
    for method, path, status, response in error_responses(app):
        content = response.get("content")
        assert content == {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}, (
            f"{method} {path} {status}"
        )


def test_operations_declare_the_errors_of_what_they_are(app: FastAPI) -> None:
    """A key means 401, a role check 403, the database 503, a body 413 and 415."""
    paths = app.openapi()["paths"]
    send = paths["/v1/messages"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "415", "422", "503"} <= set(send)
    keys = paths["/v1/keys"]["get"]["responses"]
    assert {"401", "403", "503"} <= set(keys)
    assert not {"404", "409", "413"} & set(keys)
    lookup = paths["/v1/lookup"]["post"]["responses"]  # a read, sent as POST
    assert "409" not in lookup
    assert "403" not in lookup
    handshake = paths["/v1/webhooks/cloudapi"]["get"]["responses"]
    assert "401" not in handshake  # checked by verify token, not by API key
    assert set(paths["/periskopewebhook"]["post"]["responses"]) == set(
        paths["/v1/webhooks/periskope"]["post"]["responses"]
    )


async def test_a_405_names_every_method_the_path_serves(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.put("/v1/accounts/acc_1", headers=headers_for("admin"))

    assert response.status_code == 405
    assert response.headers["Allow"] == "DELETE, GET, PATCH"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_a_405_on_a_collection_names_its_methods(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.delete("/v1/messages", headers=headers_for("admin"))

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


async def test_a_body_gets_the_types_its_schema_says_not_lookalikes(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    """0 is not false and false is not 0: the document says boolean and integer, and a
    client generated from it must not find the server reading something else."""
    readonly_zero = await client.post(
        "/v1/chats",
        json={"chat_id": "120363000000000009@g.us", "readonly": 0},
        headers=headers_for("admin"),
    )
    priority_true = await client.post(
        "/v1/messages",
        json={"to": "+14155552671", "text": {"body": "hi"}, "priority": True},
        headers=headers_for("admin"),
    )

    assert readonly_zero.status_code == 422, readonly_zero.text
    assert readonly_zero.json()["error"]["details"]["errors"][0]["field"] == "readonly"
    assert priority_true.status_code == 422, priority_true.text
    assert priority_true.json()["error"]["details"]["errors"][0]["field"] == "priority"
