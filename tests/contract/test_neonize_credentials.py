"""Where the neonize engine keeps WhatsApp credentials, on both store backends: beside
the SQLite database (one file per channel) or in PostgreSQL schema ``wahub_sessions``;
whatsmeow itself creates its tables there, and ours never see them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import asyncpg
from neonize.events import LoggedOutEv

from neonize_feed import Feed, refusing_proxy
from wahub.providers.web.neonize_engine import NeonizeEngine, build_engine
from wahub.providers.web.neonize_store import SCHEMA, credential_store
from wahub.providers.web.session import ConnectFailed, LoggedOut, SessionEvent

DEVICE = "4915110000001:7@s.whatsapp.net"


def store_location(database_url: str) -> str:
    """The credential store the session process uses beside ``database_url``: the same
    PostgreSQL database, or a directory next to the SQLite file."""
    if database_url.startswith("sqlite"):
        return database_url.split(":///", 1)[1] + ".sessions"
    return database_url


async def dial_once(engine: NeonizeEngine, channel_id: str) -> SessionEvent:
    """Start a session (which makes whatsmeow open and migrate its store), wait for the
    dial's outcome (refused: the engines here dial through a proxy where nothing
    listens) and stop it."""
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()
    session = engine.open(channel_id, on_event=events.put_nowait)
    await session.start()
    outcome = await asyncio.wait_for(events.get(), 120)
    await asyncio.wait_for(session.stop(), 60)
    return outcome


def sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(name) for (name,) in rows}
    finally:
        connection.close()


async def postgres_tables(url: str) -> set[tuple[str, str]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        return {(row["table_schema"], row["table_name"]) for row in rows}
    finally:
        await connection.close()


async def test_whatsmeow_creates_its_tables_in_their_own_place(database_url: str) -> None:
    location = store_location(database_url)
    engine = NeonizeEngine(location, proxy=refusing_proxy())

    outcome = await dial_once(engine, "ch_creds")
    linked = await engine.has_credentials("ch_creds")
    await engine.close()

    assert isinstance(outcome, ConnectFailed)
    assert not linked
    if database_url.startswith("sqlite"):
        database = Path(database_url.split(":///", 1)[1])
        channel_file = Path(f"{database}.sessions") / "ch_creds.sqlite3"
        assert {"whatsmeow_device", "whatsmeow_sessions"} <= sqlite_tables(channel_file)
    else:
        tables = await postgres_tables(database_url)
        assert {(SCHEMA, "whatsmeow_device"), (SCHEMA, "wahub_channel_devices")} <= tables
        assert not [name for schema, name in tables if schema != SCHEMA and "whatsmeow" in name]


async def link_by_hand(location: str, channel_id: str) -> None:
    """Store a linked device for ``channel_id`` the way a pairing leaves it (a device row
    in whatsmeow's table, and on PostgreSQL our record of whose it is)."""
    store = credential_store(location)
    values = (DEVICE, 1, b"n" * 32, b"i" * 32, b"s" * 32, 1, b"g" * 64, b"a", b"d", b"x" * 64)
    columns = (
        "jid, registration_id, noise_key, identity_key, signed_pre_key, signed_pre_key_id,"
        " signed_pre_key_sig, adv_key, adv_details, adv_account_sig, adv_account_sig_key,"
        " adv_device_sig"
    )
    if location.startswith("postgres"):
        connection = await asyncpg.connect(location)
        try:
            await connection.execute(
                f"INSERT INTO {SCHEMA}.whatsmeow_device ({columns})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10)",
                *values,
                b"k" * 32,
            )
        finally:
            await connection.close()
        await store.remember(channel_id, DEVICE)
    else:
        connection = sqlite3.connect(Path(location) / f"{channel_id}.sqlite3")
        try:
            connection.execute(
                f"INSERT INTO whatsmeow_device ({columns})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, b"k" * 32, values[-1]),
            )
            connection.commit()
        finally:
            connection.close()
    await store.close()


async def test_a_linked_channel_has_credentials_its_neighbour_does_not_see(
    database_url: str,
) -> None:
    location = store_location(database_url)
    engine = NeonizeEngine(location, proxy=refusing_proxy())
    await dial_once(engine, "ch_linked")
    await dial_once(engine, "ch_other")

    await link_by_hand(location, "ch_linked")

    assert await engine.has_credentials("ch_linked")
    # On the shared PostgreSQL store a start without our record would resume the first
    # device whatsmeow finds, which is the other channel's.
    assert not await engine.has_credentials("ch_other")
    await engine.close()


async def test_logout_deletes_the_stored_credentials(database_url: str) -> None:
    location = store_location(database_url)
    engine = NeonizeEngine(location, proxy=refusing_proxy())
    await dial_once(engine, "ch_bye")
    await link_by_hand(location, "ch_bye")

    session = engine.open("ch_bye", on_event=lambda _event: None)
    await asyncio.wait_for(session.logout(), 60)

    assert not await engine.has_credentials("ch_bye")
    await engine.close()


async def test_the_session_process_engine_follows_the_database(
    database_url: str, tmp_path: Path
) -> None:
    engine = build_engine(SimpleNamespace(database_url=database_url), tmp_path / "state")

    await dial_once(engine, "ch_built")
    await engine.close()

    if database_url.startswith("sqlite"):
        assert (tmp_path / "state" / "whatsapp" / "ch_built.sqlite3").is_file()
    else:
        assert (SCHEMA, "whatsmeow_device") in await postgres_tables(database_url)


async def test_the_phone_unlinking_us_forgets_the_credentials_before_saying_so(
    database_url: str, tmp_path: Path
) -> None:
    location = store_location(database_url)
    engine = NeonizeEngine(location, proxy=refusing_proxy())
    await dial_once(engine, "ch_unlinked")
    await link_by_hand(location, "ch_unlinked")
    # An unconnected client of neonize's own, fed whatsmeow's LoggedOut through
    # neonize's dispatcher (no network reaches WhatsApp here).
    feed = Feed(tmp_path, "ch_unlinked", engine=engine)

    told = await feed.collect(LoggedOutEv(OnConnect=False, Reason=2), 1)

    assert told == [LoggedOut(reason="logged out from the phone")]
    assert not await engine.has_credentials("ch_unlinked")
    await feed.close()
