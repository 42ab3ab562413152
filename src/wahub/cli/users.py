"""``wahub users``: passwords for signing in to the dashboard (``/ui``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wahub.cli.common import DatabaseOpt, JsonOpt, console, on_hub
from wahub.cli.output import emit

app = typer.Typer(
    help="Users' dashboard passwords (API keys are `wahub keys`).", no_args_is_help=True
)


@app.command("set-password")
def set_password(
    user: Annotated[str, typer.Argument(help="The user (created if new).")],
    role: Annotated[str, typer.Option(help="admin, agent or viewer: what the sign-in may do.")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input (for scripts)."
        ),
    ] = False,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set USER's dashboard password; sessions opened with the old one end.

    Asks for the password twice, unless --password-stdin. An agent sees and answers
    only the chats of the groups assigned to their employee groups, as with a key.
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    on_hub(
        database,
        lambda hub: hub.passwords.set_password(user_name=user, password=password, role=role),
    )
    emit(
        {"user": user, "role": role},
        as_json,
        lambda v: console.print(f"password set for {v['user']} (signs in as {v['role']})"),
    )


@app.command("remove-password")
def remove_password(
    user: Annotated[str, typer.Argument(help="The user.")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove USER's password: they sign in with an API key only, and their sessions end."""
    on_hub(database, lambda hub: hub.passwords.remove_password(user))
    emit(
        {"user": user, "password": None},
        as_json,
        lambda v: console.print(f"{v['user']} signs in with an API key only now"),
    )
