"""The database handle: engines, transactions, and the one place dialects differ.

SQLite (embedded default) has one writer: every write transaction in this process goes
through one connection behind an asyncio lock and starts with ``BEGIN IMMEDIATE`` so a
second process (``wahub worker``) waits on ``busy_timeout`` instead of failing half-way.
Reads use a small pool of their own connections (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wahub.domain.errors import StoreUnavailable


def async_url(url: str) -> str:
    """Map a user-facing URL (``sqlite:///x.db``, ``postgresql://...``) to an async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise StoreUnavailable(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://"
    )


def _sqlite_pragmas(synchronous: str, begin: str) -> tuple[Any, Any]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return on_connect, on_begin


class Database:
    """Owns the engines. ``transaction()`` for writes, ``read()`` for reads."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "postgres":
            self.dialect = "postgresql"
        target = async_url(url)
        self._write_lock = asyncio.Lock()
        if self.dialect == "sqlite":
            self._writer = create_async_engine(target, pool_size=1, max_overflow=0)
            self._reader = create_async_engine(target, pool_size=4, max_overflow=4)
            w_connect, w_begin = _sqlite_pragmas(sqlite_synchronous, "BEGIN IMMEDIATE")
            r_connect, r_begin = _sqlite_pragmas(sqlite_synchronous, "BEGIN")
            event.listen(self._writer.sync_engine, "connect", w_connect)
            event.listen(self._writer.sync_engine, "begin", w_begin)
            event.listen(self._reader.sync_engine, "connect", r_connect)
            event.listen(self._reader.sync_engine, "begin", r_begin)
        else:
            self._writer = create_async_engine(target, pool_size=10, max_overflow=10)
            self._reader = self._writer

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block exits cleanly, rolled back on error."""
        if self.is_sqlite:
            async with self._write_lock, _translate_errors(self.url), self._writer.begin() as conn:
                yield conn
        else:
            async with _translate_errors(self.url), self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot."""
        async with _translate_errors(self.url), self._reader.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


@asynccontextmanager
async def _translate_errors(url: str) -> AsyncIterator[None]:
    try:
        yield
    except (OperationalError, OSError) as exc:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and _is_logic(exc):
            raise
        host = make_url(url).host or make_url(url).database or url
        raise StoreUnavailable(f"database {host} unavailable: {_root_cause(exc)}") from exc


def _is_logic(exc: DBAPIError) -> bool:
    # SQLite reports schema problems ("no such table") as OperationalError too; those are
    # bugs or a missing migration, not an outage, and must surface as themselves.
    text = str(exc.orig).lower()
    return "no such" in text or "syntax error" in text or "constraint" in text


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
