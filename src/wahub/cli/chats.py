"""``wahub chats``: groups, and which employee groups may send to them."""

from __future__ import annotations

from typing import Annotated

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub
from wahub.cli.output import emit

app = typer.Typer(help="Groups and who may send to them.", no_args_is_help=True)


@app.command("add-group")
def add_group(
    chat_id: Annotated[str, typer.Argument(help="Group JID, e.g. 120363271212442249@g.us.")],
    name: Annotated[str | None, typer.Option(help="Group name.")] = None,
    readonly: Annotated[bool, typer.Option(help="Our number is not a participant.")] = False,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a WhatsApp group so it can be assigned and sent to."""
    on_hub(
        database,
        lambda hub: hub.channels.register_group(
            chat_id=chat_id, name=name, channel_id=None, readonly=readonly
        ),
    )
    emit({"group": chat_id}, as_json, lambda v: console.print(f"group {v['group']} registered"))


@app.command("assign")
def assign(
    chat_id: str,
    group: Annotated[str, typer.Option(help="Employee group name (created if new).")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let an employee group send to a WhatsApp group."""
    on_hub(database, lambda hub: hub.access.assign_chat(group_name=group, chat_id=chat_id))
    emit(
        {"chat_id": chat_id, "employee_group": group},
        as_json,
        lambda v: console.print(f"{v['chat_id']} assigned to {v['employee_group']}"),
    )


@app.command("add-member")
def add_member(
    user: Annotated[str, typer.Option(help="User name.")],
    group: Annotated[str, typer.Option(help="Employee group name (created if new).")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a user into an employee group."""
    on_hub(database, lambda hub: hub.access.add_member(group_name=group, user_name=user))
    emit(
        {"user": user, "employee_group": group},
        as_json,
        lambda v: console.print(f"{v['user']} is in {v['employee_group']}"),
    )
