"""``wahub bench lookup``: lookup by phone over HTTP, against two baselines.

Set-up: a SQLite file in a temporary directory holding ``groups`` groups of
``members / groups`` members each, drawn from a pool of people so that people share
groups (as artists' teams do), one account per group, and every tenth person shown only
by a linked id that ``lid_links`` resolves (the query's second branch).

Measured, in one run on the same machine:

- ``p50_ms``, ``p99_ms``: ``POST /v1/lookup`` over HTTP to a ``wahub serve`` process of
  its own, one request at a time (phones spelt in several ways), as a CRM would call it;
  ``lookups_per_s``: the same lookups with ``concurrency`` clients.
- ``bare_query_p50_ms``: the same indexed query run directly on the database from this
  process (no HTTP, no phone parsing): what the query itself costs.
- ``pk_select_p50_ms``: a primary-key select of one account, the floor of any read.
- ``naive_seconds``: the approach wahub replaces, for one phone: fetch every group from
  the provider (the sandbox's WHAPI channel at ``naive_latency_ms`` per call, one call at
  a time) and scan the participants. Timed on ``naive_sample`` groups and scaled to
  ``groups``, since 20,000 calls at 50 ms would take over 16 minutes.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.bench.serving import serve_process
from wahub.config import Settings
from wahub.domain.phones import phone_lookup_forms
from wahub.embedded import add_sandbox_whapi_channel, free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.store import channels as channels_q
from wahub.store import groups as groups_q
from wahub.store.schema import account_chats, accounts, chats, group_members, lid_links

LID_EVERY = 10
CHUNK = 20_000


def person(index: int) -> str:
    """The ``index``-th person's phone: a valid German mobile number (E.164)."""
    return f"+49151{10_000_000 + index}"


def lid(index: int) -> str:
    return f"{90_000_000_000_000 + index}@lid"


def spelling(phone: str, rng: random.Random) -> str:
    """One of the ways a CRM user types a number."""
    digits = phone[1:]
    return rng.choice(
        [phone, f"+{digits[:2]} {digits[2:5]} {digits[5:]}", "00" + digits, f"0{digits[2:]}"]
    )


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _populate(conn: SyncConnection, *, groups: int, per_group: int, people: int, seed: int) -> None:
    rng = random.Random(seed)
    now = time.time()
    chat_rows = [
        {
            "chat_id": f"120363{index:012d}@g.us",
            "kind": "group",
            "name": f"Artist {index} - Team",
            "last_synced_at": now,
            "sync_status": "success",
            "created_at": now,
        }
        for index in range(groups)
    ]
    conn.execute(chats.insert(), chat_rows)
    conn.execute(
        accounts.insert(),
        [
            {
                "id": f"acc_{index:08d}",
                "name": f"Artist {index}",
                "created_at": now,
                "updated_at": now,
            }
            for index in range(groups)
        ],
    )
    conn.execute(
        account_chats.insert(),
        [{"account_id": f"acc_{i:08d}", "chat_id": c["chat_id"]} for i, c in enumerate(chat_rows)],
    )
    conn.execute(
        lid_links.insert(),
        [
            {"lid": lid(i), "phone": person(i), "source": "bench", "learned_at": now}
            for i in range(LID_EVERY - 1, people, LID_EVERY)
        ],
    )
    batch: list[dict[str, Any]] = []
    for index, chat in enumerate(chat_rows):
        for rank_index, who in enumerate(rng.sample(range(people), per_group)):
            hidden = who % LID_EVERY == LID_EVERY - 1
            batch.append(
                {
                    "chat_id": chat["chat_id"],
                    "member_phone": None if hidden else person(who),
                    "member_lid": lid(who) if hidden else None,
                    "rank": "creator" if rank_index == 0 else "member",
                    "synced_at": now,
                }
            )
        if len(batch) >= CHUNK or index == groups - 1:
            conn.execute(group_members.insert(), batch)
            batch = []


async def _http_lookups(
    url: str, key: str, phones: list[str], concurrency: int
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    found = 0
    queue = list(phones)
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def client() -> None:
            nonlocal found
            while queue:
                phone = queue.pop()
                started = time.perf_counter()
                async with http.post(f"{url}/v1/lookup", json={"phone": phone}) as response:
                    body = await response.json()
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"lookup of {phone!r} answered {response.status}: {body}")
                found += 1 if body["count"] else 0

        # Warm the server's connections and caches before timing.
        async def warm(phone: str) -> None:
            async with http.post(f"{url}/v1/lookup", json={"phone": phone}) as response:
                await response.read()

        await asyncio.gather(*(warm(p) for p in queue[-concurrency:]))
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall, found


