"""The line ``serve`` and ``worker`` log at start (issue 14, point 10): every element an
operator needs, and never the database password."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from wahub.config import Settings
from wahub.logs import configure_logging
from wahub.startup import log_startup_summary, redact_database_url, startup_summary

PASSWORD = "pa55-word-in-url"
CHANNELS = [
    {"id": "ch_1", "name": "main", "kind": "cloudapi", "status": "connected"},
    {"id": "ch_2", "name": "promo", "kind": "whapi", "status": "paused"},
]


def settings(**overrides: object) -> Settings:
    return Settings(
        _env_file=None,
        database_url=f"postgresql://wahub:{PASSWORD}@db.internal:5432/wahub",
        **overrides,
    )


def test_the_summary_names_database_backend_channels_paused_receivers_and_workers() -> None:
    summary = startup_summary(
        settings(
            cloudapi_app_secret=SecretStr("app-secret-from-meta"),
            cloudapi_verify_token=SecretStr("my-verify-token"),
            whapi_webhook_secret=SecretStr("whapi-secret"),
            periskope_webhook_secret=None,
        ),
        CHANNELS,
        command="worker",
        workers=True,
        admin_key="present",
    )
    assert summary == {
        "command": "worker",
        "database": "postgresql://wahub:***@db.internal:5432/wahub",
        "backend": "postgresql",
        "channels": ["main (cloudapi, connected)", "promo (whapi, paused)"],
        "paused_channels": ["promo"],
        "receivers": {
            "cloudapi": "set",
            "cloudapi_handshake": "set",
            "whapi": "set",
            "periskope": "unset",
        },
        "workers": "on",
        "admin_key": "present",
    }


def test_an_empty_secret_is_unset_and_sqlite_is_named() -> None:
    summary = startup_summary(
        Settings(
            _env_file=None,
            database_url="sqlite:///wahub.db",
            cloudapi_app_secret=SecretStr(""),
            whapi_webhook_secret=SecretStr(""),
        ),
        [],
        command="serve",
        workers=False,
        admin_key="missing",
    )
    assert (summary["backend"], summary["database"]) == ("sqlite", "sqlite:///wahub.db")
    assert summary["receivers"]["cloudapi"] == "unset"
    assert summary["receivers"]["whapi"] == "unset"
    assert (summary["channels"], summary["paused_channels"], summary["workers"]) == ([], [], "off")


def test_an_unparsable_database_url_is_not_shown() -> None:
    assert redact_database_url(f"wahub {PASSWORD} db") == (
        "<unparsable database URL>",
        "unknown",
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["console", "json"])
def test_the_logged_line_carries_every_field_and_not_the_password(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=as_json)
    try:
        log_startup_summary(
            startup_summary(settings(), CHANNELS, command="serve", workers=True, admin_key="stored")
        )
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert PASSWORD not in err
    [line] = [line for line in err.splitlines() if "wahub starting" in line]
    if as_json:
        event = json.loads(line)
        assert event["database"] == "postgresql://wahub:***@db.internal:5432/wahub"
        assert event["paused_channels"] == ["promo"]
        assert event["receivers"]["periskope"] == "unset"
        assert event["workers"] == "on"
    else:
        for text in ("backend=postgresql", "promo (whapi, paused)", "workers=on", "periskope"):
            assert text in line, f"{text!r} missing from {line!r}"
