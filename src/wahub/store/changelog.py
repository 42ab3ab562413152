"""The replication log: the triggers that append to ``changes``, and its named queries.

Why triggers: messages, statuses, conversations, leads, contacts, chats and campaign
counters are written by the API, the send worker, the inbox processor, auto-replies,
group sync, campaigns and whatever comes next. A trigger logs every one of those writes
in the writer's own transaction (a rolled-back write logs nothing), without any of them
knowing about replication.

The trigger SQL is generated from ``REPLICATED`` and the columns the table has in the
database at the time (``install_capture``), so a migration that adds a column to a
replicated table calls ``install_capture`` again and the log carries the new column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Boolean, Float, delete, func, inspect, or_, select, update
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import text as sql_text

from wahub.store.schema import changes, dead_letters, metadata, sink_cursors
from wahub.store.sql import insert_ignore


@dataclass(frozen=True, slots=True)
class Replicated:
    """How one table is logged: its key, the chat its changes are ordered by, and the
    columns that are the pipeline's own bookkeeping (never logged, and an update that
    changes only them logs nothing: a claim or a lease renewal is not news).

    ``once_per_transaction``: on PostgreSQL, updates are logged at commit and only the
    row's last state in the transaction. For a row that one transaction updates many
    times (a campaign's counter row moves once per status of a webhook batch) the
    states in between were never visible to anyone, and logging each cost the status
    path half of what keeping the counters costs (``wahub bench ingest``)."""

    table: str
    key: tuple[str, ...]
    chat: str | None = None  # SQL over the row alias ``{r}``
    internal: frozenset[str] = field(default_factory=frozenset)
    once_per_transaction: bool = False


REPLICATED: tuple[Replicated, ...] = (
    Replicated("chats", ("chat_id",), '{r}."chat_id"'),
    Replicated("contacts", ("id",)),
    Replicated("leads", ("id",)),
    Replicated("conversations", ("id",), '{r}."chat_id"'),
    Replicated(
        "messages",
        ("id",),
        '{r}."chat_id"',
        frozenset(
            {"lease_owner", "lease_until", "next_attempt_at", "request_hash", "idempotency_key"}
        ),
    ),
    Replicated(
        "message_events",
        ("id",),
        '(SELECT m."chat_id" FROM messages m WHERE m."id" = {r}."message_id")',
    ),
    Replicated("campaign_stats", ("campaign_id", "template_name"), once_per_transaction=True),
)

REPLICATED_BY_NAME = {spec.table: spec for spec in REPLICATED}


def replicated_columns(conn: SyncConnection, spec: Replicated) -> list[str]:
    """The table's columns in the database, in order, less the internal ones."""
    return [
        c["name"] for c in inspect(conn).get_columns(spec.table) if c["name"] not in spec.internal
    ]


def _q(name: str) -> str:
    return f'"{name}"'


def _key_sql(spec: Replicated, r: str) -> str:
    parts = [f"CAST({r}.{_q(c)} AS TEXT)" for c in spec.key]
    return " || '|' || ".join(parts)


def _chat_sql(spec: Replicated, r: str) -> str:
    return "NULL" if spec.chat is None else spec.chat.format(r=r)


def _sqlite_value(table: str, column: str, r: str) -> str:
    """A column as a JSON value that round-trips: floats with 17 digits (SQLite's JSON
    prints 15, which loses the microseconds of a unix time), JSON columns nested,
    booleans as true/false like PostgreSQL's ``to_jsonb``."""
    ref = f"{r}.{_q(column)}"
    declared = metadata.tables[table].c.get(column) if table in metadata.tables else None
    kind = None if declared is None else declared.type
    if isinstance(kind, Float):
        return f"CASE WHEN {ref} IS NULL THEN NULL ELSE json(printf('%!.17g', {ref})) END"
    if isinstance(kind, JSON):
        return f"json({ref})"
    if isinstance(kind, Boolean):
        return (
            f"CASE WHEN {ref} IS NULL THEN NULL WHEN {ref} THEN json('true') ELSE json('false') END"
        )
    return ref


SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def sqlite_capture_sql(spec: Replicated, columns: Sequence[str]) -> list[str]:
    """CREATE TRIGGER statements logging ``spec.table`` on SQLite."""
    t = spec.table

    def append(op: str, r: str) -> str:
        pairs = ", ".join(f"'{c}', {_sqlite_value(t, c, r)}" for c in columns)
        return (
            "INSERT INTO changes(table_name, row_key, op, chat_id, data, created_at) "
            f"VALUES ('{t}', {_key_sql(spec, r)}, '{op}', {_chat_sql(spec, r)}, "
            f"json_object({pairs}), {SQLITE_NOW});"
        )

    changed = " OR ".join(f"old.{_q(c)} IS NOT new.{_q(c)}" for c in columns)
    on = f"ON {_q(t)}"
    return [
        f"CREATE TRIGGER changes_{t}_ai AFTER INSERT {on} BEGIN {append('insert', 'new')} END",
        f"CREATE TRIGGER changes_{t}_au AFTER UPDATE {on} WHEN {changed} "
        f"BEGIN {append('update', 'new')} END",
        f"CREATE TRIGGER changes_{t}_ad AFTER DELETE {on} BEGIN {append('delete', 'old')} END",
    ]


def _pg_comparable(table: str, column: str, r: str) -> str:
    # json has no equality operator; jsonb compares by value.
    declared = metadata.tables[table].c.get(column) if table in metadata.tables else None
    if declared is not None and isinstance(declared.type, JSON):
        return f"{r}.{_q(column)}::jsonb"
    return f"{r}.{_q(column)}"


def pg_capture_sql(spec: Replicated, columns: Sequence[str]) -> list[str]:
    """The trigger function and triggers logging ``spec.table`` on PostgreSQL."""
    t = spec.table
    internal = ", ".join(f"'{c}'" for c in sorted(spec.internal))
    data = f"to_jsonb(r) - ARRAY[{internal}]::text[]" if internal else "to_jsonb(r)"
    old_row = ", ".join(_pg_comparable(t, c, "OLD") for c in columns)
    new_row = ", ".join(_pg_comparable(t, c, "NEW") for c in columns)
    append = f"""INSERT INTO changes(table_name, row_key, op, chat_id, data, txid, created_at)
            VALUES ('{t}', {_key_sql(spec, "r")}, lower(TG_OP), {_chat_sql(spec, "r")}, {data},
                    pg_current_xact_id()::text::bigint,
                    extract(epoch from clock_timestamp()))"""
    statements = [
        f"""CREATE FUNCTION changes_capture_{t}() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE r {_q(t)};
        BEGIN
            IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
            {append};
            RETURN NULL;
        END $$""",
        f"""CREATE TRIGGER changes_{t}_aid AFTER INSERT OR DELETE ON {_q(t)}
        FOR EACH ROW EXECUTE FUNCTION changes_capture_{t}()""",
    ]
    changed = f"ROW({old_row}) IS DISTINCT FROM ROW({new_row})"
    if not spec.once_per_transaction:
        return [
            *statements,
            f"""CREATE TRIGGER changes_{t}_au AFTER UPDATE ON {_q(t)}
            FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION changes_capture_{t}()""",
        ]
    # Deferred to commit, each queued update logs only if its row is still what the
    # table holds: the transaction's last update of the row (a row deleted later logs
    # its delete instead). Two updates that end equal both log the same state: harmless,
    # sinks keep the newest.
    match = " AND ".join(f"c.{_q(k)} = NEW.{_q(k)}" for k in spec.key)
    return [
        *statements,
        f"""CREATE FUNCTION changes_capture_{t}_last() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE r {_q(t)};
        BEGIN
            SELECT c.* INTO r FROM {_q(t)} c WHERE {match};
            IF NOT FOUND OR to_jsonb(r) IS DISTINCT FROM to_jsonb(NEW) THEN
                RETURN NULL;
            END IF;
            {append};
            RETURN NULL;
        END $$""",
        f"""CREATE CONSTRAINT TRIGGER changes_{t}_au AFTER UPDATE ON {_q(t)}
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION changes_capture_{t}_last()""",
    ]


def drop_capture_sql(dialect: str, table: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS changes_{table}_{s}" for s in ("ai", "au", "ad")]
    return [
        f"DROP TRIGGER IF EXISTS changes_{table}_aid ON {_q(table)}",
        f"DROP TRIGGER IF EXISTS changes_{table}_au ON {_q(table)}",
        f"DROP FUNCTION IF EXISTS changes_capture_{table}()",
        f"DROP FUNCTION IF EXISTS changes_capture_{table}_last()",
    ]


def install_capture(conn: SyncConnection, specs: Sequence[Replicated] = REPLICATED) -> list[str]:
    """(Re)create the logging triggers of every replicated table the database has, for
    its current columns. Returns the tables covered."""
    dialect = conn.dialect.name
    covered = []
    for spec in specs:
        if not inspect(conn).has_table(spec.table):
            continue
        columns = replicated_columns(conn, spec)
        for statement in drop_capture_sql(dialect, spec.table):
            conn.execute(sql_text(statement))
        generate = sqlite_capture_sql if dialect == "sqlite" else pg_capture_sql
        for statement in generate(spec, columns):
            conn.execute(sql_text(statement))
        covered.append(spec.table)
    return covered


def uninstall_capture(conn: SyncConnection) -> None:
    for spec in REPLICATED:
        for statement in drop_capture_sql(conn.dialect.name, spec.table):
            conn.execute(sql_text(statement))


# -- the log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One logged change, as sinks receive it."""

    seq: int
    table: str
    key: str
    op: str
    chat_id: str | None
    data: dict[str, Any]
    txid: int | None
    created_at: float

    @property
    def ident(self) -> tuple[int, str, str]:
        """Names the change in a sink's answer: seq alone is unique in the log, but a
        backfill sends every row at the same seq."""
        return (self.seq, self.table, self.key)

    @property
    def ordering_key(self) -> str:
        """Changes with the same ordering key are delivered in seq order: a chat's
        changes together; a row outside any chat (a lead, a contact) on its own."""
        return self.chat_id or f"{self.table}:{self.key}"

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "table": self.table,
            "key": self.key,
            "op": self.op,
            "chat_id": self.chat_id,
            "txid": self.txid,
            "created_at": self.created_at,
            "row": self.data,
        }


def _change(row: Any) -> Change:
    m = row._mapping
    return Change(
        seq=int(m["seq"]),
        table=m["table_name"],
        key=m["row_key"],
        op=m["op"],
        chat_id=m["chat_id"],
        data=dict(m["data"]),
        txid=None if m["txid"] is None else int(m["txid"]),
        created_at=float(m["created_at"]),
    )


def read_changes_sync(
    conn: SyncConnection, *, after: int, upto: int | None, limit: int
) -> list[Change]:
    """Changes with ``after < seq <= upto`` (no upper bound when ``upto`` is None), in
    seq order."""
    stmt = select(changes).where(changes.c.seq > after)
    if upto is not None:
        stmt = stmt.where(changes.c.seq <= upto)
    rows = conn.execute(stmt.order_by(changes.c.seq).limit(limit))
    return [_change(r) for r in rows]


def last_seq_sync(conn: SyncConnection) -> int:
    """The highest seq committed (0 for an empty log)."""
    return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())


