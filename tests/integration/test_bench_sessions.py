"""``wahub bench sessions`` as an operator runs it, at a tiny size (no timing asserts)."""

from __future__ import annotations

import json

from test_bench_send import wahub

FIELDS = {
    "sessions",
    "messages",
    "msgs_per_s",
    "events_per_s",
    "webhook_events_per_s",
    "ratio",
    "lost",
    "duplicates",
    "keepalives_missed",
}


async def test_bench_sessions_reports_both_sides_with_nothing_lost() -> None:
    code, out, err = await wahub(
        "bench", "sessions", "--sessions", "3", "--messages", "60", "--chats", "6", "--json"
    )  # fmt: skip
    assert code == 0, f"exit {code}: {err[-2000:]}"
    result = json.loads(out)
    assert not FIELDS - set(result), f"missing fields: {FIELDS - set(result)}"
    assert (result["sessions"], result["messages"]) == (3, 60)
    assert (result["lost"], result["duplicates"]) == (0, 0)
    assert result["events_per_s"] > 0, "every session message was read before the deadline"
    assert result["webhook_events_per_s"] > 0, "every webhook message was read too"


async def test_bench_sessions_refuses_a_non_positive_size() -> None:
    code, out, err = await wahub("bench", "sessions", "--sessions", "0", "--json", timeout=60)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
