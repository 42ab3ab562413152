"""``wahub migrate``: create or upgrade the schema."""

from __future__ import annotations

from typing import Any

from wahub.cli.common import DatabaseOpt, JsonOpt, console, run, settings_for
from wahub.cli.output import emit


def migrate(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Create or upgrade the schema (also done on every start). Channel tokens an older
    wahub stored in plaintext are sealed with WAHUB_SECRET_KEY (or the SQLite key file)."""
    from wahub.store.database import Database
    from wahub.store.migrate import upgrade
    from wahub.store.secret_key import load_cipher

    async def go() -> dict[str, Any]:
        settings = settings_for(database)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        cipher = load_cipher(secret, settings.database_url)
        db = Database(settings.database_url)
        try:
            return await upgrade(db, cipher=cipher)
        finally:
            await db.dispose()

    def human(result: dict[str, Any]) -> None:
        if result["from"] == result["to"]:
            console.print(f"schema already at {result['to']}")
        else:
            console.print(f"schema migrated from {result['from'] or 'empty'} to {result['to']}")

    emit(run(go), as_json, human)
