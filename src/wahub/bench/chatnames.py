"""``wahub bench chatnames``: chat names for a stream of messages, one provider call per chat.

The problem it answers: a chat-name cache that asked Periskope on every message (5-10 s a
lookup, 100 calls where a handful of chats were involved). Goal: ``provider_calls ==
distinct_chats``, however many messages name those chats and however many arrive at once.

Set-up, in one run on one machine: the sandbox in this process playing Periskope (its
deterministic directory of ``DEFAULT_CHAT_COUNT`` chats, each answer held
``provider_latency_ms``), a hub database (SQLite in a temporary directory, or a
throwaway PostgreSQL database with ``database``) holding one Periskope channel pointed at
the sandbox and an admin key, and ``wahub serve --no-workers`` in a process of its own.

Measured:

- Miss phase: ``messages`` incoming messages, whose chats are ``distinct_chats`` chats of
  the directory, each at least once, the rest drawn with a Zipf skew (seeded) so a few
  chats are hot. Each message asks ``GET /v1/chats/{id}/name`` with ``concurrency``
  requests in flight, so messages of one chat arrive while its first lookup is still out.
  ``provider_calls``: the sandbox's own count of Periskope requests over both phases
  (not wahub's metrics, which ``metrics_provider_calls`` reports beside it);
  ``concurrent_misses``: requests sent before the first answer for their chat came back
  (the single flight's work); ``wrong_names``: answers that are not the directory's name;
  ``miss_p50_ms``/``miss_p99_ms``: the first request of each chat; ``seconds``: the
  phase's wall time.
- Hit phase: ``hit_lookups`` names of cached chats (same skew), one request at a time,
  alternating with ``GET /`` (a constant answer, no database) on the same connection:
  ``hit_p50_ms``/``hit_p99_ms`` against ``raw_http_p50_ms``/``raw_http_p99_ms``, so load on
  the machine weighs on both alike. ``hit_phase_provider_calls`` must be 0.
- ``naive_seconds``: one provider call per message, one at a time: ``messages`` times
  ``provider_call_ms``, the mean of ``naive_sample`` calls made afterwards straight to the
  sandbox through the Periskope adapter.

``ok``: ``provider_calls == distinct_chats`` and no wrong name.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from wahub.bench.send import bench_database_url, bench_secret_key
from wahub.bench.serving import serve_process
from wahub.config import Settings
from wahub.domain.errors import ValidationError
from wahub.embedded import free_port
from wahub.providers.sandbox import DEFAULT_CHAT_COUNT, Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.store import channels as channel_q

ZIPF_EXPONENT: Final = 1.1  # the i-th hottest chat gets 1 / i**1.1 of the draws


@dataclass(frozen=True, slots=True)
class _Answer:
    chat_id: str
    started: float
    finished: float
    name: str | None

    @property
    def ms(self) -> float:
        return (self.finished - self.started) * 1000


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(value: float) -> float:
    return round(value, 3)


def message_chats(
    chat_ids: list[str], messages: int, rng: random.Random
) -> tuple[list[str], list[float]]:
    """The chat of each of ``messages`` messages: every chat once, the rest drawn with a
    Zipf skew over ``chat_ids`` in their order (the first is the hottest), shuffled.
    Also returns the weights, for drawing more lookups of the same chats."""
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(chat_ids))]
    stream = list(chat_ids) + rng.choices(chat_ids, weights, k=messages - len(chat_ids))
    rng.shuffle(stream)
    return stream, weights


def _name_path(chat_id: str) -> str:
    return f"/v1/chats/{quote(chat_id, safe='@.')}/name"


async def _ask(http: aiohttp.ClientSession, url: str, chat_id: str) -> _Answer:
    started = time.perf_counter()
    async with http.get(url + _name_path(chat_id)) as response:
        body = await response.json()
    finished = time.perf_counter()
    if response.status != 200:
        raise RuntimeError(f"GET {_name_path(chat_id)} answered {response.status}: {body}")
    return _Answer(chat_id, started, finished, body["name"])


async def _get_root(http: aiohttp.ClientSession, url: str) -> float:
    """``GET /`` (a constant answer: the server's floor); its time in ms."""
    started = time.perf_counter()
    async with http.get(f"{url}/") as response:
        await response.read()
    if response.status != 200:
        raise RuntimeError(f"GET / answered {response.status}")
    return (time.perf_counter() - started) * 1000


async def _miss_phase(
    url: str, key: str, stream: list[str], concurrency: int
) -> tuple[list[_Answer], float]:
    """Every message's chat name, ``concurrency`` requests in flight; answers in the order
    they were sent, and the wall time."""
    answers: list[_Answer] = []
    pending = iter(stream)
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        # Open the connections first, so the first lookups do not also pay for TCP.
        await asyncio.gather(*(_get_root(http, url) for _ in range(concurrency)))

        async def client() -> None:
            for chat_id in pending:
                answers.append(await _ask(http, url, chat_id))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    answers.sort(key=lambda a: a.started)
    return answers, wall


async def _hit_phase(url: str, key: str, chat_ids: list[str]) -> tuple[list[_Answer], list[float]]:
    """Each chat's name, one request at a time, each followed by ``GET /`` on the same
    connection; the answers and the ``GET /`` times in ms."""
    answers: list[_Answer] = []
    raw_ms: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for _ in range(10):  # warm the connection and the server's code paths
            await _get_root(http, url)
        for chat_id in chat_ids:
            answers.append(await _ask(http, url, chat_id))
            raw_ms.append(await _get_root(http, url))
    return answers, raw_ms


async def _metrics_provider_calls(url: str) -> int:
    """What the server's own ``/metrics`` says it asked providers for chat names."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "wahub_chat_name_provider_calls":
            return int(sum(sample.value for sample in family.samples))
    raise RuntimeError("/metrics has no wahub_chat_name_provider_calls")


def concurrent_misses(answers: list[_Answer]) -> int:
    """Requests sent after their chat's first request but before any answer for that
    chat came back: lookups that only a shared (single-flight) call can answer once."""
    first_answer: dict[str, float] = {}
    for answer in answers:
        first_answer[answer.chat_id] = min(
            answer.finished, first_answer.get(answer.chat_id, answer.finished)
        )
    seen: set[str] = set()
    count = 0
    for answer in answers:  # in the order they were sent
        if answer.chat_id in seen and answer.started < first_answer[answer.chat_id]:
            count += 1
        seen.add(answer.chat_id)
    return count


async def _provider_call_ms(hub: Hub, channel_id: str, chat_ids: list[str]) -> float:
    """Mean ms of one ``GET /chats/{id}`` through the Periskope adapter, one at a time."""
    async with hub.db.read() as conn:
        channel = await channel_q.get_channel(conn, channel_id)
    assert channel is not None
    directory = hub.providers.chats_for_channel(channel)
    started = time.perf_counter()
    for chat_id in chat_ids:
        await directory.get_chat(chat_id)
    return (time.perf_counter() - started) * 1000 / len(chat_ids)


def _check(
    messages: int, distinct_chats: int, concurrency: int, hit_lookups: int, latency_ms: float
) -> None:
    if not 1 <= distinct_chats <= DEFAULT_CHAT_COUNT:
        raise ValidationError(
            f"distinct_chats must be 1..{DEFAULT_CHAT_COUNT} (the sandbox's Periskope "
            f"directory holds {DEFAULT_CHAT_COUNT} chats), got {distinct_chats}",
            details={"field": "distinct_chats"},
        )
    if messages < distinct_chats:
        raise ValidationError(
            f"messages ({messages}) must be at least distinct_chats ({distinct_chats}): "
            "every chat gets at least one message",
            details={"field": "messages"},
        )
    if concurrency < 1 or hit_lookups < 1 or latency_ms < 0:
        raise ValidationError(
            "concurrency and hit_lookups must be positive, provider_latency_ms not negative"
        )


async def run_chatnames_bench(
    *,
    messages: int = 2_000,
    distinct_chats: int = 200,
    concurrency: int = 16,
    hit_lookups: int = 1_000,
    provider_latency_ms: float = 50.0,
    naive_sample: int = 10,
    database: str | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns one JSON-able dict (see the module docstring). Raises
    ``ValidationError`` for sizes the sandbox's directory cannot hold."""
    _check(messages, distinct_chats, concurrency, hit_lookups, provider_latency_ms)
    rng = random.Random(seed)
    sandbox = Sandbox(SandboxConfig(periskope_latency_ms=provider_latency_ms, seed=seed))
    sandbox_url = await sandbox.start()

    def sandbox_calls() -> int:
        return sum(sandbox.periskope.counters.calls.values())

    try:
        directory = {c["chat_id"]: c["chat_name"] for c in sandbox.periskope.chats}
        chat_ids = rng.sample(sorted(directory), distinct_chats)
        stream, weights = message_chats(chat_ids, messages, rng)
        hit_chats = rng.choices(chat_ids, weights, k=hit_lookups)
        async with bench_database_url(database, "chatnames") as database_url:
            hub = Hub.build(
                Settings(_env_file=None, database_url=database_url, secret_key=bench_secret_key())
            )
            await hub.start(workers=False, realtime=False)
            try:
                channel = await hub.channels.create(
                    name="periskope",
                    kind="periskope",
                    access_token=str(sandbox.config.periskope_api_key),
                    phone_number="+" + sandbox.config.periskope_org_phone,
                    base_url=f"{sandbox_url}/periskope",
                )
                key = (await hub.access.create_key(user_name="bench", role="admin")).key
                calls_before = sandbox_calls()
                quiet = {"WAHUB_CACHE_ON_STARTUP": "false", "WAHUB_GROUP_SYNC_CRON": ""}
                async with serve_process(
                    database_url, free_port(), env=quiet, what="chatnames"
                ) as served:
                    url = served.url
                    misses, seconds = await _miss_phase(url, key, stream, concurrency)
                    calls_after_misses = sandbox_calls()
                    hits, raw_ms = await _hit_phase(url, key, hit_chats)
                    calls_after_hits = sandbox_calls()
                    metrics_calls = await _metrics_provider_calls(url)
                call_ms = await _provider_call_ms(
                    hub, channel["id"], chat_ids[: max(1, naive_sample)]
                )
            finally:
                await hub.stop()
    finally:
        await sandbox.stop()

    first: dict[str, _Answer] = {}
    for answer in misses:
        first.setdefault(answer.chat_id, answer)
    miss_ms = [a.ms for a in first.values()]
    hit_ms = [a.ms for a in hits]
    provider_calls = calls_after_hits - calls_before
    wrong = sum(a.name != directory[a.chat_id] for a in (*misses, *hits))
    return {
        "messages": messages,
        "distinct_chats": len(first),
        "concurrency": concurrency,
        "provider_calls": provider_calls,
        "hit_phase_provider_calls": calls_after_hits - calls_after_misses,
        "metrics_provider_calls": metrics_calls,
        "concurrent_misses": concurrent_misses(misses),
        "wrong_names": wrong,
        "seconds": round(seconds, 3),
        "miss_p50_ms": _ms(statistics.median(miss_ms)),
        "miss_p99_ms": _ms(_percentile(miss_ms, 0.99)),
        "hit_lookups": hit_lookups,
        "hit_p50_ms": _ms(statistics.median(hit_ms)),
        "hit_p99_ms": _ms(_percentile(hit_ms, 0.99)),
        "raw_http_p50_ms": _ms(statistics.median(raw_ms)),
        "raw_http_p99_ms": _ms(_percentile(raw_ms, 0.99)),
        "provider_latency_ms": provider_latency_ms,
        "provider_call_ms": _ms(call_ms),
        "naive_seconds": round(messages * call_ms / 1000, 1),
        "backend": "sqlite" if database is None else "postgresql",
        "ok": provider_calls == len(first) == distinct_chats and wrong == 0,
    }
