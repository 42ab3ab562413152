"""Bounds at the API edge: no number or id a client sends reaches the database driver.

The parameters are read from the app's own OpenAPI document, so a route added later is
covered without touching this file. Each runs on SQLite and on PostgreSQL, whose
drivers fail differently on an integer they cannot bind (OverflowError, DataError).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from pgcluster import PostgresCluster
from wahub.app import create_app
from wahub.config import Settings
from wahub.domain.ids import new_id
from wahub.runtime import Hub

# Beyond 64-bit signed, beyond unsigned, below zero, and absurdly long.
HOSTILE_NUMBERS = [str(2**63), str(2**64), "-1", "9" * 300]
# Server-sent events never end: the stream is read by its own tests.
ENDLESS = {("get", "/v1/stream/sse")}


@pytest.fixture(params=["sqlite", "postgresql"])
async def admin_client(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    postgres: PostgresCluster | None,
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app on each backend, and a client sending an admin key."""
    database: str | None = None
    if request.param == "postgresql":
        if postgres is None:
            pytest.skip("no PostgreSQL server on this machine")
        database = "bounds_" + new_id("db").split("_", 1)[1]
        settings = settings.model_copy(update={"database_url": postgres.new_database(database)})
    settings = settings.model_copy(
        update={
            "whapi_webhook_secret": SecretStr("whapi-secret"),
            "periskope_webhook_secret": SecretStr("periskope-secret"),
        }
    )
    hub = Hub.build(settings)
    await hub.start(workers=False)
    try:
        key = (await hub.access.create_key(user_name="bounds", role="admin")).key
        app = create_app(settings, hub=hub)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://wahub.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield client, app
    finally:
        await hub.stop()
        if database is not None and postgres is not None:
            postgres.drop_database(database)


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation in the document."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if (method, path) not in ENDLESS:
                found.append((method, path, operation))
    return found


def parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]


def schema_types(parameter: dict[str, Any]) -> set[str]:
    schema = parameter.get("schema", {})
    options = schema.get("anyOf", [schema])
    return {option.get("type", "") for option in options}


def placeholder(parameter: dict[str, Any]) -> str:
    """A value the parameter accepts, so that only the parameter under test is hostile."""
    schema = parameter.get("schema", {})
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            return str(option["enum"][0])
        if option.get("type") == "integer":
            return str(option.get("minimum", 1))
    return "x"


def request_for(
    path: str, operation: dict[str, Any], target: str, value: str
) -> tuple[str, dict[str, str]]:
    url = path
    query: dict[str, str] = {}
    for parameter in parameters(operation):
        name = parameter["name"]
        chosen = value if name == target else placeholder(parameter)
        if parameter["in"] == "path":
            url = url.replace("{" + name + "}", chosen)
        elif name == target or parameter.get("required"):
            query[name] = chosen
    return url, query


def assert_error_envelope(response: httpx.Response) -> None:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body


async def test_every_integer_parameter_refuses_numbers_beyond_its_bounds(
    admin_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, app = admin_client
    tried = 0
    for method, path, operation in operations(app):
        for parameter in parameters(operation):
            if "integer" not in schema_types(parameter):
                continue
            for value in HOSTILE_NUMBERS:
                url, query = request_for(path, operation, parameter["name"], value)
                response = await client.request(method.upper(), url, params=query)
                where = f"{method.upper()} {path} {parameter['name']}={value[:24]}"
                assert 400 <= response.status_code < 500, f"{where}: {response.text}"
                assert_error_envelope(response)
                tried += 1
    assert tried >= 4 * 10, "the document lists fewer integer parameters than the API has"


async def test_no_path_or_query_parameter_turns_a_hostile_number_into_a_server_error(
    admin_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    """Ids and cursors are strings, but some are parsed as numbers (a message cursor is
    a sequence number): none may reach the driver unbounded."""
    client, app = admin_client
    for method, path, operation in operations(app):
        for parameter in parameters(operation):
            for value in HOSTILE_NUMBERS:
                url, query = request_for(path, operation, parameter["name"], value)
                response = await client.request(method.upper(), url, params=query)
                where = f"{method.upper()} {path} {parameter['name']}={value[:24]}"
                assert response.status_code < 500 or response.status_code == 502, (
                    f"{where}: {response.status_code} {response.text}"
                )
                if response.status_code >= 400:
                    assert_error_envelope(response)


def test_every_parameter_declares_its_bounds(app: FastAPI) -> None:
    """Integers have a minimum and a maximum, strings a maximum length."""
    unbounded = []
    for method, path, operation in operations(app):
        for parameter in parameters(operation):
            schema = parameter.get("schema", {})
            for option in schema.get("anyOf", [schema]):
                kind = option.get("type")
                if kind == "integer" and not {"minimum", "maximum"} <= set(option):
                    unbounded.append(f"{method.upper()} {path} {parameter['name']}")
                if kind == "string" and "enum" not in option and "maxLength" not in option:
                    unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert unbounded == []


def unbounded_fields(
    schema: dict[str, Any], where: str, components: dict[str, Any], seen: set[str]
) -> list[str]:
    """Strings without a length limit (or an anchored pattern) and arrays without an
    item limit, anywhere in a request body's schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return unbounded_fields(components[name], name, components, seen)
    found = []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += unbounded_fields(option, where, components, seen)
    kind = schema.get("type")
    bounded_string = (
        "maxLength" in schema
        or "enum" in schema
        or schema.get("format") == "binary"
        or str(schema.get("pattern", "")).endswith("$")
    )
    if kind == "string" and not bounded_string:
        found.append(where)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        found += unbounded_fields(schema.get("items", {}), f"{where}[]", components, seen)
    for name, field in schema.get("properties", {}).items():
        found += unbounded_fields(field, f"{where}.{name}", components, seen)
    return found


def test_every_request_body_field_declares_its_bounds(app: FastAPI) -> None:
    """Strings have a maximum length, arrays a maximum number of items."""
    document = app.openapi()
    components = document["components"]["schemas"]
    unbounded = []
    for method, path, operation in operations(app):
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            where = f"{method.upper()} {path} ({media_type})"
            unbounded += unbounded_fields(content.get("schema", {}), where, components, set())
    assert unbounded == []
