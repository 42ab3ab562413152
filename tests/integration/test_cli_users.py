"""``wahub users``: dashboard passwords set and removed from the command line."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from wahub.cli import app
from wahub.config import Settings
from wahub.domain.actors import Role
from wahub.domain.errors import AuthenticationFailed
from wahub.runtime import Hub

PASSWORD = "correct horse battery"


async def sign_in(settings: Settings, password: str) -> Role:
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    try:
        actor, _ = await hub.passwords.sign_in("bea", password)
        return actor.role
    finally:
        await hub.stop()


def test_set_password_from_stdin_then_remove_it(settings: Settings) -> None:
    url = settings.database_url
    result = CliRunner().invoke(
        app,
        ["users", "set-password", "bea", "--role", "agent", "--password-stdin", "-d", url],
        input=PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    assert "password set for bea (signs in as agent)" in result.output
    assert asyncio.run(sign_in(settings, PASSWORD)) == Role.AGENT

    removed = CliRunner().invoke(app, ["users", "remove-password", "bea", "-d", url])

    assert removed.exit_code == 0, removed.output
    with pytest.raises(AuthenticationFailed):
        asyncio.run(sign_in(settings, PASSWORD))


def test_a_short_password_is_refused_with_the_reason(settings: Settings) -> None:
    args = ["users", "set-password", "bea", "--role", "agent", "--password-stdin"]
    result = CliRunner().invoke(app, [*args, "-d", settings.database_url], input="short\n")

    assert result.exit_code != 0
    assert "at least 10 characters" in result.output
