"""Shared fixtures: a real SQLite file per test, a started hub, the app over it.

settings      Settings on a fresh SQLite file in tmp_path (workers off, test secrets),
              copied from ``migrated_database`` (migrated once per session)
hub           Hub.build(settings), started without workers, stopped after the test
app           create_app(settings, hub=hub) (the app neither starts nor stops the hub)
client        httpx.AsyncClient over the app in-process (no server, no lifespan)
live_server   the app behind a real uvicorn on a free port: its base URL (WebSocket, SSE)
make_key      async (role, user=None) -> a new API key
api_keys      {"admin": key, "agent": key, "viewer": key} for users admin, agent, viewer
headers_for   role -> {"Authorization": "Bearer <key>"} for the api_keys above
channel       one Cloud API channel (never contacted: no workers run)
groups        two registered groups; ``assigned`` is assigned to the agent user
secret key    WAHUB_SECRET_KEY is set for the whole run (see sealing.py)
postgres      a throwaway PostgreSQL cluster for the session (None when unavailable;
              WAHUB_TEST_POSTGRES=required turns "unavailable" into a failure)
http          an ``aiohttp.ClientSession``, closed after the test
start_sandbox async (**SandboxConfig knobs) -> (Sandbox, its base URL); every sandbox
              started is stopped after the test
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from pgcluster import PostgresCluster, find_bindir
from random_secrets import APP_SECRET, VERIFY_TOKEN
from sealing import TEST_SECRET_KEY
from wahub.app import create_app
from wahub.config import Settings
from wahub.embedded import free_port, start_server
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.store.database import Database
from wahub.store.migrate import upgrade

TEST_MAX_WEBHOOK_BYTES = 64 * 1024

MakeKey = Callable[..., Awaitable[str]]
StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the schema head. Tests start from a copy: migrating once per
    session instead of once per test keeps the suite fast."""
    path = tmp_path_factory.mktemp("template") / "wahub.db"

    async def migrate() -> None:
        db = Database(f"sqlite:///{path}")
        try:
            await upgrade(db)
        finally:
            await db.dispose()  # the last connection closing checkpoints the WAL into the file

    asyncio.run(migrate())
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_database: Path) -> Settings:
    database = tmp_path / "wahub.db"
    shutil.copyfile(migrated_database, database)
    return Settings(
        _env_file=None,  # a developer's .env must not leak into the tests
        database_url=f"sqlite:///{database}",
        run_workers=False,
        cloudapi_app_secret=SecretStr(APP_SECRET),
        cloudapi_verify_token=SecretStr(VERIFY_TOKEN),
        max_webhook_bytes=TEST_MAX_WEBHOOK_BYTES,
        secret_key=SecretStr(TEST_SECRET_KEY),
    )


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub.build(settings)
    await hub.start(workers=False)
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
def app(settings: Settings, hub: Hub) -> FastAPI:
    return create_app(settings, hub=hub)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: a crash must reach the test as the 500 a client gets.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://wahub.test") as client:
        yield client


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server, task = await start_server(app, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
def make_key(hub: Hub) -> MakeKey:
    async def make(role: str, user: str | None = None) -> str:
        created = await hub.access.create_key(user_name=user or role, role=role)
        return created.key

    return make


@pytest.fixture
async def api_keys(make_key: MakeKey) -> dict[str, str]:
    return {role: await make_key(role) for role in ("admin", "agent", "viewer")}


@pytest.fixture
def headers_for(api_keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_keys[role]}"}

    return headers


@pytest.fixture
async def channel(hub: Hub) -> dict[str, Any]:
    return await hub.channels.create(
        name="main",
        phone_number_id="106540352242922",
        access_token="test-access-token",
        base_url="http://127.0.0.1:9",  # never contacted: no workers run in these tests
        phone_number="+15550001234",
    )


@dataclass(frozen=True)
class Groups:
    assigned: str
    unassigned: str


@pytest.fixture
async def groups(hub: Hub, channel: dict[str, Any], api_keys: dict[str, str]) -> Groups:
    """Both groups on ``channel``; the agent user is in employee group "support", which
    may send to ``assigned`` only."""
    result = Groups(assigned="120363000000000001@g.us", unassigned="120363000000000002@g.us")
    await hub.channels.register_group(
        chat_id=result.assigned, name="Assigned", channel_id=channel["id"]
    )
    await hub.channels.register_group(
        chat_id=result.unassigned, name="Unassigned", channel_id=channel["id"]
    )
    await hub.access.add_member(group_name="support", user_name="agent")
    await hub.access.assign_chat(group_name="support", chat_id=result.assigned)
    return result


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    """A PostgreSQL cluster of our own for the whole run, or None if there is no server."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("WAHUB_TEST_POSTGRES") == "required":
            pytest.fail("PostgreSQL is required (WAHUB_TEST_POSTGRES=required) but not installed")
        yield None
        return
    cluster = PostgresCluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    started: list[Sandbox] = []

    async def start(**knobs: Any) -> tuple[Sandbox, str]:
        sandbox = Sandbox(SandboxConfig(**knobs))
        url = await sandbox.start()
        started.append(sandbox)
        return sandbox, url

    yield start
    for sandbox in started:
        await sandbox.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: once Playwright's sync API has started, its event loop stays
    running in this process and no asyncio test after it could start its own. (make
    test runs them in a process of their own; this keeps a plain ``pytest`` working.)"""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
