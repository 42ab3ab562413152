"""Replication over HTTP and the CLI: status and lag for admins, a bad sink entry
reported (status, health degraded) without stopping the hub, gauges at /metrics,
pause/resume, and ``wahub replicate backfill`` copying rows that predate the sink."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, insert
from typer.testing import CliRunner

from wahub.cli import app as cli_app
from wahub.config import Settings
from wahub.replication.config import DatabaseSinkConfig
from wahub.replication.sinks.database import DatabaseSink
from wahub.runtime import Hub
from wahub.store.database import Database
from wahub.store.migrate import upgrade
from wahub.store.schema import changes, chats

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    sinks = [
        {"name": "agent", "kind": "database", "url": f"sqlite:///{tmp_path}/agent.db"},
        {"name": "broken", "kind": "webhook", "url": "not a url", "secret": "s"},
    ]
    return settings.model_copy(update={"replication_sinks": json.dumps(sinks)})


async def test_status_shows_each_sink_and_reports_a_bad_entry(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub
) -> None:
    await hub.replication.ensure_cursors()

    response = await client.get("/v1/replication/status", headers=headers_for("admin"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["name"] for s in body["sinks"]] == ["agent"]
    assert body["sinks"][0]["kind"] == "database"
    assert body["status"] == "degraded"
    assert "broken" in body["config_errors"][0], "the bad entry is named"
    assert "url" in body["config_errors"][0], "and what is wrong with it"
    forbidden = await client.get("/v1/replication/status", headers=headers_for("agent"))
    assert forbidden.status_code == 403


async def test_health_degrades_and_metrics_show_lag(
    client: httpx.AsyncClient, headers_for: Headers, hub: Hub
) -> None:
    await hub.replication.ensure_cursors()
    async with hub.db.transaction() as conn:
        await conn.execute(
            insert(chats).values(chat_id="1203630001@g.us", kind="group", created_at=1.0)
        )

    health = await client.get("/healthz")
    metrics = await client.get("/metrics")

    assert health.status_code == 200, "a lagging sink does not make the hub unready"
    assert health.json()["status"] == "degraded"
    assert 'wahub_replication_pending_changes{sink="agent"} 1.0' in metrics.text
    assert 'wahub_replication_lag_seconds{sink="agent"}' in metrics.text


async def test_pause_and_resume(client: httpx.AsyncClient, headers_for: Headers) -> None:
    paused = await client.post("/v1/replication/sinks/agent/pause", headers=headers_for("admin"))
    status = await client.get("/v1/replication/status", headers=headers_for("admin"))
    unknown = await client.post("/v1/replication/sinks/nope/pause", headers=headers_for("admin"))
    resumed = await client.post("/v1/replication/sinks/agent/resume", headers=headers_for("admin"))

    assert paused.json() == {"sink": "agent", "paused": True}
    assert status.json()["sinks"][0]["paused"] is True
    assert unknown.status_code == 404
    assert resumed.json() == {"sink": "agent", "paused": False}


def test_cli_backfill_copies_rows_that_predate_the_log(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def old_rows() -> None:
        db = Database(settings.database_url)
        try:
            await upgrade(db)
            async with db.transaction() as conn:
                await conn.execute(
                    insert(chats).values(
                        chat_id="1203630002@g.us", kind="group", name="Old", created_at=1.0
                    )
                )
                await conn.execute(delete(changes))  # as if the log had been pruned
        finally:
            await db.dispose()

    async def mirrored() -> list[tuple[str, str]]:
        config = json.loads(settings.replication_sinks)[0]
        sink = DatabaseSink(DatabaseSinkConfig.model_validate(config))
        await sink.open()
        try:
            return [(r["chat_id"], r["name"]) for r in await sink.read_all("chats")]
        finally:
            await sink.close()

    asyncio.run(old_rows())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WAHUB_REPLICATION_SINKS", settings.replication_sinks)

    result = CliRunner().invoke(
        cli_app,
        ["replicate", "backfill", "--sink", "agent", "--json", "--database", settings.database_url],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows"]["chats"] == 1
    assert asyncio.run(mirrored()) == [("1203630002@g.us", "Old")]
