"""Where the key sealing channel credentials comes from: WAHUB_SECRET_KEY, else (SQLite
only) a key file beside the database, generated once with mode 0600."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from sealing import token_in_sqlite_file
from wahub.config import Settings
from wahub.domain.credentials import generate_key
from wahub.domain.errors import SecretKeyError
from wahub.runtime import Hub

TOKEN = "EAAG-key-file-token-0987654321"


def settings_without_key(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAHUB_SECRET_KEY", raising=False)


@pytest.mark.usefixtures("no_env_key")
async def test_sqlite_generates_a_private_key_file_once_and_keeps_using_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'wahub.db'}"
    key_file = tmp_path / "wahub.db.key"
    caplog.set_level(logging.WARNING, logger="wahub")

    first = Hub.build(settings_without_key(url))
    await first.start(workers=False, realtime=False)
    try:
        await first.channels.create(name="main", phone_number_id="1", access_token=TOKEN)
    finally:
        await first.stop()

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    generated = [r for r in caplog.records if "generated" in r.getMessage()]
    assert len(generated) == 1
    assert str(key_file) in generated[0].getMessage()
    assert not token_in_sqlite_file(url, TOKEN)

    caplog.clear()
    key = key_file.read_text()
    second = Hub.build(settings_without_key(url))
    await second.start(workers=False, realtime=False)
    try:
        assert await second.channels.unreadable() == [], "the same key opens what it sealed"
    finally:
        await second.stop()
    assert key_file.read_text() == key
    assert not [r for r in caplog.records if "generated" in r.getMessage()], "said once"


@pytest.mark.usefixtures("no_env_key")
def test_postgresql_without_a_key_refuses_to_start_naming_the_setting() -> None:
    with pytest.raises(SecretKeyError, match="WAHUB_SECRET_KEY is required with PostgreSQL"):
        Hub.build(settings_without_key("postgresql://wahub@127.0.0.1:1/wahub"))


def test_a_key_that_is_not_a_fernet_key_is_refused_by_position(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        secret_key=SecretStr(f"{generate_key()}, change-me"),
    )
    with pytest.raises(SecretKeyError, match="key 2 of 2 is not a Fernet key") as caught:
        Hub.build(settings)
    assert "change-me" not in caught.value.message, "a key is never printed"


async def test_with_wahub_secret_key_set_no_key_file_is_written(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        secret_key=SecretStr(generate_key()),
    )
    hub = Hub.build(settings)
    await hub.stop()
    assert not (tmp_path / "w.db.key").exists()


async def test_a_hub_started_with_another_key_logs_each_unreadable_channel_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    sealing = Hub.build(
        Settings(_env_file=None, database_url=url, secret_key=SecretStr(generate_key()))
    )
    await sealing.start(workers=False, realtime=False)
    try:
        channel = await sealing.channels.create(
            name="main", phone_number_id="1", access_token=TOKEN
        )
    finally:
        await sealing.stop()
    caplog.set_level(logging.ERROR, logger="wahub")

    other = Hub.build(
        Settings(_env_file=None, database_url=url, secret_key=SecretStr(generate_key()))
    )
    await other.start(workers=False, realtime=False)
    await other.stop()

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"channel 'main' ({channel['id']})" in e and "do not decrypt" in e for e in errors)
