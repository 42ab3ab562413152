"""The key the test run seals channel credentials with.

Set as ``WAHUB_SECRET_KEY`` for the whole run (conftest imports this module first), so
every hub the tests build, on either backend, and every process they start (which
inherits the environment) shares it: PostgreSQL refuses to start without one. Tests of
the SQLite key file unset it for themselves.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from wahub.domain.credentials import CredentialCipher, generate_key

TEST_SECRET_KEY = os.environ.setdefault("WAHUB_SECRET_KEY", generate_key())
TEST_CIPHER = CredentialCipher([TEST_SECRET_KEY])


def token_in_sqlite_file(database_url: str, token: str) -> bool:
    """Whether ``token`` appears anywhere in the raw bytes of a SQLite database file,
    after a checkpoint moved everything its WAL holds into the file."""
    path = make_url(database_url).database
    assert path, f"not a SQLite file: {database_url}"
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the checkpoint could not complete"
    finally:
        conn.close()
    wal = Path(path + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL still holds pages"
    return token.encode() in Path(path).read_bytes()
