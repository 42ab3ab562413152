"""``wahub bench ingest`` at a tiny size: signed webhooks over HTTP to a real ``wahub
serve``, duplicates and shuffled order; every field reported, nothing lost, nothing
applied twice (no timing asserted: speed is the bench's job, not the test's)."""

from __future__ import annotations

import json
import subprocess
import sys

from wahub.bench.webhooks import run_webhook_ingest_bench


async def test_every_event_is_applied_once_and_every_rate_is_measured() -> None:
    result = await run_webhook_ingest_bench(events=600, duplicates=0.25, concurrency=8)

    assert result["events"] == 600
    assert result["requests"] == 750, "a quarter of the events posted twice"
    assert result["duplicates_posted"] == 150
    assert result["lost"] == 0, result
    assert result["duplicates_applied"] == 0, result
    assert result["duplicates_stored"] == 0, "repeats are refused at the door"
    latency_messages = result["latency_events"] // 2
    assert latency_messages >= 50, "the latency phase offered events of its own"
    assert result["messages_read"] == 300 + latency_messages, "read arrived for every message"
    for rate in ("events_per_s", "intake_per_s", "raw_http_per_s", "raw_insert_per_s"):
        assert result[rate] > 0, (rate, result)
    # Both are rounded to 0.1 on their own: half of the rounded rate may differ by 0.05.
    assert abs(result["offered_per_s"] - result["raw_http_per_s"] / 2) <= 0.1
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["hub_cpu_ms_per_event"] > 0
    assert result["ratio"] == round(result["events_per_s"] / result["raw_http_per_s"], 3)
    assert result["backend"] == "sqlite"


def test_counters_mode_is_the_campaign_comparison() -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "wahub", "bench", "ingest", "--counters"),
            *("--messages", "200", "--rounds", "1", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["consistent"] is True
    assert result["messages"] == 200
    assert "slowdown_pct" in result
