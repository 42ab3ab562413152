"""``wahub migrate``: create or upgrade the schema."""

from __future__ import annotations

from typing import Any

from wahub.cli.common import DatabaseOpt, JsonOpt, console, run, settings_for
from wahub.cli.output import emit


def migrate(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Create or upgrade the schema (also done on every start)."""
    from wahub.store.database import Database
    from wahub.store.migrate import upgrade

    async def go() -> dict[str, Any]:
        db = Database(settings_for(database).database_url)
        try:
            return await upgrade(db)
        finally:
            await db.dispose()

    def human(result: dict[str, Any]) -> None:
        if result["from"] == result["to"]:
            console.print(f"schema already at {result['to']}")
        else:
            console.print(f"schema migrated from {result['from'] or 'empty'} to {result['to']}")

    emit(run(go), as_json, human)
