"""Where the key that seals channel credentials comes from.

``WAHUB_SECRET_KEY`` (one or more comma-separated Fernet keys; the first seals, all
open) wins. Without it:

- SQLite, the embedded default, keeps a key file beside the database
  (``wahub.db`` -> ``wahub.db.key``, mode 0600), generated on first start and logged
  once, so a new install needs no set-up and a copy of the database alone reveals no
  token. Back the key file up with the database.
- PostgreSQL refuses to start: its processes run on several hosts, and a key file
  generated on one would not reach the others (each would seal with its own key and
  none could read the others' channels).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from wahub.domain.credentials import GENERATE_HINT, CredentialCipher, generate_key, parse_keys
from wahub.domain.errors import SecretKeyError

log = logging.getLogger("wahub")

KEY_FILE_SUFFIX = ".key"


def load_cipher(secret_key: str | None, database_url: str) -> CredentialCipher:
    """The cipher for ``database_url``: from ``secret_key`` (``WAHUB_SECRET_KEY``) when
    set, else from the SQLite key file (created if missing).

    Raises ``SecretKeyError`` for a malformed key, and for PostgreSQL without a key.
    """
    keys = parse_keys(secret_key or "")
    if keys:
        return CredentialCipher(keys)
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise SecretKeyError(
            "WAHUB_SECRET_KEY is required with PostgreSQL: it seals the channels' "
            "provider tokens, and every wahub process on every host must use the same "
            f"key ({GENERATE_HINT})"
        )
    path = key_file_path(database_url)
    if path is None:
        # An in-memory database dies with this process, and so may its key.
        return CredentialCipher([generate_key()], source="the in-memory database's key")
    return CredentialCipher([_read_or_create(path)], source=f"the key file {path}")


def key_file_path(database_url: str) -> Path | None:
    """The key file beside a SQLite database file; None for an in-memory database."""
    database = make_url(database_url).database
    if not database or database == ":memory:":
        return None
    return Path(database + KEY_FILE_SUFFIX)


def _read_or_create(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    # Written under a private name, then linked into place: two processes starting on a
    # new database at once (serve and worker) both end up reading the one key that won,
    # and nobody ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (generate_key() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read(path)
    except OSError as exc:
        raise SecretKeyError(
            f"cannot create the key file {path} for the channels' credentials "
            f"({exc.strerror}); set WAHUB_SECRET_KEY instead ({GENERATE_HINT})"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.warning(
        "generated %s (mode 0600), the key that seals the channels' provider tokens in %s; "
        "back it up with the database (without it the tokens cannot be read), or set "
        "WAHUB_SECRET_KEY to use a key of your own",
        path,
        path.name.removesuffix(KEY_FILE_SUFFIX),
    )
    return _read(path)


def _read(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
    if not key:
        raise SecretKeyError(
            f"the key file {path} is empty: restore it from your backup, or delete it to "
            "generate a new key (channels sealed with the old one must then get their "
            "tokens again)"
        )
    return key
