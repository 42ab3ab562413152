"""Fixtures for the contract suite: one real database per test, on every store backend.

Adding a backend is one line in ``BACKENDS`` plus one branch in ``backend_url``; every
test that takes ``db`` (or ``database_url``) then runs once per backend, with the backend
name in the test id (``test_x[sqlite]``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from pgcluster import PostgresCluster
from sealing import TEST_CIPHER
from wahub.domain.actors import Actor
from wahub.domain.content import SendRequest
from wahub.domain.ids import new_id
from wahub.features.access import AccessControl
from wahub.features.channels import Channels
from wahub.features.messaging import Messaging
from wahub.store import messages as q
from wahub.store.database import Database
from wahub.store.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]


TEMPLATE = "wahub_migrated_template"


def _migrate(url: str) -> None:
    async def go() -> None:
        database = Database(url, sqlite_synchronous="OFF")
        try:
            await upgrade(database)
        finally:
            await database.dispose()

    asyncio.run(go())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run: tests that want a migrated database
    start from a copy instead of running every migration again."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster | None) -> str | None:
    """The same on PostgreSQL: a database migrated once, cloned by CREATE DATABASE ...
    TEMPLATE (a file copy, much cheaper than eight migrations with their triggers)."""
    if postgres is None:
        return None
    postgres.drop_database(TEMPLATE)
    _migrate(postgres.new_database(TEMPLATE))
    return TEMPLATE


# Fixtures that mean "this test wants a migrated database" (everything but the
# migration tests themselves, which need an empty one).
_MIGRATED = {"db", "env"}


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresCluster | None
) -> Iterator[str]:
    """A URL for a database of the backend, private to one test: empty, or already at the
    newest schema (a copy of a migrated template) when the test uses ``db``/``env``."""
    migrated = bool(_MIGRATED.intersection(request.fixturenames))
    if request.param == "sqlite":
        path = tmp_path / "t.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    if postgres is None:
        pytest.skip("no PostgreSQL server on this machine (install Debian's postgresql)")
    name = "t_" + new_id("db").split("_", 1)[1]
    if migrated:
        template = request.getfixturevalue("postgres_template")
        postgres.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}"
    else:
        url = postgres.new_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database, disposed after the test."""
    # Durability across power loss is not under test; skipping fsync keeps the suite fast.
    database = Database(database_url, sqlite_synchronous="OFF")
    try:
        await upgrade(database)
        yield database
    finally:
        await database.dispose()


def phone(n: int) -> str:
    """The ``n``-th distinct valid German mobile number (E.164)."""
    return f"+49151{10_000_000 + n}"


def person_chat(n: int) -> str:
    """The canonical chat id of ``phone(n)``."""
    return phone(n)[1:] + "@s.whatsapp.net"


