"""The ``wahub`` command: everything an operator does."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from wahub.config import Settings
from wahub.domain.errors import WahubError

T = TypeVar("T")

app = typer.Typer(
    name="wahub",
    help="Self-hosted WhatsApp messaging hub: durable outbox, verified webhooks, realtime status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)
channels_app = typer.Typer(help="Provider channels and their templates.", no_args_is_help=True)
chats_app = typer.Typer(help="Groups and who may send to them.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks: one JSON object per run with --json.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
app.add_typer(chats_app, name="chats")
groups_app = typer.Typer(
    help="Group directories: sync members, look phones up, cache health.", no_args_is_help=True
)
app.add_typer(groups_app, name="groups")
app.add_typer(bench_app, name="bench")

console = Console()
err = Console(stderr=True)
log = logging.getLogger("wahub")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="Database URL (default: $WAHUB_DATABASE_URL or sqlite:///wahub.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
BenchDatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="A PostgreSQL server (postgresql://user@host/db): the bench creates and "
        "drops a database of its own there. Default: SQLite in a temp dir.",
    ),
]


def _settings(database: str | None = None, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if database:
        overrides["database_url"] = database
    return Settings(**overrides)


class PipelineDied(WahubError):
    """A pipeline loop died of an unexpected error (logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__(
            "a pipeline loop died (see the log above); exiting so a supervisor restarts us"
        )


async def _until_stopped_or_failed(stop: asyncio.Event, failed: asyncio.Event) -> None:
    """Wait for a stop signal, or for the hub's pipeline to die."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; a WahubError becomes one readable line and exit code 1."""
    from wahub.logs import configure_logging

    configure_logging(Settings().log_level)
    try:
        return asyncio.run(_call(coro_factory))
    except WahubError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _call(coro_factory: Callable[[], Awaitable[T]]) -> T:
    return await coro_factory()


async def _with_hub(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from wahub.runtime import Hub

    hub = Hub.build(settings)
    try:
        await hub.start(workers=False, realtime=False)
        return await action(hub)
    finally:
        await hub.stop()


@app.command()
def migrate(database: DatabaseOpt = None) -> None:
    """Create or upgrade the schema (also done on every start)."""
    from wahub.store.database import Database
    from wahub.store.migrate import upgrade

    async def go() -> dict[str, Any]:
        db = Database(_settings(database).database_url)
        try:
            return await upgrade(db)
        finally:
            await db.dispose()

    result = _run(go)
    if result["from"] == result["to"]:
        console.print(f"schema already at {result['to']}")
    else:
        console.print(f"schema migrated from {result['from'] or 'empty'} to {result['to']}")


@app.command()
def serve(
    database: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox", help="Attach the in-process sandbox provider and a channel for it."
        ),
    ] = False,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run the send pipeline in this process.")
    ] = True,
) -> None:
    """Run the HTTP API (and, by default, the workers) until SIGINT/SIGTERM."""
    settings = _settings(database, host=host, port=port, run_workers=workers)

    async def go() -> None:
        from wahub.embedded import add_sandbox_channel, embedded_stack

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with embedded_stack(settings, with_sandbox=sandbox, workers=workers) as stack:
            if sandbox and stack.sandbox_url is not None:
                channels = await stack.hub.channels.list_all()
                if not channels:
                    await add_sandbox_channel(stack.hub, stack.sandbox_url)
                console.print(f"sandbox provider on {stack.sandbox_url}")
            console.print(f"wahub serving on {stack.url} (docs at {stack.url}/docs)")
            await _until_stopped_or_failed(stop, stack.hub.failed)
            console.print("shutting down: finishing in-flight sends")
        if stack.hub.failed.is_set():
            raise PipelineDied()

    _run(go)