def pg_sequence_position_sync(conn: SyncConnection) -> int:
    """The last seq any transaction has drawn, committed or not (PostgreSQL)."""
    value = conn.execute(
        sql_text(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('changes', 'seq')::regclass)"
        )
    ).scalar()
    return 0 if value is None else int(value)


def pg_snapshot_xmin_sync(conn: SyncConnection) -> int:
    """The oldest transaction id still running (a fresh snapshot's xmin): every id
    below it has finished."""
    return int(
        conn.execute(
            sql_text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        ).scalar_one()
    )


def pg_new_xid_sync(conn: SyncConnection) -> int:
    """This transaction's id, assigned now: above every id handed out before."""
    return int(conn.execute(sql_text("SELECT pg_current_xact_id()::text::bigint")).scalar_one())


def oldest_unshipped_sync(conn: SyncConnection, after: int) -> tuple[int, float] | None:
    """(seq, created_at) of the first change after ``after``, or None."""
    row = conn.execute(
        select(changes.c.seq, changes.c.created_at)
        .where(changes.c.seq > after)
        .order_by(changes.c.seq)
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), float(row[1]))


def pending_count_sync(conn: SyncConnection, after: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(changes).where(changes.c.seq > after)
        ).scalar_one()
    )


def prune_sync(conn: SyncConnection, *, below_or_at: int, created_before: float) -> int:
    """Delete changes every sink has passed and older than the retention."""
    result = conn.execute(
        delete(changes).where(changes.c.seq <= below_or_at, changes.c.created_at < created_before)
    )
    return int(result.rowcount or 0)


