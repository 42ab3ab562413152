"""``wahub keys``: API keys, stored hashed and shown once."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub
from wahub.cli.output import emit, render

app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)


@app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, agent or viewer.")],
    user: Annotated[str, typer.Option(help="The user the key belongs to (created if new).")],
    channel: Annotated[
        list[str] | None,
        typer.Option(
            help="Limit the key to this channel (id or name); repeat for several. Sends, "
            "reads and the stream then cover only these; default: every channel."
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The key reads what its role sees, never writes.")
    ] = False,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once and never stored."""
    created = on_hub(
        database,
        lambda hub: hub.access.create_key(
            user_name=user, role=role, channels=channel or None, read_only=read_only
        ),
    )
    result = {
        "key": created.key,
        "key_id": created.key_id,
        "user": created.user_name,
        "role": created.role.value,
        "channel_ids": None if created.channel_ids is None else list(created.channel_ids),
        "read_only": created.read_only,
    }

    def human(value: dict[str, Any]) -> None:
        limits = [f"channels {', '.join(value['channel_ids'])}"] if value["channel_ids"] else []
        limits += ["read-only"] if value["read_only"] else []
        scope = f"; {'; '.join(limits)}" if limits else ""
        console.print(f"key for {value['user']} ({value['role']}{scope}), shown once:")
        # Plain print: the key alone on its line, for copying and for `tail -1`.
        print(value["key"])

    emit(result, as_json, human)


@app.command("list")
def list_keys(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (prefix, user, role; never the secret)."""
    rows = on_hub(database, lambda hub: hub.access.list_keys())

    def human(value: list[dict[str, Any]]) -> None:
        console.print(
            render(
                [
                    {
                        "id": r["id"],
                        "key": f"wh_{r['prefix']}_…",
                        "user": r["user_name"],
                        "role": r["role"],
                        "channels": ", ".join(r["channel_ids"]) if r["channel_ids"] else "all",
                        "read_only": "yes" if r["read_only"] else "",
                        "state": "revoked" if r["revoked_at"] else "active",
                    }
                    for r in value
                ]
            )
        )

    emit(rows, as_json, human)


@app.command("revoke")
def revoke(key_id: str, database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key by its id (from `wahub keys list`)."""
    on_hub(database, lambda hub: hub.access.revoke_key(key_id))
    emit({"revoked": key_id}, as_json, lambda v: console.print(f"revoked {v['revoked']}"))


@app.command("rotate-secret")
def rotate_secret(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Re-seal every channel's provider token under the first key of WAHUB_SECRET_KEY.

    Put the new key first and keep the old one after it (WAHUB_SECRET_KEY=NEW,OLD; on
    SQLite the old one is in the key file beside the database), run this, then drop the
    old key. All or nothing: if a channel's token opens with no key, it is named and
    nothing changes.
    """
    count = on_hub(database, lambda hub: hub.channels.rotate_credentials())
    emit(
        {"resealed": count},
        as_json,
        lambda v: console.print(
            f"re-sealed the tokens of {v['resealed']} channel(s) under the first key; "
            "the old key can be removed from WAHUB_SECRET_KEY now"
        ),
    )
