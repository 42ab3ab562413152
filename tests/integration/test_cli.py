"""The ``wahub`` command as a whole: version, one output convention, ``wahub send``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from wahub import __version__
from wahub.cli import app
from wahub.config import Settings
from wahub.embedded import add_sandbox_channel, embedded_stack

# Commands that run until stopped print logs, not a result.
LONG_RUNNING = {"serve", "worker", "sessions", "sandbox", "demo"}


def any_port(settings: Settings) -> Settings:
    """The hub on a free port: 8080, the default, may be taken on a shared machine."""
    return settings.model_copy(update={"port": 0})


def _leaf_commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):  # a group of commands
                walk(command, path)
            else:
                found.append((path, command))

    walk(typer.main.get_command(app), "")
    return found


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wahub {__version__}"


def test_every_command_that_prints_a_result_takes_json() -> None:
    missing = [
        path
        for path, command in _leaf_commands()
        if path not in LONG_RUNNING and not any("--json" in param.opts for param in command.params)
    ]

    assert missing == [], f"commands without --json: {missing}"


def test_campaign_actions_each_say_what_they_do() -> None:
    helps = {
        path: command.help
        for path, command in _leaf_commands()
        if path in {"campaigns start", "campaigns pause", "campaigns resume", "campaigns cancel"}
    }

    assert len(helps) == 4
    assert len(set(helps.values())) == 4, helps


def test_send_refuses_text_and_template_together(settings: Settings) -> None:
    result = CliRunner().invoke(
        app,
        [
            *("send", "+4915123456789", "--text", "hi", "--template", "welcome"),
            *("-d", settings.database_url),
        ],
    )

    assert result.exit_code == 2
    assert "exactly one of --text and --template" in result.output


def test_send_without_a_country_code_is_a_readable_error(settings: Settings) -> None:
    result = CliRunner().invoke(
        app, ["send", "not a phone", "--text", "hi", "-d", settings.database_url]
    )

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "error:" in result.output


async def test_send_wait_follows_the_message_to_read(settings: Settings) -> None:
    async with embedded_stack(any_port(settings), with_sandbox=True, workers=True) as stack:
        assert stack.sandbox_url is not None
        await add_sandbox_channel(stack.hub, stack.sandbox_url)
        args = ["send", "+4915123456789", "--text", "hello", "--wait", "--timeout", "30"]
        result = await asyncio.to_thread(
            CliRunner().invoke, app, [*args, "--json", "-d", settings.database_url]
        )

    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout.strip().splitlines()[-1])
    # --wait stops at the first final status: delivered, or read when it came first.
    assert message["status"] in ("delivered", "read")
    assert message["chat_id"] == "4915123456789@s.whatsapp.net"


def test_send_wait_gives_up_when_no_worker_runs(settings: Settings) -> None:
    async def channel_without_workers() -> None:
        async with embedded_stack(any_port(settings), with_sandbox=True, workers=False) as stack:
            assert stack.sandbox_url is not None
            await add_sandbox_channel(stack.hub, stack.sandbox_url)

    asyncio.run(channel_without_workers())
    args = ["send", "+4915123456789", "--text", "hi", "--wait", "--timeout", "0.5"]
    result = CliRunner().invoke(app, [*args, "-d", settings.database_url])

    assert result.exit_code == 1
    assert "still queued" in result.output


@pytest.mark.parametrize(
    "group", ["keys", "channels", "campaigns", "replicate", "subscriptions", "bench"]
)
def test_groups_without_a_command_show_their_help(group: str) -> None:
    result = CliRunner().invoke(app, [group])

    assert "Usage" in result.output
