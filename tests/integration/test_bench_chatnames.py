"""``wahub bench chatnames`` at a tiny size: one Periskope call per distinct chat however
many messages name it and however many of them arrive at once, no call for a hit, and
the command's exit codes."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from pgcluster import PostgresCluster
from wahub.bench import chatnames
from wahub.bench.chatnames import run_chatnames_bench
from wahub.cli import app

FIELDS = {
    "messages",
    "distinct_chats",
    "concurrency",
    "provider_calls",
    "hit_phase_provider_calls",
    "metrics_provider_calls",
    "concurrent_misses",
    "wrong_names",
    "seconds",
    "miss_p50_ms",
    "miss_p99_ms",
    "hit_lookups",
    "hit_p50_ms",
    "hit_p99_ms",
    "raw_http_p50_ms",
    "raw_http_p99_ms",
    "provider_latency_ms",
    "provider_call_ms",
    "naive_seconds",
    "backend",
    "ok",
}

# Few chats, slow provider, many in flight: the hot chats' messages pile up behind their
# first lookup, so a cache without a working single flight would ask again for them.
TINY: dict[str, Any] = {
    "messages": 120,
    "distinct_chats": 10,
    "concurrency": 16,
    "hit_lookups": 40,
    "provider_latency_ms": 150.0,
    "naive_sample": 3,
}


def assert_one_call_per_chat(result: dict[str, Any]) -> None:
    assert set(result) == FIELDS
    assert (result["messages"], result["distinct_chats"], result["hit_lookups"]) == (120, 10, 40)
    assert result["concurrent_misses"] > 0, "no message arrived while its chat was being asked"
    assert result["provider_calls"] == result["distinct_chats"], (
        f"{result['provider_calls']} Periskope calls for {result['distinct_chats']} chats"
    )
    assert result["hit_phase_provider_calls"] == 0, "a cached chat was asked again"
    assert result["metrics_provider_calls"] == result["provider_calls"], "/metrics disagrees"
    assert result["wrong_names"] == 0
    assert result["ok"] is True


async def test_each_chat_costs_one_provider_call_and_hits_cost_none() -> None:
    result = await run_chatnames_bench(**TINY)

    assert_one_call_per_chat(result)
    assert result["backend"] == "sqlite"
    assert result["provider_latency_ms"] == 150.0
    assert result["provider_call_ms"] >= 150.0
    assert result["miss_p50_ms"] >= 150.0, "a first lookup waits for the provider"
    assert result["miss_p99_ms"] >= result["miss_p50_ms"]
    assert 0 < result["hit_p50_ms"] < 150.0, "a hit does not wait for the provider"
    assert result["hit_p99_ms"] >= result["hit_p50_ms"]
    assert 0 < result["raw_http_p50_ms"] <= result["raw_http_p99_ms"]
    assert result["seconds"] > 0
    assert result["naive_seconds"] == round(120 * result["provider_call_ms"] / 1000, 1)


async def test_on_postgresql_in_a_throwaway_database(postgres: PostgresCluster | None) -> None:
    if postgres is None:
        pytest.skip("no PostgreSQL server on this machine")

    result = await run_chatnames_bench(**TINY, database=postgres.url)

    assert_one_call_per_chat(result)
    assert result["backend"] == "postgresql"
    conn = await asyncpg.connect(postgres.url)
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'wahub_bench_%'"
        )
    finally:
        await conn.close()
    assert left == [], "the throwaway database was dropped"


def test_the_command_prints_json_and_exits_1_when_a_chat_was_asked_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fake(**kwargs: Any) -> dict[str, Any]:
        return {
            "messages": kwargs["messages"],
            "provider_calls": 11,
            "distinct_chats": 10,
            "ok": False,
        }

    monkeypatch.setattr(chatnames, "run_chatnames_bench", fake)

    outcome = CliRunner().invoke(
        app, ["bench", "chatnames", "--messages", "30", "--distinct-chats", "10", "--json"]
    )

    assert outcome.exit_code == 1, outcome.output
    assert json.loads(outcome.stdout)["messages"] == 30


def test_the_command_refuses_more_chats_than_the_sandbox_directory_holds() -> None:
    outcome = CliRunner().invoke(app, ["bench", "chatnames", "--distinct-chats", "251", "--json"])

    assert outcome.exit_code == 2
    assert "--distinct-chats must be 1..250" in outcome.output
