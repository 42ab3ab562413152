"""The database handle: engines, transactions, and the one place dialects differ.

Repositories get a ``Connection`` and ``await conn.execute(statement)``; results come back
fully buffered. Behind it:

- SQLite (embedded default) runs a plain synchronous SQLAlchemy connection on a thread
  of its own. Measured on our 2-core machines, SQLAlchemy over aiosqlite costs about four
  thread hops per statement (an empty write transaction took 5.8 ms, a read 2.1 ms);
  here a statement is one hop, and ``run_sync`` runs a whole batch of work in one.
  There is one writer: write transactions in this process queue on an asyncio lock and
  start with ``BEGIN IMMEDIATE``, so a second process (``wahub worker``) waits on
  ``busy_timeout`` instead of failing half-way. Reads use their own small pool (WAL lets
  them run beside the writer).
- PostgreSQL uses SQLAlchemy's async engine (asyncpg).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect, Row, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wahub.domain.errors import StoreUnavailable

T = TypeVar("T")

READERS = 4  # SQLite read connections (and threads) per process
MAX_WRITE_BATCH = 512  # calls group-committed in one SQLite transaction


class Result:
    """A fully buffered statement result: rows plus the affected row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: Sequence[Row[Any]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row[Any]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def all(self) -> list[Row[Any]]:
        return list(self._rows)

    def first(self) -> Row[Any] | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Row[Any]:
        if len(self._rows) != 1:
            raise LookupError(f"expected exactly one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


def _buffer(result: Any) -> Result:
    rows = result.all() if result.returns_rows else []
    return Result(rows, result.rowcount)


class Connection:
    """One transaction's connection, whatever the backend."""

    dialect: Dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Result:
        raise NotImplementedError

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sync_connection, *args)`` where the connection lives, in one go."""
        raise NotImplementedError


class _ThreadConnection(Connection):
    def __init__(self, conn: SyncConnection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor
        self.dialect = conn.dialect
        self._last_job: Future[Any] | None = None

    def _execute(self, statement: Any, parameters: Any) -> Result:
        if parameters is None:
            return _buffer(self._conn.execute(statement))
        return _buffer(self._conn.execute(statement, parameters))

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        job = self._executor.submit(fn, *args)
        self._last_job = job
        return await asyncio.wrap_future(job)

    def settle(self) -> None:
        """Block until the last statement handed to a thread has finished.

        Cancelling the awaiting task does not stop a statement already running on its
        thread; closing the connection from another thread of the pool meanwhile makes
        sqlite3 crash the process (seen as a segfault when the realtime tail was
        cancelled mid-read at shutdown).
        """
        if self._last_job is not None:
            wait_futures([self._last_job])

    async def execute(self, statement: Any, parameters: Any = None) -> Result:
        return await self._call(self._execute, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(fn, self._conn, *args)


class _AsyncConnection(Connection):
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Result:
        if parameters is None:
            return _buffer(await self._conn.execute(statement))
        return _buffer(await self._conn.execute(statement, parameters))

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._conn.run_sync(fn, *args)


def async_url(url: str) -> str:
    """Map a user-facing PostgreSQL URL to the async driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _sqlite_engine(url: str, synchronous: str, begin: str, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _enable_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def _enable_wal(cursor: Any, *, within: float = 30.0) -> None:
    """Switch a database file to WAL. On a brand-new file, another process starting at
    the same moment may hold the lock; SQLite then refuses at once instead of waiting on
    busy_timeout, so wait and try again."""
    deadline = time.monotonic() + within
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Database:
    """Owns the engines. ``transaction()`` for writes, ``read()`` for reads."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StoreUnavailable(f"invalid database URL: {exc}") from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise StoreUnavailable(
                f"unsupported database URL scheme {parsed.drivername!r}: "
                "use sqlite:///path.db or postgresql://user@host/db"
            )
        self.dialect = "postgresql" if backend in ("postgresql", "postgres") else "sqlite"
        self._write_lock = asyncio.Lock()
        self._pending_writes: list[tuple[Callable[[SyncConnection], Any], asyncio.Future[Any]]] = []
        self._write_flusher: asyncio.Task[None] | None = None
        self._async_engine: AsyncEngine | None = None
        if self.is_sqlite:
            sync_url = str(parsed.set(drivername="sqlite"))
            self._writer = _sqlite_engine(sync_url, sqlite_synchronous, "BEGIN IMMEDIATE", 1)
            self._reader = _sqlite_engine(sync_url, sqlite_synchronous, "BEGIN", READERS)
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="wahub-db-write")
            self._read_threads = ThreadPoolExecutor(READERS, thread_name_prefix="wahub-db-read")
            # A read may start only when a pooled connection is free. Otherwise threads
            # would block inside engine.connect() waiting for the pool, and with every
            # thread blocked there, the holders of the connections could never run their
            # next statement: a deadlock until the pool timeout.
            self._read_slots = asyncio.Semaphore(READERS)
        else:
            self._async_engine = create_async_engine(async_url(url), pool_size=10, max_overflow=10)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def write(self, fn: Callable[[SyncConnection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction; return once it is committed.

        On SQLite this is group commit: calls that arrive while a batch is being
        written wait, then all run in the next transaction, one hop to the writer
        thread, each inside its own SAVEPOINT, so one call's exception rolls back only
        its own work and is raised to its own caller. Nobody hears "done" before the
        commit that made their work durable.
        """
        if self._async_engine is not None:
            async with self.transaction() as conn:
                return await conn.run_sync(fn)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending_writes.append((fn, done))
        if self._write_flusher is None or self._write_flusher.done():
            self._write_flusher = asyncio.create_task(self._flush_writes(), name="db-writes")
        result: T = await done
        return result

    async def _flush_writes(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending_writes:
            batch = self._pending_writes[:MAX_WRITE_BATCH]
            del self._pending_writes[:MAX_WRITE_BATCH]
            try:
                async with self._write_lock, _translate_errors(self.url):
                    outcomes = await loop.run_in_executor(
                        self._write_thread, self._run_write_batch, [fn for fn, _ in batch]
                    )
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)

    def _run_write_batch(
        self, fns: list[Callable[[SyncConnection], Any]]
    ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._writer.connect() as conn, conn.begin():
            for fn in fns:
                savepoint = conn.begin_nested()
                try:
                    value = fn(conn)
                except Exception as exc:
                    savepoint.rollback()
                    outcomes.append((False, exc))
                else:
                    savepoint.commit()
                    outcomes.append((True, value))
        return outcomes

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A write transaction: committed when the block exits cleanly, rolled back on error."""
        if self._async_engine is not None:
            async with _translate_errors(self.url), self._async_engine.begin() as conn:
                yield _AsyncConnection(conn)
            return
        async with (
            self._write_lock,
            _translate_errors(self.url),
            self._thread_transaction(self._writer, self._write_thread) as conn,
        ):
            yield conn

    async def read_one(self, fn: Callable[[SyncConnection], T]) -> T:
        """Run ``fn(connection)``, a short read, in one go.

        ``read()`` costs a thread hop to open, one per statement and one to close; for a
        request that is one short query (API key check, lookup by phone, a funnel read)
        those hops are most of its latency on SQLite. Here connect, BEGIN, ``fn`` and
        close run in one hop on a reader thread.

        On PostgreSQL ``fn`` runs outside a transaction: BEGIN and the ROLLBACK that
        returns the connection to the pool were two of its three round trips (funnel
        read p50 1.18 -> 0.78 ms, p99 2.8 -> 1.5 ms). Each statement then sees its own
        snapshot: use ``read()`` when two statements must agree.
        """
        if self._async_engine is not None:
            async with _translate_errors(self.url), self._async_engine.connect() as conn:
                alone = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await alone.run_sync(fn)
        loop = asyncio.get_running_loop()
        await self._read_slots.acquire()
        # The slot is given back when the thread is done with the connection, not when
        # our caller stops waiting: a cancelled caller must not free a slot still in use.
        job = self._read_threads.submit(self._read_job, fn)
        job.add_done_callback(lambda _job: loop.call_soon_threadsafe(self._read_slots.release))
        async with _translate_errors(self.url):
            return await asyncio.wrap_future(job)

    def _read_job(self, fn: Callable[[SyncConnection], T]) -> T:
        with self._reader.connect() as conn, conn.begin():
            return fn(conn)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A read-only snapshot."""
        if self._async_engine is not None:
            async with _translate_errors(self.url), self._async_engine.begin() as conn:
                yield _AsyncConnection(conn)
            return
        async with (
            self._read_slots,
            _translate_errors(self.url),
            self._thread_transaction(self._reader, self._read_threads) as conn,
        ):
            yield conn

    @contextlib.asynccontextmanager
    async def _thread_transaction(
        self, engine: Engine, executor: ThreadPoolExecutor
    ) -> AsyncIterator[Connection]:
        loop = asyncio.get_running_loop()

        def open_() -> SyncConnection:
            conn = engine.connect()
            try:
                conn.begin()
            except BaseException:
                conn.close()
                raise
            return conn

        def close(conn: SyncConnection, commit: bool) -> None:
            try:
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            finally:
                conn.close()

        def close_settled(conn: _ThreadConnection, commit: bool) -> None:
            conn.settle()
            close(conn._conn, commit)

        def close_abandoned(job: Future[SyncConnection]) -> None:
            if not job.cancelled() and job.exception() is None:
                close(job.result(), False)

        opening = executor.submit(open_)
        try:
            sync_conn = await asyncio.wrap_future(opening)
        except asyncio.CancelledError:
            # The thread may still be opening it: give it back to the pool once open.
            opening.add_done_callback(close_abandoned)
            raise
        conn = _ThreadConnection(sync_conn, executor)
        try:
            yield conn
        except BaseException:
            await asyncio.shield(loop.run_in_executor(executor, close_settled, conn, False))
            raise
        await loop.run_in_executor(executor, close_settled, conn, True)

    async def dispose(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.dispose)
        await loop.run_in_executor(self._read_threads, self._reader.dispose)
        self._write_thread.shutdown(wait=False)
        self._read_threads.shutdown(wait=False)


@contextlib.asynccontextmanager
async def _translate_errors(url: str) -> AsyncIterator[None]:
    try:
        yield
    except (DBAPIError, OSError) as exc:
        if not is_unavailable(exc):
            raise
        target = make_url(url).host or make_url(url).database or url
        state = "busy" if _sqlstate(exc) in _CONFLICT_SQLSTATES else "unavailable"
        raise StoreUnavailable(f"database {target} {state}: {_root_cause(exc)}") from exc


# PostgreSQL error codes that mean "the server is not there right now", not "this
# statement is wrong": class 08 (connection exception), 57P01 admin shutdown, 57P02
# crash shutdown, 57P03 cannot connect now (starting up, shutting down), 53300 too many
# connections. asyncpg reports them as plain errors, never as OperationalError.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# Serialization failure and deadlock: PostgreSQL aborted this transaction because of a
# concurrent one and asks for it to be run again.
_CONFLICT_SQLSTATES = ("40001", "40P01")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot do the work right now (an outage, a
    restart, a connection the server dropped, a deadlock with a concurrent transaction)
    rather than a problem with the work itself: the same work may succeed when tried
    again later.

    A PostgreSQL restart shows up as a pooled connection the driver finds closed
    (``connection_invalidated``) and as connections refused with 57P03 while the server
    stops and starts; these and deadlocks must become ``StoreUnavailable`` (503, a
    loop's retry), not an unexpected error that escapes a worker loop.
    """
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = _sqlstate(exc)
    if sqlstate is not None and sqlstate.startswith(_UNAVAILABLE_SQLSTATES + _CONFLICT_SQLSTATES):
        return True
    return isinstance(exc, OperationalError) and not _is_logic(exc)


def _sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL error code of a driver error (asyncpg's, via SQLAlchemy)."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


def _is_logic(exc: DBAPIError) -> bool:
    # SQLite reports schema problems ("no such table") as OperationalError too; those are
    # bugs or a missing migration, not an outage, and must surface as themselves.
    text = str(exc.orig).lower()
    return "no such" in text or "syntax error" in text or "constraint" in text


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


P = ParamSpec("P")


def in_one_hop(
    fn: Callable[Concatenate[SyncConnection, P], T],
) -> Callable[Concatenate[Connection, P], Awaitable[T]]:
    """Expose a synchronous repository function as ``await fn(conn, ...)``.

    The whole function runs where the connection lives (SQLite: its thread, in one hop;
    PostgreSQL: SQLAlchemy's greenlet bridge), instead of one hop per statement.
    """

    async def wrapper(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await conn.run_sync(functools.partial(fn, **kwargs), *args)

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__.lstrip("_")
    return wrapper