@app.command()
def worker(
    database: DatabaseOpt = None,
    max_channels: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Lease at most this many channels, leaving the rest to other workers "
            "(default: $WAHUB_WORKER_MAX_CHANNELS, else every free channel).",
        ),
    ] = None,
) -> None:
    """Run only the pipeline (no HTTP). SIGTERM finishes in-flight sends, then exits."""
    settings = _settings(database, worker_max_channels=max_channels)

    async def go() -> None:
        from wahub.runtime import Hub

        hub = Hub.build(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await hub.start(workers=True, realtime=False)
        log.info("worker %s started", hub.outbox.worker_id if hub.outbox else "?")
        try:
            await _until_stopped_or_failed(stop, hub.failed)
        finally:
            await hub.stop()
        if hub.failed.is_set():
            raise PipelineDied()

    _run(go)


@app.command("sandbox")
def sandbox_cmd(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9090,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to POST signed status webhooks.")
    ] = None,
    app_secret: Annotated[
        str, typer.Option(help="Secret the webhooks are signed with.")
    ] = "sandbox-app-secret",
    latency_ms: Annotated[float, typer.Option(help="Added latency per send.")] = 0.0,
    fail_fraction: Annotated[
        float, typer.Option(help="Fraction of sends whose status ends in failed.")
    ] = 0.0,
    duplicate_fraction: Annotated[
        float, typer.Option(help="Fraction of webhooks delivered twice.")
    ] = 0.0,
    shuffle: Annotated[
        bool, typer.Option(help="Deliver a message's statuses out of order.")
    ] = False,
) -> None:
    """Run the fake Cloud API provider standalone (it outlives hub crashes)."""
    from wahub.logs import configure_logging
    from wahub.providers.sandbox import SandboxConfig, run_sandbox

    configure_logging("INFO")
    config = SandboxConfig(
        webhook_url=webhook_url,
        app_secret=app_secret,
        latency_ms=latency_ms,
        fail_fraction=fail_fraction,
        duplicate_fraction=duplicate_fraction,
        shuffle=shuffle,
    )
    run_sandbox(config, host, port)


