"""``wahub bench stats|ingest`` at a tiny size (fields and consistency, no timing
asserts) and ``wahub stats verify`` exiting non-zero on a difference."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from wahub.bench.stats import run_ingest_bench, run_stats_bench
from wahub.cli import app


async def test_bench_stats_reports_every_field_and_consistent_counters() -> None:
    result = await run_stats_bench(recipients=60, reads=20)

    assert set(result) >= {
        "recipients",
        "status_events",
        "read_p99_ms",
        "recount_ms",
        "speedup",
        "consistent",
    }
    assert result["recipients"] == 60
    assert result["status_events"] >= 120, "at least sent and delivered-or-failed each"
    assert result["consistent"] is True


async def test_bench_ingest_compares_with_and_without_counters() -> None:
    result = await run_ingest_bench(messages_count=60, rounds=2)

    assert result["with_counters_per_s"] > 0
    assert result["without_counters_per_s"] > 0
    assert "slowdown_pct" in result
    assert result["consistent"] is True


def test_stats_verify_exits_non_zero_when_a_counter_differs(
    migrated_database: Path, tmp_path: Path
) -> None:
    database = tmp_path / "wahub.db"
    database.write_bytes(migrated_database.read_bytes())
    url = f"sqlite:///{database}"
    runner = CliRunner()

    clean = runner.invoke(app, ["stats", "verify", "--json", "--database", url])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["consistent"] is True

    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO campaigns (id, name, channel_id, status, templates, audience_source, "
            "reply_window_seconds, created_at, updated_at) "
            "VALUES ('cmp_x', 'x', 'ch_x', 'running', '[]', 'csv', 3600, 0, 0)"
        )
        conn.execute(
            "INSERT INTO campaign_stats (campaign_id, template_name, sent) VALUES ('cmp_x', 't', 1)"
        )

    dirty = runner.invoke(app, ["stats", "verify", "--json", "--database", url])
    assert dirty.exit_code == 1, dirty.output
    (difference,) = json.loads(dirty.output)["differences"]
    assert (difference["counter"], difference["stored"], difference["recounted"]) == ("sent", 1, 0)