@dataclass
class ContractEnv:
    """A migrated database with one channel and one admin, the feature objects over it,
    and store helpers.

    Test modules get it from the ``env`` fixture (helpers live here, not in an importable
    module, so nothing depends on how pytest puts conftest files on ``sys.path``).
    """

    db: Database
    access: AccessControl
    channels: Channels
    messaging: Messaging
    admin: Actor
    channel_id: str

    phone = staticmethod(phone)
    person_chat = staticmethod(person_chat)

    # --- features --------------------------------------------------------------------

    async def actor(self, name: str, role: str) -> Actor:
        """A new API key for ``name`` (the user is created on first use), authenticated."""
        created = await self.access.create_key(user_name=name, role=role)
        return await self.access.authenticate(created.key)

    async def add_channel(self, name: str) -> str:
        channel = await self.channels.create(
            name=name,
            phone_number_id=f"pnid-{name}",
            access_token="secret-token",
            enforce_service_window=False,
        )
        return str(channel["id"])

    async def send_text(
        self,
        to: str,
        body: str = "hello",
        *,
        channel_id: str | None = None,
        priority: int = 0,
        actor: Actor | None = None,
    ) -> dict[str, Any]:
        """Queue a text message through ``Messaging.send``; returns the stored row."""
        request = SendRequest.model_validate(
            {
                "to": to,
                "type": "text",
                "text": {"body": body},
                "channel_id": channel_id or self.channel_id,
                "priority": priority,
            }
        )
        accepted = await self.messaging.send(actor or self.admin, request)
        return accepted.message

    # --- store -----------------------------------------------------------------------

    async def insert_queued(
        self, chat_id: str, *, channel_id: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """Insert one queued outbound message with the store's own ``insert_message``
        (faster than ``send_text``, and takes any chat id)."""
        now = time.time()
        channel = channel_id or self.channel_id
        row: dict[str, Any] = {
            "id": new_id("msg"),
            "channel_id": channel,
            "chat_id": chat_id,
            "direction": "out",
            "type": "text",
            "content": {"type": "text", "text": {"body": "hi"}},
            "status": "queued",
            "ordering_key": f"{channel}:{chat_id}",
            "priority": 0,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
            **overrides,
        }
        async with self.db.transaction() as conn:
            return await q.insert_message(conn, row)

    async def claim(
        self,
        *,
        channel_ids: list[str] | None = None,
        owner: str = "worker-a",
        now: float | None = None,
        lease_seconds: float = 30.0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Claim due messages and start their sends at once, as a worker does for what it
        may send without waiting for pacing: ``claim_only`` then ``start`` (default: one
        second from now). Returns the started rows (``sending``, attempt counted)."""
        now = time.time() + 1 if now is None else now
        rows = await self.claim_only(
            channel_ids=channel_ids, owner=owner, now=now, lease_seconds=lease_seconds, limit=limit
        )
        attempts = await self.start(
            [r["id"] for r in rows], owner=owner, now=now, lease_seconds=lease_seconds
        )
        return [
            {**r, "status": "sending", "attempts": attempts[r["id"]]}
            for r in rows
            if r["id"] in attempts
        ]

    async def claim_only(
        self,
        *,
        channel_ids: list[str] | None = None,
        owner: str = "worker-a",
        now: float | None = None,
        lease_seconds: float = 30.0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """``claim_due_messages`` in its own transaction (default: one second from now)."""
        async with self.db.transaction() as conn:
            return await q.claim_due_messages(
                conn,
                channel_ids=channel_ids or [self.channel_id],
                owner=owner,
                now=time.time() + 1 if now is None else now,
                lease_seconds=lease_seconds,
                limit=limit,
            )

    async def start(
        self,
        message_ids: list[str],
        *,
        owner: str = "worker-a",
        now: float | None = None,
        lease_seconds: float = 30.0,
    ) -> dict[str, int]:
        """``start_sends`` in its own transaction (default: one second from now)."""
        async with self.db.transaction() as conn:
            return await q.start_sends(
                conn,
                message_ids,
                owner=owner,
                now=time.time() + 1 if now is None else now,
                lease_seconds=lease_seconds,
            )

    async def record(
        self, *outcomes: q.SendOutcome, owner: str = "worker-a", now: float | None = None
    ) -> list[q.StatusChange]:
        async with self.db.transaction() as conn:
            return await q.record_outcomes(
                conn, list(outcomes), owner=owner, now=time.time() if now is None else now
            )

    async def apply(self, *observed: q.ObservedStatus) -> list[q.StatusChange]:
        async with self.db.transaction() as conn:
            return await q.apply_statuses(conn, list(observed), time.time())

    async def mark_sent(self, message_id: str, provider_message_id: str) -> None:
        """Record the provider's acceptance of a claimed message, as the worker does."""
        await self.record(q.SendOutcome(message_id, 1, "sent", provider_message_id))

    async def message(self, message_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await q.get_message(conn, message_id)
        assert row is not None, f"message {message_id} is not stored"
        return row

    async def status(self, message_id: str) -> str:
        return str((await self.message(message_id))["status"])

    async def events(self, message_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.list_events(conn, message_id)

    async def count(self, table: Table) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@pytest.fixture
async def env(db: Database) -> ContractEnv:
    access = AccessControl(db)
    channels = Channels(db, TEST_CIPHER)
    # The outbox suites send free-form texts to people who never wrote: without the
    # 24-hour window rule (tests/contract/test_conversations.py tests it).
    channel = await channels.create(
        name="main",
        phone_number_id="pnid-main",
        access_token="secret-token",
        enforce_service_window=False,
    )
    created = await access.create_key(user_name="root", role="admin")
    admin = await access.authenticate(created.key)
    return ContractEnv(db, access, channels, Messaging(db, access), admin, str(channel["id"]))
