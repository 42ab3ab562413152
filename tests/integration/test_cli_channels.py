"""``wahub channels`` and ``wahub keys rotate-secret`` as an operator runs them: channels
by name, readable refusals, update, remove, and key rotation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import SecretStr
from typer.testing import CliRunner

from sealing import TEST_SECRET_KEY
from wahub.cli import app
from wahub.config import Settings
from wahub.domain.credentials import generate_key
from wahub.runtime import Hub


def wahub(settings: Settings, *args: str, key: str = TEST_SECRET_KEY) -> Any:
    """Run ``wahub ARGS -d DATABASE`` with ``key`` as WAHUB_SECRET_KEY."""
    return CliRunner().invoke(
        app, [*args, "-d", settings.database_url], env={"WAHUB_SECRET_KEY": key}
    )


def add_main(settings: Settings) -> dict[str, Any]:
    result = wahub(
        settings,
        *("channels", "add", "--name", "main", "--phone-number-id", "1065"),
        *("--token", "EAAG-cli-token", "--json"),
        # Not Meta's host: no 24-hour window rule, so a free-form text can be queued.
        *("--base-url", "http://127.0.0.1:9"),
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_a_template_is_registered_on_a_channel_by_its_name(settings: Settings) -> None:
    channel = add_main(settings)

    result = wahub(
        settings,
        *("channels", "template", "main", "--name", "order_update", "--body-parameters", "1"),
    )

    assert result.exit_code == 0, result.output
    assert "registered on main" in result.stdout
    assert channel["status"] == "unverified"


def test_a_duplicate_name_is_one_readable_error(settings: Settings) -> None:
    add_main(settings)

    result = wahub(
        settings, "channels", "add", "--name", "main", "--phone-number-id", "2", "--token", "t"
    )

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "already has the name 'main'" in result.output


def test_an_empty_token_is_one_readable_error(settings: Settings) -> None:
    result = wahub(
        settings, "channels", "add", "--name", "x", "--phone-number-id", "2", "--token", " "
    )

    assert result.exit_code == 1
    assert "access_token: a cloudapi channel needs its access token" in result.output


def test_update_pauses_and_renames_by_name(settings: Settings) -> None:
    add_main(settings)

    result = wahub(settings, "channels", "update", "main", "--name", "primary", "--pause", "--json")

    assert result.exit_code == 0, result.output
    updated = json.loads(result.stdout)
    assert (updated["name"], updated["paused"]) == ("primary", True)


def test_remove_refuses_while_messages_wait_and_force_fails_them(settings: Settings) -> None:
    add_main(settings)
    sent = wahub(settings, "send", "+4915123456789", "--text", "hi", "--channel", "main")
    assert sent.exit_code == 0, sent.output

    refused = wahub(settings, "channels", "remove", "main")
    assert refused.exit_code == 1
    assert "1 queued" in refused.output
    assert "force" in refused.output

    forced = wahub(settings, "channels", "remove", "main", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["failed_messages"] == 1


def test_rotate_secret_reseals_so_the_old_key_can_be_dropped(settings: Settings) -> None:
    add_main(settings)
    new_key = generate_key()

    rotated = wahub(settings, "keys", "rotate-secret", "--json", key=f"{new_key},{TEST_SECRET_KEY}")

    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout) == {"resealed": 1}

    async def unreadable_with_new_key_only() -> list[str]:
        hub = Hub.build(settings.model_copy(update={"secret_key": SecretStr(new_key)}))
        await hub.start(workers=False, realtime=False)
        try:
            return await hub.channels.unreadable()
        finally:
            await hub.stop()

    assert asyncio.run(unreadable_with_new_key_only()) == []


def test_rotate_secret_without_the_old_key_names_the_channel_and_changes_nothing(
    settings: Settings,
) -> None:
    add_main(settings)

    result = wahub(settings, "keys", "rotate-secret", key=generate_key())

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "'main' (ch_" in result.output
    assert "nothing was re-sealed" in result.output


def test_check_of_an_unreachable_provider_exits_1_saying_why(settings: Settings) -> None:
    add_main(settings)  # its base URL, 127.0.0.1:9, refuses connections

    result = wahub(settings, "channels", "check", "main")

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "channel main: check failed:" in result.output


def test_a_key_is_created_limited_to_a_channel_and_read_only(settings: Settings) -> None:
    channel = add_main(settings)

    created = wahub(
        settings,
        *("keys", "create", "--role", "agent", "--user", "crm"),
        *("--channel", "main", "--read-only", "--json"),
    )
    listed = wahub(settings, "keys", "list", "--json")
    unknown = wahub(settings, "keys", "create", "--role", "agent", "--user", "x", "--channel", "y")

    assert created.exit_code == 0, created.output
    value = json.loads(created.stdout)
    assert (value["channel_ids"], value["read_only"]) == ([channel["id"]], True)
    (crm,) = [k for k in json.loads(listed.stdout) if k["user_name"] == "crm"]
    assert (crm["channel_ids"], crm["read_only"]) == ([channel["id"]], True)
    assert unknown.exit_code == 1
    assert "no channel 'y'" in unknown.output
