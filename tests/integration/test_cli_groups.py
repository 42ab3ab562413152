"""``wahub groups sync|cleanup --json`` against a real database and the sandbox's WHAPI
channel over HTTP (the sandbox runs on an event loop in a thread of its own, since the
CLI runs its own)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from wahub.cli import app as cli_app
from wahub.config import Settings
from wahub.embedded import add_sandbox_whapi_channel
from wahub.providers.sandbox import Sandbox, SandboxConfig, default_directory
from wahub.runtime import Hub
from wahub.store import accounts as accounts_q
from wahub.store.schema import chats

Directory = list[dict[str, Any]]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sandbox = Sandbox(SandboxConfig())
    try:
        url = asyncio.run_coroutine_threadsafe(sandbox.start(), loop).result(10)
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def directory() -> Directory:
    return list(default_directory(SandboxConfig().whapi_own_phone))


def prepare(settings: Settings, sandbox_url: str | None, accounts: dict[str, list[str]]) -> None:
    """A WHAPI channel on the sandbox and accounts linked to groups, stored directly (no
    background sync: the CLI is what syncs them)."""

    async def go() -> None:
        hub = Hub.build(settings)
        await hub.start(workers=False, realtime=False)
        try:
            channel_id = None
            if sandbox_url is not None:
                channel_id = (await add_sandbox_whapi_channel(hub, sandbox_url))["id"]
            now = time.time()
            for name, chat_ids in accounts.items():

                def link(conn: Any, name: str = name, chat_ids: list[str] = chat_ids) -> None:
                    accounts_q.insert_account_sync(
                        conn,
                        {"id": f"acc_{name}", "name": name, "created_at": now, "updated_at": now},
                    )
                    accounts_q.ensure_group_chats_sync(
                        conn, chat_ids, channel_id=channel_id, now=now
                    )
                    accounts_q.set_account_chats_sync(conn, f"acc_{name}", chat_ids)

                await hub.db.write(link)
        finally:
            await hub.stop()

    asyncio.run(go())


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli_app, list(args))
    return result


def test_groups_sync_json_reports_each_group(
    settings: Settings, sandbox_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env in the way
    groups = directory()
    prepare(
        settings,
        sandbox_url,
        {"nova": [groups[0]["id"], groups[1]["id"]], "ghost": ["120363999999999999@g.us"]},
    )

    result = invoke("groups", "sync", "--json", "-d", settings.database_url)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_account = {a["account_name"]: a for a in report["accounts"]}
    assert by_account["nova"]["status"] == "success"
    assert by_account["nova"]["members_synced"] == sum(len(g["participants"]) for g in groups[:2])
    assert by_account["ghost"]["status"] == "failed"
    assert "no group" in by_account["ghost"]["groups"][0]["error"]
    assert (report["success_count"], report["fail_count"]) == (2, 1)

    one = invoke("groups", "sync", "--account", "acc_nova", "--json", "-d", settings.database_url)
    assert [a["account_name"] for a in json.loads(one.stdout)["accounts"]] == ["nova"]
    unknown = invoke("groups", "sync", "--account", "acc_nope", "-d", settings.database_url)
    assert unknown.exit_code == 1
    assert "no account acc_nope" in unknown.output


def test_groups_cleanup_removes_members_of_stale_groups(
    settings: Settings, sandbox_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    groups = directory()
    stale, fresh = groups[0]["id"], groups[1]["id"]
    prepare(settings, sandbox_url, {"nova": [stale, fresh]})
    assert invoke("groups", "sync", "--json", "-d", settings.database_url).exit_code == 0

    async def age() -> None:
        hub = Hub.build(settings)
        try:
            async with hub.db.transaction() as conn:
                await conn.execute(
                    update(chats)
                    .where(chats.c.chat_id == stale)
                    .values(last_synced_at=time.time() - 8 * 86400)
                )
        finally:
            await hub.db.dispose()

    asyncio.run(age())

    result = invoke(
        "groups", "cleanup", "--older-than", "7d", "--json", "-d", settings.database_url
    )

    assert result.exit_code == 0, result.output
    removed = json.loads(result.stdout)
    assert removed["groups"] == 1
    assert removed["members_removed"] == len(groups[0]["participants"])
    health = json.loads(invoke("groups", "health", "--json", "-d", settings.database_url).stdout)
    assert health["total_cached_members"] == len(groups[1]["participants"])


@pytest.mark.parametrize("duration", ["soon", "-1d", "0"])
def test_groups_cleanup_refuses_a_bad_duration(settings: Settings, duration: str) -> None:
    result = invoke("groups", "cleanup", "--older-than", duration, "-d", settings.database_url)

    assert result.exit_code == 2, result.output
