"""Apply migrations: ``wahub migrate`` and on every start.

Safe when several processes start together: the whole upgrade runs in one write
transaction that takes the database's own lock first (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``pg_advisory_xact_lock``), so the second process waits and then finds the
schema at head. A schema written by a newer wahub is refused instead of touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import WahubError
from wahub.store.database import Database

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x77616875  # "wahu": the advisory lock every wahub process migrates under


class SchemaTooNew(WahubError):
    code = "schema_too_new"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _known(script: ScriptDirectory, revision: str) -> bool:
    return any(r.revision == revision for r in script.walk_revisions())


def _upgrade(
    conn: Connection, to: str = "head", cipher: CredentialCipher | None = None
) -> str | None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    current = _current_revision(conn)
    script = ScriptDirectory.from_config(_config())
    if current is not None and not _known(script, current):
        raise SchemaTooNew(
            f"the database schema is at revision {current}, written by a newer wahub; "
            "upgrade wahub (this version knows up to "
            f"{script.get_current_head()}) instead of running it against this database"
        )
    cfg = _config()
    cfg.attributes["connection"] = conn
    # Data migrations that seal channel credentials (0012) need the key.
    cfg.attributes["credential_cipher"] = cipher
    command.upgrade(cfg, to)
    return current


async def upgrade(
    db: Database, *, to: str = "head", cipher: CredentialCipher | None = None
) -> dict[str, Any]:
    """Bring the schema to head, or to the revision ``to`` (tests build a database as an
    older wahub left it this way, to check that upgrading it keeps and indexes its rows).
    ``cipher`` seals credentials an older wahub stored in plaintext; upgrading a database
    that has such rows without one fails and changes nothing.
    Returns ``{"from": rev|None, "to": rev}``."""
    async with db.transaction() as conn:
        previous = await conn.run_sync(_upgrade, to, cipher)
    return {"from": previous, "to": head_revision() if to == "head" else to}
