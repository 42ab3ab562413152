"""``wahub bench``: benchmarks, each against a baseline measured in the same run."""

from __future__ import annotations

from typing import Annotated

import typer

from wahub.cli.common import BenchDatabaseOpt, JsonOpt, run, usage_error
from wahub.cli.output import emit

app = typer.Typer(help="Benchmarks: one JSON object per run with --json.", no_args_is_help=True)


@app.command("send")
def send(
    messages: Annotated[int, typer.Option(help="Messages to send.")] = 5000,
    chats: Annotated[int, typer.Option(help="Chats (= sends in flight at once).")] = 50,
    database: BenchDatabaseOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="With --database: 'wahub worker' processes running the pipeline, one "
            "channel each (same sandbox, distinct phone_number_ids), chats spread over "
            "them. On SQLite the pipeline runs in the bench process: 1 only.",
        ),
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Outbound throughput against the sandbox, with the raw sandbox as baseline.

    Exits 1 if the sandbox did not receive every message exactly once.
    """
    from wahub.bench.send import run_send_bench

    result = run(
        lambda: run_send_bench(
            messages=messages,
            chats=chats,
            database=database,
            workers=workers,
            progress=not as_json,
        )
    )
    emit(result, as_json)
    if result["lost"] or result["duplicates"]:
        raise typer.Exit(1)


@app.command("sessions")
def sessions(
    sessions: Annotated[int, typer.Option(min=1, help="Linked sandbox web sessions.")] = 20,
    messages: Annotated[int, typer.Option(min=1, help="Messages per side.")] = 2000,
    chats: Annotated[int, typer.Option(min=1, help="Chats (= sends in flight at once).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Sends and receipts through sandbox WhatsApp Web sessions vs the same volume through
    the Cloud API and its status webhooks, in the same run (ratio = events_per_s /
    webhook_events_per_s). Exits 1 if a message was lost or sent twice."""
    from wahub.bench.sessions import run_sessions_bench

    result = run(
        lambda: run_sessions_bench(
            sessions=sessions, messages=messages, chats=chats, progress=not as_json
        )
    )
    emit(result, as_json)
    if result["lost"] or result["duplicates"]:
        raise typer.Exit(1)


