"""``wahub subscriptions``: create (secret shown once), list, pause, resume, replay."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from wahub.cli import app
from wahub.config import Settings


def wahub(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(app, ["subscriptions", *args, "-d", settings.database_url])


def test_create_list_pause_resume(settings: Settings) -> None:
    created = wahub(
        settings,
        *("create", "--url", "http://127.0.0.1:9/hook", "--event", "message.received"),
        *("--event", "lead.updated", "--json"),
    )
    assert created.exit_code == 0, created.output
    sub = json.loads(created.stdout)
    assert sub["secret"].startswith("whsec_")

    paused = wahub(settings, "pause", sub["id"], "--json")
    listed = wahub(settings, "list", "--json")
    resumed = wahub(settings, "resume", sub["id"], "--json")

    assert json.loads(paused.stdout)["paused"] is True
    [row] = json.loads(listed.stdout)
    assert row["event_types"] == ["message.received", "lead.updated"]
    assert row["paused"] is True
    assert "secret" not in row
    assert json.loads(resumed.stdout)["paused"] is False


def test_a_bad_url_is_one_readable_error(settings: Settings) -> None:
    result = wahub(settings, "create", "--url", "ftp://x/", "--event", "message.received")

    assert result.exit_code == 1
    assert "http:// or https://" in result.output
    assert "Traceback" not in result.output


def test_replay_needs_a_delivery_or_a_start(settings: Settings) -> None:
    created = wahub(
        settings, "create", "--url", "http://127.0.0.1:9/", "--event", "lead.updated", "--json"
    )
    sub_id = json.loads(created.stdout)["id"]

    neither = wahub(settings, "replay", sub_id)
    since = wahub(settings, "replay", sub_id, "--since", "2026-01-01T00:00:00", "--json")

    assert neither.exit_code == 2
    assert "--delivery or --since" in neither.output
    assert since.exit_code == 0, since.output
    assert json.loads(since.stdout) == {"queued": 0}
