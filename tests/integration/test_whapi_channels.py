"""WHAPI channels: added by API and CLI, built into a WhapiProvider by the registry, and
the only kind with a group directory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from wahub.cli import app as cli_app
from wahub.config import Settings
from wahub.domain.errors import ValidationError
from wahub.embedded import add_sandbox_whapi_channel
from wahub.providers.cloudapi.adapter import CloudApiProvider
from wahub.providers.sandbox import DEFAULT_GROUP_COUNT, LEFT_GROUP_INDICES, Sandbox
from wahub.providers.whapi.adapter import WhapiProvider
from wahub.runtime import Hub
from wahub.store import channels as channel_queries

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox()
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


async def stored(hub: Hub, channel_id: str) -> dict[str, Any]:
    """The channel row with its credentials, as the pipeline reads it."""
    async with hub.db.read() as conn:
        row = await channel_queries.get_channel(conn, channel_id)
    assert row is not None
    return row


async def test_admin_adds_a_whapi_channel_by_api(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub
) -> None:
    response = await client.post(
        "/v1/channels",
        headers=headers_for("admin"),
        json={
            "name": "artists",
            "kind": "whapi",
            "access_token": "whapi-secret-token",
            "phone_number": "+1 (415) 555-0100",
        },
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["kind"] == "whapi"
    assert channel["base_url"] == "https://gate.whapi.cloud"
    assert channel["phone_number"] == "+14155550100"
    assert channel["phone_number_id"] is None
    assert "whapi-secret-token" not in response.text
    row = await stored(hub, channel["id"])
    assert hub.channels.cipher.open(row["credentials"], channel="artists") == {
        "token": "whapi-secret-token"
    }
    provider = hub.providers.for_channel(row)
    assert isinstance(provider, WhapiProvider)
    assert provider.own_phone == "+14155550100"
    assert "whapi-secret-token" not in repr(provider)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "whapi", "phone_number": "+14155550100"}, "access_token"),
        ({"kind": "whapi", "access_token": "t", "phone_number": "12"}, "phone_number"),
        ({"kind": "telegram", "access_token": "t"}, "kind"),
        ({"kind": "periskope", "access_token": "t"}, "phone_number"),
        ({"kind": "cloudapi", "access_token": "t"}, "phone_number_id"),
    ],
)
async def test_bad_channel_bodies_are_422(
    client: httpx.AsyncClient, headers_for: Headers, body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/v1/channels", headers=headers_for("admin"), json={"name": "x", **body}
    )
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_cloudapi_channels_are_added_as_before(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub
) -> None:
    response = await client.post(
        "/v1/channels",
        headers=headers_for("admin"),
        json={"name": "meta", "phone_number_id": "106540352242922", "access_token": "EAAG"},
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert (channel["kind"], channel["base_url"]) == ("cloudapi", "https://graph.facebook.com")
    row = await stored(hub, channel["id"])
    assert hub.channels.cipher.open(row["credentials"], channel="meta") == {"access_token": "EAAG"}
    assert isinstance(hub.providers.for_channel(row), CloudApiProvider)


async def test_group_directory_of_a_sandbox_whapi_channel(hub: Hub, sandbox: Sandbox) -> None:
    assert sandbox.url is not None
    channel = await add_sandbox_whapi_channel(hub, sandbox.url)
    directory = hub.providers.groups_for_channel(await stored(hub, channel["id"]))
    page = await directory.list_groups(count=100)
    assert page.total == len(page.groups) == DEFAULT_GROUP_COUNT
    left = {g.chat_id for g in page.groups if not g.we_are_member}
    assert left == {sandbox.whapi.groups[i]["id"] for i in LEFT_GROUP_INDICES}
    # The same adapter sends for the channel.
    assert hub.providers.for_channel(await stored(hub, channel["id"])) is directory


async def test_changed_token_rebuilds_the_adapter(hub: Hub, sandbox: Sandbox) -> None:
    assert sandbox.url is not None
    channel = await add_sandbox_whapi_channel(hub, sandbox.url)
    row = await stored(hub, channel["id"])
    first = hub.providers.groups_for_channel(row)
    assert hub.providers.groups_for_channel(dict(row)) is first
    changed = {**row, "credentials": hub.channels.cipher.seal({"token": "another"})}
    assert hub.providers.groups_for_channel(changed) is not first


async def test_cloudapi_channel_has_no_group_directory(hub: Hub, channel: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="channel kind 'cloudapi' has no group directory"):
        hub.providers.groups_for_channel(await stored(hub, channel["id"]))


async def test_unknown_kind_cannot_send(hub: Hub, channel: dict[str, Any]) -> None:
    row = {**(await stored(hub, channel["id"])), "kind": "periskope"}
    with pytest.raises(ValidationError, match="periskope"):
        hub.providers.for_channel(row)


def test_cli_adds_a_whapi_channel(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env in the way
    runner = CliRunner()
    result = runner.invoke(
        cli_app,
        [
            "channels",
            "add",
            "--name",
            "artists",
            "--kind",
            "whapi",
            "--token",
            "cli-token",
            "--phone-number",
            "+14155550100",
            "--base-url",
            "http://127.0.0.1:9/whapi",
            "--database",
            settings.database_url,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert (row["kind"], row["phone_number"], row["base_url"]) == (
        "whapi",
        "+14155550100",
        "http://127.0.0.1:9/whapi",
    )
    assert "cli-token" not in result.stdout

    refused = runner.invoke(
        cli_app,
        ["channels", "add", "--name", "x", "--token", "t", "-d", settings.database_url],
    )
    assert refused.exit_code == 1
    assert "phone_number_id" in refused.output
