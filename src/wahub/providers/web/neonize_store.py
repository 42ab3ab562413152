"""Where the neonize engine keeps each channel's WhatsApp credentials (whatsmeow's
``whatsmeow_*`` tables), and how a channel finds its linked device again.

Two stores, picked by ``credential_store(location)``:

- a directory (the embedded default): one SQLite file per channel,
  ``<dir>/<channel_id>.sqlite3``. One device per file, so a start without a device id
  resumes the one stored, and logout deletes the file.
- a ``postgres://`` / ``postgresql://`` URL (scale-out): every channel in one database,
  whatsmeow's tables in a schema of their own (``wahub_sessions``) so they never mix with
  ours. whatsmeow's driver (lib/pq) passes URL parameters it does not know to the server
  as settings, so ``search_path=wahub_sessions`` puts its tables there; we create the
  schema first (whatsmeow's migration fails on a missing one). Several devices share
  the tables, so a table of ours in that schema records which device each channel
  linked: without it a start would resume whichever device whatsmeow finds first.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

SCHEMA: Final = "wahub_sessions"
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def check_channel_id(channel_id: str) -> str:
    """``channel_id`` when it is safe as a file name and a uuid for neonize; raises
    ``ValueError`` otherwise (channel ids are ours, so this is a bug, not bad input)."""
    if not _CHANNEL_ID.match(channel_id) or channel_id.startswith("."):
        raise ValueError(f"channel id {channel_id!r} cannot name a credential store")
    return channel_id


class CredentialStore(Protocol):
    """One place holding the credentials of every channel of an engine."""

    def neonize_name(self, channel_id: str) -> str:
        """The ``name`` neonize's client opens: a SQLite path or a PostgreSQL URL."""
        ...

    async def prepare(self) -> None:
        """Create what must exist before whatsmeow opens the store (dir, schema)."""
        ...

    async def device_of(self, channel_id: str) -> str | None:
        """The device JID (``user:device@s.whatsapp.net``) ``channel_id`` linked, if
        it is still stored."""
        ...

    async def remember(self, channel_id: str, device_jid: str) -> None:
        """Record that ``channel_id`` linked ``device_jid`` (after pairing)."""
        ...

    async def forget(self, channel_id: str) -> None:
        """Delete ``channel_id``'s credentials (logout)."""
        ...

    async def close(self) -> None: ...


class DirectoryStore:
    """One SQLite file per channel in ``directory`` (created when missing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, channel_id: str) -> Path:
        return self.directory / f"{check_channel_id(channel_id)}.sqlite3"

    def neonize_name(self, channel_id: str) -> str:
        return str(self.path(channel_id))

    async def prepare(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def device_of(self, channel_id: str) -> str | None:
        return await asyncio.to_thread(self._read_device, self.path(channel_id))

    @staticmethod
    def _read_device(path: Path) -> str | None:
        if not path.exists():
            return None
        # Read-only: a file whatsmeow has not initialised yet must stay untouched.
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT jid FROM whatsmeow_device LIMIT 1").fetchone()
        except sqlite3.OperationalError:
            return None  # no whatsmeow tables yet: never linked
        finally:
            connection.close()
        return str(row[0]) if row else None

    async def remember(self, channel_id: str, device_jid: str) -> None:
        """Nothing to record: the channel's file holds only its own device."""

    async def forget(self, channel_id: str) -> None:
        path = self.path(channel_id)
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            await asyncio.to_thread(leftover.unlink, missing_ok=True)

    async def close(self) -> None:
        """Nothing held open."""


_DEVICES_DDL: Final = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.wahub_channel_devices (
    channel_id TEXT PRIMARY KEY,
    device_jid TEXT NOT NULL
)"""


class PostgresStore:
    """whatsmeow's tables in schema ``wahub_sessions`` of the database at ``url``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]  # SQLAlchemy's postgresql+asyncpg:// too
        if scheme not in ("postgres", "postgresql"):
            raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
        self._asyncpg_url = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
        go_query = dict(query)
        # lib/pq requires TLS unless told otherwise; libpq and asyncpg prefer it and fall
        # back, and so must we, or a server without TLS works for wahub and not here.
        go_query.setdefault("sslmode", "prefer")
        go_query["search_path"] = SCHEMA
        self._neonize_url = urlunsplit(parts._replace(scheme="postgres", query=urlencode(go_query)))
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    def neonize_name(self, channel_id: str) -> str:
        check_channel_id(channel_id)
        return self._neonize_url

    async def _connection_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._asyncpg_url, min_size=0, max_size=2)
            return self._pool

    async def prepare(self) -> None:
        pool = await self._connection_pool()
        async with pool.acquire() as connection:
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            await connection.execute(_DEVICES_DDL)

    async def device_of(self, channel_id: str) -> str | None:
        await self.prepare()
        pool = await self._connection_pool()
        async with pool.acquire() as connection:
            device = await connection.fetchval(
                f"SELECT device_jid FROM {SCHEMA}.wahub_channel_devices WHERE channel_id = $1",
                channel_id,
            )
            if device is None:
                return None
            # whatsmeow deletes its device row when the phone unlinks us; only a device
            # it still holds can be resumed.
            exists = await connection.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.whatsmeow_device"
            )
            if not exists:
                return None
            held = await connection.fetchval(
                f"SELECT 1 FROM {SCHEMA}.whatsmeow_device WHERE jid = $1", device
            )
        return str(device) if held else None

    async def remember(self, channel_id: str, device_jid: str) -> None:
        await self.prepare()
        pool = await self._connection_pool()
        await pool.execute(
            f"INSERT INTO {SCHEMA}.wahub_channel_devices (channel_id, device_jid) "
            "VALUES ($1, $2) ON CONFLICT (channel_id) DO UPDATE SET device_jid = $2",
            channel_id,
            device_jid,
        )

    async def forget(self, channel_id: str) -> None:
        device = await self.device_of(channel_id)
        pool = await self._connection_pool()
        async with pool.acquire() as connection, connection.transaction():
            if device is not None:
                # whatsmeow's own tables cascade from the device row.
                await connection.execute(
                    f"DELETE FROM {SCHEMA}.whatsmeow_device WHERE jid = $1", device
                )
            await connection.execute(
                f"DELETE FROM {SCHEMA}.wahub_channel_devices WHERE channel_id = $1", channel_id
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def credential_store(location: str | Path) -> CredentialStore:
    """A ``PostgresStore`` for a PostgreSQL URL, else a ``DirectoryStore``."""
    text = str(location)
    if re.match(r"^postgres(ql)?(\+\w+)?://", text):
        return PostgresStore(text)
    return DirectoryStore(Path(text))
