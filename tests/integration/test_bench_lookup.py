"""``wahub bench lookup --json`` as an operator runs it, at a tiny size (no timing asserts)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

FIELDS = {
    "members",
    "groups",
    "lookups",
    "concurrency",
    "found_fraction",
    "p50_ms",
    "p99_ms",
    "lookups_per_s",
    "bare_query_p50_ms",
    "bare_query_p99_ms",
    "pk_select_p50_ms",
    "naive_seconds",
    "naive_sampled_groups",
    "naive_latency_ms",
    "populate_seconds",
    "backend",
}


async def test_bench_lookup_prints_one_json_object_and_finds_every_phone(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        "bench",
        "lookup",
        "--members",
        "600",
        "--groups",
        "12",
        "--lookups",
        "40",
        "--concurrency",
        "2",
        "--json",
        cwd=tmp_path,  # no developer .env in the way
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WAHUB_LOG_LEVEL": "WARNING"},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 240)

    assert proc.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert set(result) == FIELDS
    assert (result["members"], result["groups"], result["lookups"]) == (600, 12, 40)
    assert result["found_fraction"] == 1.0, "every phone asked is a member of some group"
    assert result["naive_sampled_groups"] == 12
    assert result["naive_seconds"] > 0
