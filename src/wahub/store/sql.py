"""Small dialect helpers shared by the repositories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from wahub.store.database import Connection


def insert_ignore(conn: Connection | SyncConnection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