@app.command()
def demo(
    messages: Annotated[int, typer.Option(help="How many messages to send.")] = 2000,
    chats: Annotated[int, typer.Option(help="Over how many chats.")] = 50,
    campaign: Annotated[
        bool,
        typer.Option(help="Then a campaign to the same people, half of whom reply."),
    ] = True,
) -> None:
    """Show the whole product on this machine: hub + sandbox, live statuses, a checked summary.

    Exits non-zero unless every message reached a final state and the sandbox received
    each exactly once; with the campaign, also unless every reply was stored once and the
    funnel equals a recount.
    """
    from wahub.demo import run_demo

    if not 1 <= chats <= 100:
        err.print("error: --chats must be 1 to 100")
        raise typer.Exit(2)
    result = _run(
        lambda: run_demo(messages=messages, chats=chats, console=console, campaign=campaign)
    )
    raise typer.Exit(0 if result.ok else 1)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, agent or viewer.")],
    user: Annotated[str, typer.Option(help="The user the key belongs to (created if new).")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once and never stored."""
    created = _run(
        lambda: _with_hub(
            _settings(database), lambda hub: hub.access.create_key(user_name=user, role=role)
        )
    )
    if as_json:
        print(
            json.dumps(
                {
                    "key": created.key,
                    "key_id": created.key_id,
                    "user": created.user_name,
                    "role": created.role.value,
                }
            )
        )
    else:
        console.print(f"key for {created.user_name} ({created.role.value}), shown once:")
        print(created.key)


@keys_app.command("list")
def keys_list(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (prefix, user, role; never the secret)."""
    rows = _run(lambda: _with_hub(_settings(database), lambda hub: hub.access.list_keys()))
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        console.print(f"{r['id']}  wh_{r['prefix']}_…  {r['user_name']}  {r['role']}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, database: DatabaseOpt = None) -> None:
    """Revoke a key by its id (from `wahub keys list`)."""
    _run(lambda: _with_hub(_settings(database), lambda hub: hub.access.revoke_key(key_id)))
    console.print(f"revoked {key_id}")


@channels_app.command("add")
def channels_add(
    name: Annotated[str, typer.Option(help="A name for humans.")],
    token: Annotated[
        str,
        typer.Option(
            help="Cloud API access token, WHAPI channel token or Periskope API key "
            "(stored, never shown).",
            envvar="WAHUB_CHANNEL_TOKEN",
        ),
    ],
    kind: Annotated[str, typer.Option(help="Provider: cloudapi, whapi or periskope.")] = "cloudapi",
    phone_number_id: Annotated[
        str | None, typer.Option(help="Cloud API phone number id (required for cloudapi).")
    ] = None,
    phone_number: Annotated[
        str | None,
        typer.Option(
            help="The channel's own number; for whapi it tells groups we left; for "
            "periskope it is the org phone (required)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="API base URL (default: the provider's; a sandbox URL for testing, "
            "e.g. http://127.0.0.1:PORT/whapi)."
        ),
    ] = None,
    api_version: Annotated[str, typer.Option(help="Graph API version.")] = "21.0",
    rate: Annotated[float, typer.Option(help="Messages per second for this number.")] = 80.0,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a Cloud API, WHAPI or Periskope (chat names only) channel."""
    row = _run(
        lambda: _with_hub(
            _settings(database),
            lambda hub: hub.channels.create(
                name=name,
                kind=kind,
                phone_number_id=phone_number_id,
                phone_number=phone_number,
                access_token=token,
                base_url=base_url,
                api_version=api_version,
                rate_per_second=rate,
            ),
        )
    )
    print(json.dumps(row) if as_json else f"channel {row['id']} added")


@channels_app.command("list")
def channels_list(database: DatabaseOpt = None) -> None:
    """List channels (never their credentials)."""
    rows = _run(lambda: _with_hub(_settings(database), lambda hub: hub.channels.list_all()))
    print(json.dumps(rows, indent=2))


@channels_app.command("template")
def channels_template(
    channel_id: str,
    name: Annotated[str, typer.Option(help="Template name as approved by Meta.")],
    language: Annotated[str, typer.Option(help="Language code, e.g. en_US.")] = "en_US",
    body_parameters: Annotated[
        int, typer.Option(help="How many {{n}} parameters the body takes.")
    ] = 0,
    category: Annotated[
        str, typer.Option(help="utility, marketing or authentication.")
    ] = "utility",
    database: DatabaseOpt = None,
) -> None:
    """Register an approved template on a channel, so sends naming it are accepted."""
    _run(
        lambda: _with_hub(
            _settings(database),
            lambda hub: hub.channels.add_template(
                channel_id,
                name=name,
                language=language,
                body_parameters=body_parameters,
                category=category,
            ),
        )
    )
    console.print(f"template {name} ({language}) registered on {channel_id}")


@chats_app.command("add-group")
def chats_add_group(
    chat_id: Annotated[str, typer.Argument(help="Group JID, e.g. 120363271212442249@g.us.")],
    name: Annotated[str | None, typer.Option(help="Group name.")] = None,
    readonly: Annotated[bool, typer.Option(help="Our number is not a participant.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Register a WhatsApp group so it can be assigned and sent to."""
    _run(
        lambda: _with_hub(
            _settings(database),
            lambda hub: hub.channels.register_group(
                chat_id=chat_id, name=name, channel_id=None, readonly=readonly
            ),
        )
    )
    console.print(f"group {chat_id} registered")


@chats_app.command("assign")
def chats_assign(
    chat_id: str,
    group: Annotated[str, typer.Option(help="Employee group name (created if new).")],
    database: DatabaseOpt = None,
) -> None:
    """Let an employee group send to a WhatsApp group."""
    _run(
        lambda: _with_hub(
            _settings(database),
            lambda hub: hub.access.assign_chat(group_name=group, chat_id=chat_id),
        )
    )
    console.print(f"{chat_id} assigned to {group}")


@chats_app.command("add-member")
def chats_add_member(
    user: Annotated[str, typer.Option(help="User name.")],
    group: Annotated[str, typer.Option(help="Employee group name (created if new).")],
    database: DatabaseOpt = None,
) -> None:
    """Put a user into an employee group."""
    _run(
        lambda: _with_hub(
            _settings(database), lambda hub: hub.access.add_member(group_name=group, user_name=user)
        )
    )
    console.print(f"{user} is in {group}")


@bench_app.command("send")
def bench_send(
    messages: Annotated[int, typer.Option(help="Messages to send.")] = 5000,
    chats: Annotated[int, typer.Option(help="Chats (= sends in flight at once).")] = 50,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            "-d",
            help="A PostgreSQL server to run on, as postgresql://user@host/db: the bench "
            "creates a database wahub_bench_<random> there (needs CREATEDB) and drops it "
            "at the end; the one named is not touched. Default: SQLite in a temp dir.",
        ),
    ] = None,
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

    result = _run(
        lambda: run_send_bench(
            messages=messages,
            chats=chats,
            database=database,
            workers=workers,
            progress=not as_json,
        )
    )
    if as_json:
        print(json.dumps(result))
    else:
        console.print_json(json.dumps(result))
    if result["lost"] or result["duplicates"]:
        raise typer.Exit(1)


@bench_app.command("lookup")
def bench_lookup(
    members: Annotated[int, typer.Option(help="Group members in the database.")] = 50_000,
    groups: Annotated[
        int | None, typer.Option(help="Groups they are spread over (default: members / 50).")
    ] = None,
    lookups: Annotated[int, typer.Option(help="Lookups over HTTP.")] = 2000,
    concurrency: Annotated[int, typer.Option(help="Lookups in flight.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Lookup by phone over HTTP vs the bare query, a primary-key select, and the old
    fetch-every-group approach."""
    from wahub.bench.lookup import run_lookup_bench

    if members < 1 or lookups < 1 or concurrency < 1 or (groups is not None and groups < 1):
        err.print("error: --members, --groups, --lookups and --concurrency must be positive")
        raise typer.Exit(2)
    result = _run(
        lambda: run_lookup_bench(
            members=members, groups=groups, lookups=lookups, concurrency=concurrency
        )
    )
    if as_json:
        print(json.dumps(result))
    else:
        console.print_json(json.dumps(result))


@bench_app.command("chatnames")
def bench_chatnames(
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
        err.print(
            f"error: --distinct-chats must be 1..{DEFAULT_CHAT_COUNT} "
            "(the sandbox's Periskope directory holds that many chats)"
        )
        raise typer.Exit(2)
    if messages < distinct_chats or concurrency < 1 or hit_lookups < 1 or provider_latency_ms < 0:
        err.print(
            "error: --messages must be at least --distinct-chats, --concurrency and "
            "--hit-lookups positive, --provider-latency-ms not negative"
        )
        raise typer.Exit(2)
    result = _run(
        lambda: run_chatnames_bench(
            messages=messages,
            distinct_chats=distinct_chats,
            concurrency=concurrency,
            hit_lookups=hit_lookups,
            provider_latency_ms=provider_latency_ms,
            database=database,
        )
    )
    _print(result, as_json)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("clients")
def bench_clients(
    requests: Annotated[int, typer.Option(help="Requests per client.")] = 3000,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """aiohttp vs httpx against the sandbox: the measurement behind the send path's client."""
    from wahub.bench.clients import run_clients_bench

    result = _run(lambda: run_clients_bench(requests=requests, concurrency=concurrency))
    if as_json:
        print(json.dumps(result))
    else:
        console.print_json(json.dumps(result))


def _duration_seconds(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds -> seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 7d, 12h, 30m or 90s") from None
    if seconds <= 0:
        raise typer.BadParameter("the duration must be positive")
    return seconds


@groups_app.command("sync")
def groups_sync(
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's groups.")
    ] = None,
    directory: Annotated[
        bool,
        typer.Option(
            "--directory", help="Every group the channels list, not only accounts' groups."
        ),
    ] = False,
    channel: Annotated[
        str | None, typer.Option("--channel", help="With --directory: only this channel.")
    ] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sync group members from the providers now (a failed group keeps its old members)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from wahub.api.groups import sync_out
    from wahub.features.groups import GroupSyncResult, SyncProgress, SyncReport
    from wahub.runtime import Hub

    class Bar(SyncProgress):
        def __init__(self, progress: Progress) -> None:
            self.progress = progress
            self.task = progress.add_task("syncing groups", total=None)

        def started(self, total: int | None) -> None:
            self.progress.update(self.task, total=total)

        def advanced(self, result: GroupSyncResult) -> None:
            self.progress.advance(self.task)

    async def go(hub: Hub) -> SyncReport:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err, disable=as_json, transient=True) as progress:
            bar = Bar(progress)
            if directory:
                return await hub.group_sync.sync_directory(channel, progress=bar)
            return await hub.group_sync.sync_accounts(account, progress=bar)

    report = _run(lambda: _with_hub(_settings(database), go))
    if as_json:
        print(json.dumps(sync_out(report)))
        return
    for result in report.groups:
        if not result.ok:
            console.print(f"[red]failed[/red] {result.chat_id}: {result.error}")
    for error in report.errors:
        console.print(f"[red]error[/red] {error}")
    console.print(
        f"{report.success_count} group(s) synced, {report.fail_count} failed, "
        f"{sum(g.members for g in report.groups)} member(s) stored"
    )


@groups_app.command("cleanup")
def groups_cleanup(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Remove members of groups not synced for this long (7d, 12h)."
        ),
    ] = "7d",
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached members of groups not synced successfully for --older-than, and of
    groups the provider says are gone. Linked-id links are kept."""
    seconds = _duration_seconds(older_than)
    removed = _run(
        lambda: _with_hub(
            _settings(database), lambda hub: hub.groups.cleanup(older_than_seconds=seconds)
        )
    )
    if as_json:
        print(json.dumps(removed))
    else:
        console.print(
            f"removed {removed['members_removed']} member(s) of {removed['groups']} group(s)"
        )


@groups_app.command("health")
def groups_health(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """How fresh and complete the member cache is (as GET /v1/groups/health)."""
    figures = _run(lambda: _with_hub(_settings(database), lambda hub: hub.groups.health()))
    print(json.dumps(figures, indent=None if as_json else 2))


@groups_app.command("lookup")
def groups_lookup(
    phone: Annotated[str, typer.Argument(help="A phone number, in any usual spelling.")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which accounts' groups this phone is in, and with what rank."""
    found = _run(lambda: _with_hub(_settings(database), lambda hub: hub.groups.lookup(phone)))
    if as_json:
        print(
            json.dumps(
                {
                    "phone": found.phone.e164,
                    "forms": sorted(found.phone.forms),
                    "data": found.matches,
                }
            )
        )
        return
    if not found.matches:
        console.print(f"{found.phone.e164} is in no account's group")
    for m in found.matches:
        console.print(f"{m['account_name']}  {m['group_name'] or m['chat_id']}  {m['rank']}")


campaigns_app = typer.Typer(
    help="Campaigns: bulk template sends with live per-template funnels.", no_args_is_help=True
)
stats_app = typer.Typer(help="Campaign counters and their exactness.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(stats_app, name="stats")


def _operator() -> Any:
    """The CLI acts as an admin of its own (whoever can run it owns the database)."""
    from wahub.domain.actors import Actor, Role

    return Actor("operator", "operator", Role.ADMIN, "cli")


def _template_option(text: str) -> dict[str, Any]:
    """``name:language[:weight][:col1,col2]`` -> a template object."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise typer.BadParameter(f"{text!r}: use name:language[:weight][:column,column]")
    spec: dict[str, Any] = {"name": parts[0], "language": parts[1]}
    for extra in parts[2:]:
        try:
            spec["weight"] = float(extra)
        except ValueError:
            spec["parameters"] = [c for c in extra.split(",") if c]
    return spec


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, default=str))
    else:
        console.print_json(json.dumps(value, default=str))


@campaigns_app.command("create")
def campaigns_create(
    name: Annotated[str, typer.Option(help="The campaign's name.")],
    template: Annotated[
        list[str],
        typer.Option(
            help="name:language[:weight][:col1,col2] (repeat for a split); the columns are "
            "the CSV columns filling the body parameters, in order."
        ),
    ],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Audience: phone plus variable columns.")
    ] = None,
    contacts: Annotated[bool, typer.Option(help="Audience: every contact.")] = False,
    channel: Annotated[str | None, typer.Option(help="Channel id (omit if only one).")] = None,
    start_at: Annotated[
        str | None, typer.Option(help="ISO 8601 time to start by itself (default: on start).")
    ] = None,
    reply_window_hours: Annotated[float | None, typer.Option(min=0.01)] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a scheduled campaign; rows of the CSV that cannot be used are listed."""
    from datetime import datetime

    from wahub.features.campaigns import CampaignCreate

    if (csv_file is None) == (not contacts):
        err.print("error: give exactly one of --csv FILE and --contacts")
        raise typer.Exit(2)
    start = datetime.fromisoformat(start_at).timestamp() if start_at else None
    request = CampaignCreate(
        name=name,
        channel_id=channel,
        templates=[_template_option(t) for t in template],
        audience="contacts" if contacts else "csv",
        start_at=start,
        reply_window_hours=reply_window_hours,
    )
    text = csv_file.read_text(encoding="utf-8-sig") if csv_file is not None else None
    created = _run(
        lambda: _with_hub(
            _settings(database), lambda hub: hub.campaigns.create(_operator(), request, text)
        )
    )
    _print(
        {
            "campaign": created.campaign,
            "accepted": created.accepted,
            "rejected": [e.as_json() for e in created.rejected],
        },
        as_json,
    )


@campaigns_app.command("list")
def campaigns_list(
    status: Annotated[str | None, typer.Option(help="Only campaigns in this state.")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Campaigns, newest first."""
    rows = _run(
        lambda: _with_hub(
            _settings(database), lambda hub: hub.campaigns.list_campaigns(status=status)
        )
    )
    if as_json:
        _print(rows, True)
        return
    for r in rows:
        console.print(f"{r['id']}  {r['status']:<10} {r['name']}")


def _campaign_action(action: str) -> Callable[..., None]:
    def command(campaign_id: str, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
        row = _run(
            lambda: _with_hub(
                _settings(database),
                lambda hub: hub.campaigns.act(_operator(), campaign_id, action),
            )
        )
        if as_json:
            _print(row, True)
        else:
            console.print(f"{row['id']}  {row['status']}")

    command.__doc__ = f"{action.capitalize()} a campaign (the workers queue its recipients)."
    return command


for _action in ("start", "pause", "resume", "cancel"):
    campaigns_app.command(_action)(_campaign_action(_action))


@campaigns_app.command("stats")
def campaigns_stats(
    campaign_id: str, database: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """The funnel per template, totals and rates."""
    stats = _run(
        lambda: _with_hub(_settings(database), lambda hub: hub.campaigns.stats(campaign_id))
    )
    _print(stats, as_json)


@stats_app.command("verify")
def stats_verify(
    campaign: Annotated[str | None, typer.Option(help="One campaign (default: all).")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recount every funnel from messages (and inbound messages for replies) and report
    each counter that differs. Exits 1 when any does."""
    differences = _run(
        lambda: _with_hub(_settings(database), lambda hub: hub.campaigns.verify(campaign))
    )
    if as_json:
        print(json.dumps({"consistent": not differences, "differences": differences}))
    elif not differences:
        console.print("every counter equals its recount")
    else:
        for d in differences:
            console.print(
                f"{d['campaign_id']} {d['template_name']} {d['counter']}: "
                f"stored {d['stored']}, recount {d['recounted']}"
            )
    if differences:
        raise typer.Exit(1)


@bench_app.command("stats")
def bench_stats(
    recipients: Annotated[int, typer.Option(min=1, help="Campaign recipients.")] = 100_000,
    reads: Annotated[int, typer.Option(min=1, help="Funnel reads timed.")] = 2000,
    database: BenchDatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Funnel read (counter rows) vs the best single-query recount, on one database.
    Exits 1 if the counters differ from the recount."""
    from wahub.bench.stats import run_stats_bench

    result = _run(lambda: run_stats_bench(recipients=recipients, reads=reads, database=database))
    _print(result, as_json)
    if not result["consistent"]:
        raise typer.Exit(1)


@bench_app.command("ingest")
def bench_ingest(
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

        result = _run(
            lambda: run_ingest_bench(messages_count=messages, rounds=rounds, database=database)
        )
        _print(result, as_json)
        return
    from wahub.bench.webhooks import run_webhook_ingest_bench

    result = _run(
        lambda: run_webhook_ingest_bench(
            events=events, duplicates=duplicates, concurrency=concurrency, database=database
        )
    )
    _print(result, as_json)
    if result["lost"] or result["duplicates_applied"]:
        raise typer.Exit(1)


replicate_app = typer.Typer(
    help="Replication to sinks (WAHUB_REPLICATION_SINKS): status, pause, replay, backfill.",
    no_args_is_help=True,
)
app.add_typer(replicate_app, name="replicate")
SinkOpt = Annotated[str, typer.Option("--sink", "-s", help="The sink's name.")]


@replicate_app.command("status")
def replicate_status(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every sink's cursor, backlog, lag, dead letters and last error."""
    status = _run(lambda: _with_hub(_settings(database), lambda hub: hub.replication.status()))
    if as_json:
        print(json.dumps(status))
        return
    from rich.table import Table

    table = Table("sink", "kind", "state", "cursor", "pending", "lag s", "dead", "last error")
    for sink in status["sinks"]:
        state = "paused" if sink["paused"] else ("shipping" if sink["shipper"] else "idle")
        if not sink["configured"]:
            state = "not configured"
        table.add_row(
            sink["name"],
            sink["kind"] or "-",
            state,
            str(sink["last_seq"]),
            str(sink["pending"]),
            f"{sink['lag_seconds']:.1f}",
            str(sink["dead_letters"]),
            sink["last_error"] or "",
        )
    console.print(table)
    console.print(f"log head: {status['head_seq']}; status: {status['status']}")
    for error in status["config_errors"]:
        console.print(f"[red]config error[/red] {error}")


@replicate_app.command("pause")
def replicate_pause(sink: SinkOpt, database: DatabaseOpt = None) -> None:
    """Stop shipping to a sink (within a few seconds, in every process)."""
    _run(lambda: _with_hub(_settings(database), lambda h: h.replication.set_paused(sink, True)))
    console.print(f"sink {sink} paused")


@replicate_app.command("resume")
def replicate_resume(sink: SinkOpt, database: DatabaseOpt = None) -> None:
    """Ship to a paused sink again, from its cursor."""
    _run(lambda: _with_hub(_settings(database), lambda h: h.replication.set_paused(sink, False)))
    console.print(f"sink {sink} resumed")


@replicate_app.command("dead-letters")
def replicate_dead_letters(
    sink: Annotated[str | None, typer.Option("--sink", "-s", help="Only this sink.")] = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Changes a sink refused or kept failing, with the reason."""
    letters = _run(
        lambda: _with_hub(_settings(database), lambda hub: hub.replication.dead_letters(sink))
    )
    if as_json:
        print(json.dumps(letters, default=str))
        return
    for d in letters:
        console.print(f"{d['sink']} #{d['seq']} {d['table_name']} {d['row_key']}: {d['error']}")
    console.print(f"{len(letters)} dead letter(s)")


@replicate_app.command("replay")
def replicate_replay(sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Send a sink's dead letters again, oldest first."""
    result = _run(lambda: _with_hub(_settings(database), lambda h: h.replication.replay(sink)))
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"{result['replayed']} replayed, {result['failed']} still failing")


@replicate_app.command("backfill")
def replicate_backfill(
    sink: SinkOpt, database: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """Copy every existing row to a sink, then let it follow the log from there."""
    from rich.progress import Progress

    async def go(hub: Any) -> dict[str, Any]:
        with Progress(console=err, disable=as_json) as bar:
            tasks: dict[str, Any] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=total)
                bar.update(tasks[table], completed=done, total=total)

            result: dict[str, Any] = await hub.replication.backfill(sink, progress=progress)
            return result

    result = _run(lambda: _with_hub(_settings(database), go))
    if as_json:
        print(json.dumps(result))
    else:
        rows = ", ".join(f"{n} {t}" for t, n in result["rows"].items())
        console.print(f"backfilled {sink} at log position {result['position']}: {rows}")


@replicate_app.command("forget")
def replicate_forget(sink: SinkOpt, database: DatabaseOpt = None) -> None:
    """Drop the cursor of a sink no longer configured (it holds back log pruning)."""
    found = _run(lambda: _with_hub(_settings(database), lambda h: h.replication.forget(sink)))
    console.print(f"sink {sink} forgotten" if found else f"no cursor for sink {sink}")


@bench_app.command("replicate")
def bench_replicate(
    database: DatabaseOpt = None,
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

    result = _run(
        lambda: run_replicate_bench(
            database=database, agent_database=agent_database, rate=rate, seconds=seconds
        )
    )
    if as_json:
        print(json.dumps(result))
    else:
        console.print_json(json.dumps(result))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