# -- cursors ------------------------------------------------------------------------------


def ensure_cursors_sync(conn: SyncConnection, sinks: Sequence[str], now: float) -> None:
    """A cursor row for every sink, at 0 for a new one: it ships the retained log."""
    if sinks:
        conn.execute(
            insert_ignore(conn, sink_cursors),
            [{"sink": s, "last_seq": 0, "paused": False, "updated_at": now} for s in sinks],
        )


def get_cursors_sync(conn: SyncConnection) -> list[dict[str, Any]]:
    return [
        dict(r._mapping) for r in conn.execute(select(sink_cursors).order_by(sink_cursors.c.sink))
    ]


def acquire_lease_sync(
    conn: SyncConnection, *, sink: str, owner: str, now: float, lease_seconds: float
) -> dict[str, Any] | None:
    """Take or renew the sink's lease; the cursor row when it is ours, else None.

    A paused sink's lease is given up (and not taken), so ``backfill`` can wait for the
    shipper to let go."""
    free = or_(
        sink_cursors.c.lease_owner.is_(None),
        sink_cursors.c.lease_until < now,
        sink_cursors.c.lease_owner == owner,
    )
    row = conn.execute(
        update(sink_cursors)
        .where(sink_cursors.c.sink == sink, free, sink_cursors.c.paused == False)  # noqa: E712
        .values(lease_owner=owner, lease_until=now + lease_seconds)
        .returning(*sink_cursors.c)
    ).first()
    if row is not None:
        return dict(row._mapping)
    release_lease_sync(conn, sink=sink, owner=owner)
    return None


