"""The agent database sink: a mirror of the replicated tables in any database wahub can
reach (PostgreSQL in production, SQLite for tests and small set-ups).

wahub creates the mirror tables (the replicated columns, the same primary key, plus
``_wahub_seq``: the seq of the last change applied to the row). Every change is an
upsert (or a delete) that applies only when its seq is newer than the row's, so applying
a change twice, replaying an old one or overlapping a backfill never moves a row back.
A batch is one transaction; within it, only the newest change of each row is applied
(the older ones would be overwritten in the same commit anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    and_,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wahub.replication.config import DatabaseSinkConfig
from wahub.replication.sinks.base import DELIVERED, Outcomes, SinkUnavailable, rejected
from wahub.store.changelog import REPLICATED, Change
from wahub.store.database import async_url, is_unavailable
from wahub.store.schema import metadata as source_metadata

log = logging.getLogger("wahub.replication")

SEQ_COLUMN = "_wahub_seq"


def mirror_metadata(prefix: str = "") -> MetaData:
    """The agent database's tables: each replicated table's replicated columns, its key
    as primary key, no foreign keys (rows of different tables arrive in log order, not
    in dependency order) and ``_wahub_seq``."""
    mirror = MetaData()
    for spec in REPLICATED:
        source = source_metadata.tables.get(spec.table)
        if source is None:
            continue
        columns = [
            Column(c.name, c.type, primary_key=c.name in spec.key, nullable=c.name not in spec.key)
            for c in source.columns
            if c.name not in spec.internal
        ]
        Table(
            prefix + spec.table,
            mirror,
            *columns,
            Column(SEQ_COLUMN, BigInteger, nullable=False),
        )
    return mirror


def _coerce(column: Column[Any], value: Any) -> Any:
    """A JSON value from the log as the column's Python type (SQLite logs booleans and
    integral floats the way JSON spells them; drivers want the real type)."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, Boolean):
        return bool(value)
    if isinstance(kind, Float):
        return float(value)
    if isinstance(kind, Integer | BigInteger):
        return int(value)
    if isinstance(kind, JSON):
        return value
    return value if isinstance(value, str) else str(value)


def engine_for(url: str) -> AsyncEngine:
    """An async engine for a user's URL: PostgreSQL through asyncpg, SQLite through
    aiosqlite. Raises SinkUnavailable for anything else or a malformed URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SinkUnavailable(f"invalid database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return create_async_engine(
            async_url(url),
            pool_size=2,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args={"timeout": 10, "command_timeout": 60},
        )
    if backend == "sqlite":
        return create_async_engine(
            parsed.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 30}
        )
    raise SinkUnavailable(
        f"unsupported agent database {parsed.drivername!r}: use postgresql:// or sqlite:///"
    )


class DatabaseSink:
    """Mirrors the replicated tables into an agent database."""

    def __init__(self, config: DatabaseSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self.metadata = mirror_metadata(config.table_prefix)
        self.tables = {
            spec.table: self.metadata.tables[config.table_prefix + spec.table]
            for spec in REPLICATED
            if config.table_prefix + spec.table in self.metadata.tables
        }
        self._engine: AsyncEngine | None = None

    async def open(self) -> None:
        if self._engine is None:
            self._engine = engine_for(self.config.url.get_secret_value())
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(self.metadata.create_all)
        except (SQLAlchemyError, OSError) as exc:
            raise SinkUnavailable(f"agent database: {_one_line(exc)}") from exc

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def deliver(self, changes: list[Change]) -> Outcomes:
        """Apply the batch in one transaction; when the database refuses it (a value too
        long, a type it cannot take), apply change by change so only the bad ones are
        rejected."""
        if self._engine is None:
            raise SinkUnavailable("agent database not open")
        wanted = [c for c in changes if c.table in self.tables and self.config.ships(c.table)]
        if not wanted:
            return {}
        try:
            async with self._engine.begin() as conn:
                await self._apply(conn, _newest_per_row(wanted))
            return {}
        except (DBAPIError, OSError) as exc:
            if is_unavailable(exc) or not isinstance(exc, DBAPIError):
                raise SinkUnavailable(f"agent database: {_one_line(exc)}") from exc
            log.warning("sink %s: batch refused (%s); applying one by one", self.name, exc)
        outcomes: Outcomes = {}
        for change in wanted:
            try:
                async with self._engine.begin() as conn:
                    await self._apply(conn, [change])
                outcomes[change.ident] = DELIVERED
            except (DBAPIError, OSError) as exc:
                if is_unavailable(exc) or not isinstance(exc, DBAPIError):
                    raise SinkUnavailable(f"agent database: {_one_line(exc)}") from exc
                outcomes[change.ident] = rejected(_one_line(exc))
        return outcomes

    async def _apply(self, conn: AsyncConnection, changes: Sequence[Change]) -> None:
        upserts: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        for change in changes:
            table = self.tables[change.table]
            if change.op == "delete":
                spec_key = _key_columns(change.table)
                where = [table.c[k] == _coerce(table.c[k], change.data.get(k)) for k in spec_key]
                await conn.execute(
                    delete(table).where(and_(*where, table.c[SEQ_COLUMN] < change.seq))
                )
                continue
            row = {
                name: _coerce(table.c[name], value)
                for name, value in change.data.items()
                if name in table.c
            }
            row[SEQ_COLUMN] = change.seq
            upserts.setdefault((change.table, tuple(sorted(row))), []).append(row)
        for (name, columns), rows in upserts.items():
            await conn.execute(self._upsert(conn, self.tables[name], name, columns), rows)

    def _upsert(
        self, conn: AsyncConnection, table: Table, name: str, columns: Sequence[str]
    ) -> Any:
        key = _key_columns(name)
        insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={c: insert.excluded[c] for c in columns if c not in key},
            where=table.c[SEQ_COLUMN] < insert.excluded[SEQ_COLUMN],
        )

    async def read_all(self, table: str) -> list[dict[str, Any]]:
        """Every mirrored row of ``table`` (tests and the benchmark compare them)."""
        if self._engine is None:
            raise SinkUnavailable("agent database not open")
        mirror = self.tables[table]
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(mirror))
            return [dict(r._mapping) for r in rows]


def _key_columns(table: str) -> tuple[str, ...]:
    return next(spec.key for spec in REPLICATED if spec.table == table)


def _newest_per_row(changes: Sequence[Change]) -> list[Change]:
    """The last change of each row, in seq order: one statement may not touch a row
    twice (PostgreSQL's ON CONFLICT), and the row ends in its last state either way."""
    newest: dict[tuple[str, str], Change] = {}
    for change in changes:
        newest[(change.table, change.key)] = change
    return sorted(newest.values(), key=lambda c: c.seq)


def _one_line(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return text[0][:500] if text else type(root).__name__
