"""``wahub bench send`` as an operator runs it, at a tiny size (no timing asserts)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import pytest

from pgcluster import PostgresCluster

FIELDS = {
    "messages",
    "chats",
    "seconds",
    "msgs_per_s",
    "raw_msgs_per_s",
    "ratio",
    "final_seconds",
    "read_seconds",
    "msgs_per_s_final",
    "null_msgs_per_s",
    "ratio_null",
    "hub_cpu_ms_per_message",
    "null_cpu_ms_per_message",
    "cpu_ratio",
    "enqueue_seconds",
    "lost",
    "duplicates",
    "backend",
    "workers",
    "http_client",
}


async def wahub(*args: str, timeout: float = 240) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WAHUB_LOG_LEVEL": "WARNING"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def bench_databases(cluster: PostgresCluster) -> list[str]:
    conn = await asyncpg.connect(cluster.url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'wahub_bench_%'"
        )
    finally:
        await conn.close()
    return [r["datname"] for r in rows]


async def test_bench_send_on_postgresql_with_two_worker_processes(
    postgres: PostgresCluster | None,
) -> None:
    if postgres is None:
        pytest.skip("no PostgreSQL server on this machine")
    code, out, err = await wahub(
        "bench", "send", "--messages", "200", "--chats", "20",
        "--database", postgres.url, "--workers", "2", "--json",
    )  # fmt: skip
    assert code == 0, f"exit {code}: {err[-2000:]}"
    result = json.loads(out)
    assert not FIELDS - set(result), f"missing fields: {FIELDS - set(result)}"
    assert result["backend"] == "postgresql"
    assert result["workers"] == 2
    assert result["messages"] == 200
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["msgs_per_s"] > 0, "every message was sent before the deadline"
    assert result["msgs_per_s_final"] > 0, "every message was read before the deadline"
    assert result["null_msgs_per_s"] > 0
    # Each figure is rounded on its own, so their quotient may differ in the last digit.
    expected_ratio = result["msgs_per_s_final"] / result["null_msgs_per_s"]
    assert abs(result["ratio_null"] - expected_ratio) < 0.005
    assert result["read_seconds"] >= result["final_seconds"] >= result["seconds"]
    # Both sides spent some CPU; the worker processes' time is counted for the hub.
    assert result["hub_cpu_ms_per_message"] > 0
    assert result["null_cpu_ms_per_message"] > 0
    assert await bench_databases(postgres) == [], "the throwaway database was dropped"


async def test_bench_send_refuses_worker_processes_on_sqlite() -> None:
    code, out, err = await wahub("bench", "send", "--workers", "2", "--json", timeout=60)
    assert code == 1
    assert out == ""
    assert "--workers needs --database postgresql://" in err
    assert "Traceback" not in err


async def test_bench_send_names_an_unreachable_server_in_one_line() -> None:
    code, _, err = await wahub(
        "bench", "send", "--database", "postgresql://bench@127.0.0.1:1/x", "--json", timeout=60
    )
    assert code == 1
    assert "cannot create a throwaway database on PostgreSQL 127.0.0.1:1" in err
    assert "Traceback" not in err
