"""Dockerfile and compose.yaml, checked without a container engine (issue 14, point 11):
every wahub command line they hold (and the ones their comments tell users to type)
exists in the CLI with those options, the image alone sends (embedded workers), and
only the compose topology splits serve from its workers."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
WAHUB_SERVICES = {name: s for name, s in COMPOSE["services"].items() if "build" in s}


def instruction(name: str) -> str:
    """The Dockerfile instruction ``name`` with its continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    [line] = [line for line in joined.splitlines() if line.startswith(f"{name} ")]
    return line[len(name) + 1 :]


def docker_cmd() -> list[str]:
    command: list[str] = json.loads(instruction("CMD"))
    return command


def docker_env() -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(instruction("ENV")))


def typed_commands() -> list[list[str]]:
    """The wahub commands the files' comments tell a user to type in a container."""
    found = re.findall(r"exec \w+ (wahub [^\n`]+)", DOCKERFILE + COMPOSE_TEXT)
    return [shlex.split(line) for line in found]


def command_lines() -> list[list[str]]:
    return [
        docker_cmd(),
        *(service["command"] for service in WAHUB_SERVICES.values()),
        *typed_commands(),
    ]


@pytest.mark.parametrize("command", command_lines(), ids=" ".join)
def test_the_command_line_exists_in_the_cli_with_these_options(command: list[str]) -> None:
    assert command[0] == "wahub", command
    # Click parses every option before --help acts: an unknown command or option fails.
    result = subprocess.run(
        [sys.executable, "-m", "wahub", *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"


def test_compose_tells_users_how_to_create_an_admin_key_by_hand() -> None:
    assert ["wahub", "keys", "create", "--role", "admin", "--user", "alice"] in typed_commands()


def test_the_image_alone_sends_with_embedded_workers_on_sqlite_in_its_volume() -> None:
    command = docker_cmd()
    assert command[:2] == ["wahub", "serve"], command
    assert "--no-workers" not in command, "the image's default must send"
    assert "0.0.0.0" in command, "reachable from outside the container"
    env = docker_env()
    assert env["WAHUB_DATABASE_URL"] == "sqlite:////data/wahub.db", env
    assert env.get("WAHUB_RUN_WORKERS", "true") != "false"
    assert instruction("VOLUME") == "/data", "the database survives the container"
    assert "chown wahub /data" in DOCKERFILE, "the unprivileged user can write its database"


def test_compose_splits_serve_from_its_workers_on_postgresql() -> None:
    serve, worker = WAHUB_SERVICES["serve"], WAHUB_SERVICES["worker"]
    assert serve["command"][:2] == ["wahub", "serve"]
    assert "--no-workers" in serve["command"], "workers run in their own containers"
    assert worker["command"] == ["wahub", "worker"]
    for service in (serve, worker):
        assert service["environment"]["WAHUB_DATABASE_URL"].startswith("postgresql://")


def test_compose_hands_the_bootstrap_admin_key_to_serve() -> None:
    env = WAHUB_SERVICES["serve"]["environment"]
    assert env["WAHUB_BOOTSTRAP_ADMIN_KEY"] == "${WAHUB_BOOTSTRAP_ADMIN_KEY:-}", (
        "taken from the user's environment, no default shipped"
    )
