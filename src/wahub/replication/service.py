"""Replication as the hub runs it: the configured sinks, their shippers, status and lag,
pause/resume, dead-letter replay, backfill and log retention."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import make_url

from wahub.domain.errors import NotFound, WahubError
from wahub.replication.config import (
    DatabaseSinkConfig,
    ElasticsearchSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
    parse_sinks,
)
from wahub.replication.horizon import CommitHorizon
from wahub.replication.shipper import OnShipped, Shipper
from wahub.replication.sinks.base import Outcome, Sink, SinkUnavailable
from wahub.store import changelog as q
from wahub.store.changelog import REPLICATED, Change
from wahub.store.database import Database
from wahub.store.schema import chats, metadata

log = logging.getLogger("wahub.replication")

PRUNE_INTERVAL_SECONDS = 60.0
# Cursors of the hub's own log readers (``@subscriptions``); sink names cannot start so.
INTERNAL_PREFIX = "@"
Progress = Callable[[str, int, int], None]  # (table, rows done, rows in the table)


class ReplicationError(WahubError):
    code = "replication_error"


def describe_target(config: SinkConfig) -> str:
    """Where a sink points, without credentials."""
    if isinstance(config, DatabaseSinkConfig):
        try:
            url = make_url(config.url.get_secret_value())
        except Exception:
            return "(invalid database URL)"
        return url.render_as_string(hide_password=True)
    return config.url


class Replication:
    """The configured sinks of one hub process."""

    def __init__(
        self,
        db: Database,
        *,
        sinks: str,
        lag_threshold_seconds: float = 5.0,
        retention_hours: float = 72.0,
        poll_interval: float = 0.1,
        lease_seconds: float = 15.0,
        owner: str | None = None,
        sink_factory: Callable[[SinkConfig], Sink] | None = None,
    ) -> None:
        self.db = db
        self.configs, self.config_errors = parse_sinks(sinks)
        self.lag_threshold_seconds = lag_threshold_seconds
        self.retention_hours = retention_hours
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-repl"
        self._sink_factory = sink_factory or self.build_sink
        self.shippers: dict[str, Shipper] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.on_shipped: OnShipped | None = None

    def config(self, name: str) -> SinkConfig:
        for config in self.configs:
            if config.name == name:
                return config
        known = ", ".join(c.name for c in self.configs) or "none configured"
        raise NotFound(f"no replication sink named {name!r} ({known})")

    def build_sink(self, config: SinkConfig) -> Sink:
        if isinstance(config, DatabaseSinkConfig):
            from wahub.replication.sinks.database import DatabaseSink

            return DatabaseSink(config)
        if isinstance(config, WebhookSinkConfig):
            from wahub.replication.sinks.webhook import WebhookSink

            return WebhookSink(config)
        if isinstance(config, ElasticsearchSinkConfig):
            from wahub.replication.sinks.elasticsearch import ElasticsearchSink

            return ElasticsearchSink(config, self.chat_names)
        raise AssertionError(f"unknown sink kind {config!r}")

    async def chat_names(self, chat_ids: set[str]) -> dict[str, str | None]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(chats.c.chat_id, chats.c.name).where(chats.c.chat_id.in_(sorted(chat_ids)))
            )
        return {str(r.chat_id): r.name for r in rows}

    async def ensure_cursors(self) -> None:
        names = [c.name for c in self.configs]
        now = time.time()
        await self.db.write(lambda conn: q.ensure_cursors_sync(conn, names, now))

    # -- running -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start a shipper per sink (each ships only while it holds the sink's lease) and
        the retention pruner. Bad sink entries are logged and left out; nothing here
        raises for a sink that is wrong or unreachable."""
        for error in self.config_errors:
            log.error("replication: %s", error)
        await self.ensure_cursors()
        for config in self.configs:
            try:
                sink = self._sink_factory(config)
            except Exception as exc:
                log.error("replication sink %s cannot be built: %s", config.name, exc)
                self.config_errors.append(f"sink {config.name!r}: {exc}")
                continue
            shipper = Shipper(
                self.db,
                sink,
                config,
                owner=self.owner,
                lease_seconds=self.lease_seconds,
                poll_interval=self.poll_interval,
                on_shipped=self._shipped,
            )
            self.shippers[config.name] = shipper
            self._tasks.append(asyncio.create_task(shipper.run(), name=f"replicate-{config.name}"))
            log.info("replicating to %s (%s %s)", config.name, config.kind, describe_target(config))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="replication-prune"))

    def _shipped(self, changes: list[Change], now: float) -> None:
        if self.on_shipped is not None:
            self.on_shipped(changes, now)

    async def stop(self) -> None:
        self._stop.set()
        for shipper in self.shippers.values():
            shipper.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.shippers = {}

    async def _prune_loop(self) -> None:
        while not self._stop.is_set():
            try:
                removed = await self.prune()
                if removed:
                    log.info("replication log: pruned %d change(s)", removed)
            except WahubError as exc:
                log.warning("replication log pruning failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=PRUNE_INTERVAL_SECONDS)

    async def prune(self, now: float | None = None) -> int:
        """Delete changes older than the retention that every sink has shipped (every
        sink that has a cursor, paused or not)."""
        cutoff = (time.time() if now is None else now) - self.retention_hours * 3600

        def prune(conn: SyncConnection) -> int:
            cursors = [int(c["last_seq"]) for c in q.get_cursors_sync(conn)]
            below = min(cursors) if cursors else q.last_seq_sync(conn)
            return q.prune_sync(conn, below_or_at=below, created_before=cutoff)

        return await self.db.write(prune)

    # -- status ------------------------------------------------------------------------

    async def status(self, now: float | None = None) -> dict[str, Any]:
        """Every sink with its cursor, backlog, lag and last error; lag is the age of the
        oldest change the sink has not shipped (0 when it is caught up)."""
        now = time.time() if now is None else now
        configured = {c.name: c for c in self.configs}

        def read(conn: SyncConnection) -> dict[str, Any]:
            cursors = q.get_cursors_sync(conn)
            head = q.last_seq_sync(conn)
            dead = q.dead_letter_counts_sync(conn)
            sinks = []
            for cursor in cursors:
                if cursor["sink"].startswith(INTERNAL_PREFIX):
                    continue  # the hub's own reader (event subscriptions), not a sink
                last_seq = int(cursor["last_seq"])
                oldest = q.oldest_unshipped_sync(conn, last_seq)
                pending = q.pending_count_sync(conn, last_seq) if oldest else 0
                config = configured.get(cursor["sink"])
                leased = cursor["lease_until"] is not None and cursor["lease_until"] > now
                sinks.append(
                    {
                        "name": cursor["sink"],
                        "kind": config.kind if config else None,
                        "target": describe_target(config) if config else None,
                        "configured": config is not None,
                        "paused": bool(cursor["paused"]),
                        "last_seq": last_seq,
                        "pending": pending,
                        "lag_seconds": max(0.0, now - oldest[1]) if oldest else 0.0,
                        "dead_letters": dead.get(cursor["sink"], 0),
                        "last_error": cursor["last_error"],
                        "last_error_at": cursor["last_error_at"],
                        "last_shipped_at": cursor["last_shipped_at"],
                        "shipper": cursor["lease_owner"] if leased else None,
                    }
                )
            return {"head_seq": head, "sinks": sinks}

        async with self.db.read() as conn:
            result = await conn.run_sync(read)
        lagging = [
            s["name"]
            for s in result["sinks"]
            if s["configured"] and s["lag_seconds"] > self.lag_threshold_seconds
        ]
        result["lag_threshold_seconds"] = self.lag_threshold_seconds
        result["status"] = "degraded" if lagging or self.config_errors else "ok"
        result["lagging"] = lagging
        result["config_errors"] = list(self.config_errors)
        return result

    async def set_paused(self, name: str, paused: bool) -> None:
        self.config(name)
        await self.ensure_cursors()
        now = time.time()
        await self.db.write(lambda c: q.set_paused_sync(c, sink=name, paused=paused, now=now))

    async def forget(self, name: str) -> bool:
        """Delete the cursor of a sink no longer configured, so it stops holding back
        log pruning."""
        if name.startswith(INTERNAL_PREFIX):
            raise ReplicationError(f"{name!r} is the hub's own reader of the log, not a sink")
        if any(c.name == name for c in self.configs):
            raise ReplicationError(f"sink {name!r} is still configured; remove it first")
        return await self.db.write(lambda c: q.forget_cursor_sync(c, name))

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(self, name: str | None, *, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await conn.run_sync(
                lambda c: q.list_dead_letters_sync(c, sink=name, pending_only=True, limit=limit)
            )

    async def replay(self, name: str, *, limit: int = 10_000) -> dict[str, int]:
        """Send the sink's dead letters again, oldest first. Delivered ones are marked
        replayed; the others keep their place with the new reason."""
        config = self.config(name)
        letters = await self.dead_letters(name, limit=limit)
        sink = self._sink_factory(config)
        replayed = failed = 0
        try:
            await sink.open()
            for start in range(0, len(letters), config.batch_size):
                chunk = letters[start : start + config.batch_size]
                changes = [q.dead_letter_change(row) for row in chunk]
                outcomes = await sink.deliver(changes)
                done: list[int] = []
                for row, change in zip(chunk, changes, strict=True):
                    delivery = outcomes.get(change.ident)
                    if delivery is None or delivery.outcome is Outcome.DELIVERED:
                        done.append(int(row["id"]))
                        continue
                    failed += 1
                    reason = delivery.reason or delivery.outcome.value
                    await self._record_replay_failure(int(row["id"]), reason)
                now = time.time()
                await self.db.write(functools.partial(q.mark_replayed_sync, ids=done, now=now))
                replayed += len(done)
        except SinkUnavailable as exc:
            raise ReplicationError(f"sink {name!r} unavailable: {exc}") from exc
        finally:
            await sink.close()
        return {"replayed": replayed, "failed": failed}

    # -- backfill ----------------------------------------------------------------------

    async def backfill(
        self, name: str, *, progress: Progress | None = None, wait_seconds: float | None = None
    ) -> dict[str, Any]:
        """Copy every existing row of the replicated tables to the sink, then let the
        shipper follow the log from where the copy started.

        The sink is paused first (its shipper lets go of it), the position P is taken
        where every change up to P has committed, then rows are read in snapshots taken
        after that: each row holds every change up to P, and the cursor is set to P at
        the end so the log supplies what came later. Rows copied carry P as their seq;
        a row the sink already holds newer is left alone (idempotent upserts, external
        versions), so overlapping with the log is harmless. A failed backfill leaves the
        cursor where it was.
        """
        config = self.config(name)
        await self.ensure_cursors()
        was_paused = await self._paused(name)
        await self.set_paused(name, True)
        try:
            await self._wait_for_release(name, wait_seconds or self.lease_seconds * 2 + 5)
            position = await self._final_position()
            sink = self._sink_factory(config)
            copied: dict[str, int] = {}
            try:
                await sink.open()
                for spec in REPLICATED:
                    if spec.table in metadata.tables and config.ships(spec.table):
                        copied[spec.table] = await self._copy_table(
                            sink, config, spec, position, progress
                        )
            except SinkUnavailable as exc:
                raise ReplicationError(f"sink {name!r} unavailable: {exc}") from exc
            finally:
                await sink.close()
            now = time.time()
            await self.db.write(
                lambda c: q.set_cursor_sync(c, sink=name, last_seq=position, now=now)
            )
            return {"sink": name, "position": position, "rows": copied}
        finally:
            if not was_paused:
                await self.set_paused(name, False)

    async def _paused(self, name: str) -> bool:
        async with self.db.read() as conn:
            cursors = await conn.run_sync(q.get_cursors_sync)
        return any(c["sink"] == name and c["paused"] for c in cursors)

    async def _wait_for_release(self, name: str, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            async with self.db.read() as conn:
                cursors = await conn.run_sync(q.get_cursors_sync)
            row = next(c for c in cursors if c["sink"] == name)
            free = row["lease_owner"] is None or (row["lease_until"] or 0) < time.time()
            if free:
                return
            if time.monotonic() > deadline:
                raise ReplicationError(
                    f"sink {name!r} is still shipped by {row['lease_owner']}; try again"
                )
            await asyncio.sleep(0.2)

    async def _final_position(self) -> int:
        """A seq such that every change up to it has committed or rolled back."""
        if self.db.is_sqlite:
            async with self.db.read() as conn:
                return await conn.run_sync(q.last_seq_sync)
        horizon = CommitHorizon(self.db)
        async with self.db.read() as conn:
            drawn = await conn.run_sync(q.pg_sequence_position_sync)
        while True:
            safe = await horizon.current()
            if safe is not None and safe >= drawn:
                return drawn
            await asyncio.sleep(0.05)

    async def _copy_table(
        self,
        sink: Sink,
        config: SinkConfig,
        spec: q.Replicated,
        position: int,
        progress: Progress | None,
    ) -> int:
        table = metadata.tables[spec.table]
        key_columns = [table.c[k] for k in spec.key]
        columns = [c for c in table.columns if c.name not in spec.internal]
        async with self.db.read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        done = 0
        last: tuple[Any, ...] | None = None
        if progress is not None:
            progress(spec.table, 0, total)
        while True:
            stmt = select(*columns).order_by(*key_columns).limit(config.batch_size)
            if last is not None:
                stmt = stmt.where(tuple_(*key_columns) > tuple_(*last))
            async with self.db.read() as conn:
                rows = [dict(r._mapping) for r in await conn.execute(stmt)]
            if not rows:
                break
            now = time.time()
            changes = [
                Change(
                    seq=position,
                    table=spec.table,
                    key="|".join(str(row[k]) for k in spec.key),
                    op="snapshot",
                    chat_id=row.get("chat_id"),
                    data=row,
                    txid=None,
                    created_at=now,
                )
                for row in rows
            ]
            await self._deliver_all(sink, config, changes)
            done += len(rows)
            last = tuple(rows[-1][k] for k in spec.key)
            if progress is not None:
                progress(spec.table, done, max(total, done))
        return done

    async def _deliver_all(self, sink: Sink, config: SinkConfig, changes: list[Change]) -> None:
        """Deliver a page of a backfill, retrying what fails; a change the sink refuses
        becomes a dead letter, like in the log."""
        pending = changes
        for attempt in range(1, config.max_attempts + 1):
            outcomes = await sink.deliver(pending)
            answered = [(c, outcomes[c.ident]) for c in pending if c.ident in outcomes]
            refused = [
                (c, d.reason or "rejected", attempt)
                for c, d in answered
                if d.outcome is Outcome.REJECTED
            ]
            retry = [c for c, d in answered if d.outcome is Outcome.RETRY]
            if refused:
                await self._park(sink.name, refused)
            if not retry:
                return
            pending = retry
            await asyncio.sleep(
                min(config.backoff_max_seconds, config.backoff_base_seconds * 2**attempt)
            )
        raise ReplicationError(f"backfill to {sink.name!r}: {len(pending)} row(s) kept failing")

    async def _park(self, sink: str, parked: list[tuple[Change, str, int]]) -> None:
        now = time.time()

        def park(conn: SyncConnection) -> None:
            q.park_sync(conn, sink=sink, parked=parked, now=now)

        await self.db.write(park)

    async def _record_replay_failure(self, dead_id: int, reason: str) -> None:
        await self.db.write(
            functools.partial(q.record_replay_failure_sync, dead_id=dead_id, error=reason)
        )