@app.command("lookup")
def lookup(
    members: Annotated[int, typer.Option(help="Group members in the database.")] = 50_000,
    groups: Annotated[
        int | None, typer.Option(help="Groups they are spread over (default: members / 50).")
    ] = None,
    lookups: Annotated[int, typer.Option(help="Lookups over HTTP.")] = 2000,
    concurrency: Annotated[int, typer.Option(help="Lookups in flight.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Lookup by phone over HTTP vs the bare query, a primary-key select, and the old
    fetch-every-group approach (SQLite in a temp dir)."""
    from wahub.bench.lookup import run_lookup_bench

    if members < 1 or lookups < 1 or concurrency < 1 or (groups is not None and groups < 1):
        raise usage_error("--members, --groups, --lookups and --concurrency must be positive")
    result = run(
        lambda: run_lookup_bench(
            members=members, groups=groups, lookups=lookups, concurrency=concurrency
        )
    )
    emit(result, as_json)


@app.command("chatnames")
def chatnames(
    messages: Annotated[int, typer.Option(help="Incoming messages whose chat is named.")] = 2000,
    distinct_chats: Annotated[
        int,
        typer.Option(help="Chats they belong to (each at least once, a few hot), at most 250."),
    ] = 200,
    concurrency: Annotated[int, typer.Option(help="Name lookups in flight.")] = 16,
    hit_lookups: Annotated[
        int, typer.Option(help="Lookups of cached chats, one at a time (the hit latency).")
    ] = 1000,
    provider_latency_ms: Annotated[
        float, typer.Option(help="The sandbox's delay on every Periskope request.")
    ] = 50.0,
    database: BenchDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chat names for a stream of messages over HTTP: Periskope calls (sandbox-counted)
    vs distinct chats, hit latency vs a bare route, and one call per message as baseline.
    Exits 1 unless provider_calls == distinct_chats and every name is right."""
    from wahub.bench.chatnames import run_chatnames_bench
    from wahub.providers.sandbox import DEFAULT_CHAT_COUNT

    if not 1 <= distinct_chats <= DEFAULT_CHAT_COUNT:
        raise usage_error(
            f"--distinct-chats must be 1..{DEFAULT_CHAT_COUNT} "
            "(the sandbox's Periskope directory holds that many chats)"
        )
    if messages < distinct_chats or concurrency < 1 or hit_lookups < 1 or provider_latency_ms < 0:
        raise usage_error(
            "--messages must be at least --distinct-chats, --concurrency and "
            "--hit-lookups positive, --provider-latency-ms not negative"
        )
    result = run(
        lambda: run_chatnames_bench(
            messages=messages,
            distinct_chats=distinct_chats,
            concurrency=concurrency,
            hit_lookups=hit_lookups,
            provider_latency_ms=provider_latency_ms,
            database=database,
        )
    )
    emit(result, as_json)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("clients")
def clients(
    requests: Annotated[int, typer.Option(help="Requests per client.")] = 3000,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """aiohttp vs httpx against the sandbox: the measurement behind the send path's client."""
    from wahub.bench.clients import run_clients_bench

    emit(run(lambda: run_clients_bench(requests=requests, concurrency=concurrency)), as_json)


@app.command("stats")
def stats(
    recipients: Annotated[int, typer.Option(min=1, help="Campaign recipients.")] = 100_000,
    reads: Annotated[int, typer.Option(min=1, help="Funnel reads timed.")] = 2000,
    database: BenchDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Funnel read (counter rows) vs the best single-query recount, on one database.
    Exits 1 if the counters differ from the recount."""
    from wahub.bench.stats import run_stats_bench

    result = run(lambda: run_stats_bench(recipients=recipients, reads=reads, database=database))
    emit(result, as_json)
    if not result["consistent"]:
        raise typer.Exit(1)


@app.command("ingest")
def ingest(
    events: Annotated[
        int, typer.Option(min=2, help="Status events posted (two per message), duplicates aside.")
    ] = 20_000,
    duplicates: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events posted a second time.")
    ] = 0.2,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 32,
    counters: Annotated[
        bool,
        typer.Option(
            "--counters",
            help="Instead: status-apply throughput on campaign messages (counters kept) vs "
            "messages of no campaign, interleaved (--messages, --rounds).",
        ),
    ] = False,
    messages: Annotated[
        int, typer.Option(min=1, help="With --counters: messages per side.")
    ] = 20_000,
    rounds: Annotated[int, typer.Option(min=1, help="With --counters: interleaved rounds.")] = 3,
    database: BenchDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Signed Cloud API status webhooks over HTTP (one status per request, shuffled, some
    posted twice) until every event is applied, against a do-nothing endpoint on the same
    server stack and one-row inserts into the same database. Exits 1 if an event was lost
    or applied twice."""
    if counters:
        from wahub.bench.stats import run_ingest_bench

        emit(
            run(
                lambda: run_ingest_bench(messages_count=messages, rounds=rounds, database=database)
            ),
            as_json,
        )
        return
    from wahub.bench.webhooks import run_webhook_ingest_bench

    result = run(
        lambda: run_webhook_ingest_bench(
            events=events, duplicates=duplicates, concurrency=concurrency, database=database
        )
    )
    emit(result, as_json)
    if result["lost"] or result["duplicates_applied"]:
        raise typer.Exit(1)


@app.command("replicate")
def replicate(
    database: BenchDatabaseOpt = None,
    agent_database: Annotated[
        str | None,
        typer.Option(
            "--agent-database",
            help="The agent database (default: a throwaway SQLite file). A PostgreSQL "
            "URL names a server: a throwaway database is created on it and dropped.",
        ),
    ] = None,
    rate: Annotated[float, typer.Option(help="Changes offered per second.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="How long to offer them.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Lag of the agent-database sink at a steady offered rate, and a row-for-row check."""
    from wahub.bench.replicate import run_replicate_bench

    result = run(
        lambda: run_replicate_bench(
            database=database, agent_database=agent_database, rate=rate, seconds=seconds
        )
    )
    emit(result, as_json)


@app.command("events")
def events(
    rate: Annotated[float, typer.Option(min=1.0, help="Inbound messages offered per second.")] = (
        1000.0
    ),
    seconds: Annotated[float, typer.Option(min=0.1, help="How long to offer them.")] = 10.0,
    fail_share: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of deliveries the receiver fails.")
    ] = 0.1,
    chats: Annotated[int, typer.Option(min=1, help="Distinct senders (chats).")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Inbound messages through the sandbox into a subscription whose receiver fails a
    share of deliveries: events, delivered_per_s, p99_delivery_ms, lost, duplicates,
    out_of_order, against the same receiver driven directly. Exits 1 if an event was
    lost, delivered twice or out of order."""
    from wahub.bench.events import run_events_bench

    result = run(
        lambda: run_events_bench(rate=rate, seconds=seconds, fail_share=fail_share, chats=chats)
    )
    emit(result, as_json)
    if result["lost"] or result["duplicates"] or result["out_of_order"]:
        raise typer.Exit(1)
