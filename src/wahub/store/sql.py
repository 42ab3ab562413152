"""Small dialect helpers shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam
from sqlalchemy import Connection as SyncConnection
from sqlalchemy.dialects import postgresql, sqlite

from wahub.store.database import Connection


def insert_ignore(conn: Connection | SyncConnection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def one_of(
    conn: Connection | SyncConnection, column: ColumnElement[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN (values)`` whose SQL does not depend on how many values there are.

    An IN list renders one placeholder per value, so on PostgreSQL every batch size is
    a new statement that asyncpg prepares (a round trip) and the server parses and plans
    again: measured at 7.5 ms instead of 3.4 ms per query with sizes 1-256. There it is
    ``column = ANY(:array)``, one prepared statement for every size. SQLite keeps IN.
    """
    values = list(values)
    if conn.dialect.name == "postgresql":
        array = bindparam(None, values, type_=postgresql.ARRAY(column.type), unique=True)
        return column == any_(array)
    return column.in_(values)