def release_lease_sync(conn: SyncConnection, *, sink: str, owner: str) -> None:
    conn.execute(
        update(sink_cursors)
        .where(sink_cursors.c.sink == sink, sink_cursors.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


def advance_cursor_sync(
    conn: SyncConnection,
    *,
    sink: str,
    owner: str,
    last_seq: int,
    now: float,
    error: str | None,
) -> bool:
    """Move the cursor (never backwards) while holding the lease; False when the lease
    is gone (another process ships this sink now)."""
    values: dict[str, Any] = {"last_seq": func.max(sink_cursors.c.last_seq, last_seq)}
    if conn.dialect.name == "postgresql":
        values["last_seq"] = func.greatest(sink_cursors.c.last_seq, last_seq)
    values["updated_at"] = now
    values["last_error"] = error
    if error is None:
        values["last_shipped_at"] = now
    else:
        values["last_error_at"] = now
    result = conn.execute(
        update(sink_cursors)
        .where(sink_cursors.c.sink == sink, sink_cursors.c.lease_owner == owner)
        .values(values)
    )
    return bool(result.rowcount)


def set_paused_sync(conn: SyncConnection, *, sink: str, paused: bool, now: float) -> bool:
    result = conn.execute(
        update(sink_cursors)
        .where(sink_cursors.c.sink == sink)
        .values(paused=paused, updated_at=now)
    )
    return bool(result.rowcount)


def set_cursor_sync(conn: SyncConnection, *, sink: str, last_seq: int, now: float) -> None:
    conn.execute(
        update(sink_cursors)
        .where(sink_cursors.c.sink == sink)
        .values(last_seq=last_seq, updated_at=now)
    )


def set_error_sync(conn: SyncConnection, *, sink: str, error: str | None, now: float) -> None:
    values: dict[str, Any] = {"last_error": error, "updated_at": now}
    if error is not None:
        values["last_error_at"] = now
    conn.execute(update(sink_cursors).where(sink_cursors.c.sink == sink).values(values))


def forget_cursor_sync(conn: SyncConnection, sink: str) -> bool:
    return bool(conn.execute(delete(sink_cursors).where(sink_cursors.c.sink == sink)).rowcount)


# -- dead letters -------------------------------------------------------------------------


def park_sync(
    conn: SyncConnection,
    *,
    sink: str,
    parked: Sequence[tuple[Change, str, int]],
    now: float,
) -> None:
    """Dead-letter (change, reason, attempts) for ``sink``."""
    if not parked:
        return
    conn.execute(
        insert_ignore(conn, dead_letters),
        [
            {
                "sink": sink,
                "seq": c.seq,
                "table_name": c.table,
                "row_key": c.key,
                "op": c.op,
                "chat_id": c.chat_id,
                "data": c.data,
                "txid": c.txid,
                "change_created_at": c.created_at,
                "error": reason[:2000],
                "attempts": attempts,
                "created_at": now,
            }
            for c, reason, attempts in parked
        ],
    )


def list_dead_letters_sync(
    conn: SyncConnection, *, sink: str | None, pending_only: bool, limit: int
) -> list[dict[str, Any]]:
    stmt = select(dead_letters)
    if sink is not None:
        stmt = stmt.where(dead_letters.c.sink == sink)
    if pending_only:
        stmt = stmt.where(dead_letters.c.replayed_at.is_(None))
    rows = conn.execute(stmt.order_by(dead_letters.c.sink, dead_letters.c.seq).limit(limit))
    return [dict(r._mapping) for r in rows]


def dead_letter_change(row: dict[str, Any]) -> Change:
    return Change(
        seq=int(row["seq"]),
        table=row["table_name"],
        key=row["row_key"],
        op=row["op"],
        chat_id=row["chat_id"],
        data=dict(row["data"]),
        txid=row["txid"],
        created_at=float(row["change_created_at"]),
    )


def mark_replayed_sync(conn: SyncConnection, ids: Sequence[int], now: float) -> None:
    if ids:
        conn.execute(update(dead_letters).where(dead_letters.c.id.in_(ids)).values(replayed_at=now))


def record_replay_failure_sync(conn: SyncConnection, dead_id: int, error: str) -> None:
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_id)
        .values(error=error[:2000], attempts=dead_letters.c.attempts + 1)
    )


def dead_letter_counts_sync(conn: SyncConnection) -> dict[str, int]:
    rows = conn.execute(
        select(dead_letters.c.sink, func.count())
        .where(dead_letters.c.replayed_at.is_(None))
        .group_by(dead_letters.c.sink)
    )
    return {str(r[0]): int(r[1]) for r in rows}