async def _direct_queries(hub: Hub, phones: list[str], default_region: str) -> dict[str, float]:
    forms = [phone_lookup_forms(p, default_region=default_region).forms for p in phones]
    query_ms: list[float] = []
    for phone_forms in forms:
        started = time.perf_counter()
        async with hub.db.read() as conn:
            await groups_q.lookup_by_phone(conn, phone_forms)
        query_ms.append((time.perf_counter() - started) * 1000)
    pk_ms: list[float] = []
    for index in range(len(phones)):
        started = time.perf_counter()
        async with hub.db.read() as conn:
            await conn.execute(select(accounts).where(accounts.c.id == f"acc_{index % 100:08d}"))
        pk_ms.append((time.perf_counter() - started) * 1000)
    return {
        "bare_query_p50_ms": round(statistics.median(query_ms), 3),
        "bare_query_p99_ms": round(_percentile(query_ms, 0.99), 3),
        "pk_select_p50_ms": round(statistics.median(pk_ms), 3),
    }


async def _naive(hub: Hub, *, phone: str, groups: int, sample: int, latency_ms: float) -> float:
    """Seconds the old approach needs for one phone: every group fetched, one by one."""
    config = SandboxConfig(whapi_latency_ms=latency_ms)
    sandbox = Sandbox(config)
    url = await sandbox.start()
    try:
        rng = random.Random(7)
        directory: list[dict[str, Any]] = [
            {
                "id": f"120363{index:012d}@g.us",
                "name": f"Artist {index} - Team",
                "participants": [
                    {"id": person(who)[1:], "rank": "member"}
                    for who in rng.sample(range(10_000), 50)
                ],
            }
            for index in range(sample)
        ]
        sandbox.whapi.set_groups(directory)
        channel = await add_sandbox_whapi_channel(hub, url, config=config)
        async with hub.db.read() as conn:
            row = await channels_q.get_channel(conn, channel["id"])
        assert row is not None
        source = hub.providers.groups_for_channel(row)
        started = time.perf_counter()
        for group in directory:
            info = await source.get_group(group["id"])
            _ = [p for p in info.participants if p.phone == phone]
        per_group = (time.perf_counter() - started) / sample
    finally:
        await sandbox.stop()
    return per_group * groups


async def run_lookup_bench(
    *,
    members: int = 50_000,
    groups: int | None = None,
    lookups: int = 2_000,
    concurrency: int = 8,
    naive_sample: int = 20,
    naive_latency_ms: float = 50.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns one JSON-able dict (see the module docstring)."""
    group_count = groups or max(1, members // 50)
    per_group = max(1, members // group_count)
    people = max(per_group * 2, members // 4)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="wahub-bench-lookup-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'wahub.db'}"
        settings = Settings(_env_file=None, database_url=database_url, default_region="DE")
        hub = Hub.build(settings)
        await hub.start(workers=False, realtime=False)
        try:
            started = time.perf_counter()
            await hub.db.write(
                lambda conn: _populate(
                    conn, groups=group_count, per_group=per_group, people=people, seed=seed
                )
            )
            populate_seconds = time.perf_counter() - started
            key = (await hub.access.create_key(user_name="bench", role="viewer")).key
            phones = [spelling(person(rng.randrange(people)), rng) for _ in range(lookups)]
            direct = await _direct_queries(hub, phones[: min(lookups, 1000)], "DE")
            # National spellings ("0151 ...") need the region, as in the bench's own queries.
            region = {"WAHUB_DEFAULT_REGION": "DE", "WAHUB_GROUP_SYNC_CRON": ""}
            async with serve_process(
                database_url, free_port(), env=region, what="lookup"
            ) as served:
                url = served.url
                # Latency with one client (nothing queued behind anything), then
                # throughput with ``concurrency`` clients.
                latencies, _, found = await _http_lookups(url, key, phones, 1)
                _, wall, _ = await _http_lookups(url, key, phones, concurrency)
            naive = await _naive(
                hub,
                phone=person(0),
                groups=group_count,
                sample=min(naive_sample, group_count),
                latency_ms=naive_latency_ms,
            )
        finally:
            await hub.stop()
    return {
        "members": group_count * per_group,
        "groups": group_count,
        "lookups": lookups,
        "concurrency": concurrency,
        "found_fraction": round(found / lookups, 3),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "lookups_per_s": round(lookups / wall, 1),
        **direct,
        "naive_seconds": round(naive, 1),
        "naive_sampled_groups": min(naive_sample, group_count),
        "naive_latency_ms": naive_latency_ms,
        "populate_seconds": round(populate_seconds, 1),
        "backend": "sqlite",
    }
