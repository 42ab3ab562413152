"""What every command shares: options, settings, running a coroutine, a hub for one command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from wahub.config import Settings
from wahub.domain.errors import WahubError

if TYPE_CHECKING:
    from wahub.domain.actors import Actor
    from wahub.runtime import Hub

T = TypeVar("T")

console = Console()
err = Console(stderr=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="Database URL (default: $WAHUB_DATABASE_URL or sqlite:///wahub.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
BenchDatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="A PostgreSQL server to run on, as postgresql://user@host/db: the bench "
        "creates a database wahub_bench_<random> there (needs CREATEDB) and drops it at "
        "the end; the one named is not touched. Default: SQLite in a temp dir.",
    ),
]


def settings_for(database: str | None = None, **extra: Any) -> Settings:
    """Settings from the environment, with the options a command was given on top."""
    overrides = {k: v for k, v in extra.items() if v is not None}
    if database:
        overrides["database_url"] = database
    return Settings(**overrides)


def run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; a WahubError becomes one readable line and exit code 1."""
    from wahub.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        return asyncio.run(_call(coro_factory))
    except WahubError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _call(coro_factory: Callable[[], Awaitable[T]]) -> T:
    return await coro_factory()


async def with_hub(settings: Settings, action: Callable[[Hub], Awaitable[T]]) -> T:
    """Run ``action`` against a hub with no workers: one operator command's lifetime."""
    from wahub.runtime import Hub

    hub = Hub.build(settings)
    try:
        await hub.start(workers=False, realtime=False)
        return await action(hub)
    finally:
        await hub.stop()


def on_hub(database: str | None, action: Callable[[Hub], Awaitable[T]]) -> T:
    """The common case: run ``action`` on the database the command was pointed at."""
    return run(lambda: with_hub(settings_for(database), action))


def operator() -> Actor:
    """The CLI acts as an admin of its own (whoever can run it owns the database)."""
    from wahub.domain.actors import Actor, Role

    return Actor("operator", "operator", Role.ADMIN, "cli")


def usage_error(message: str) -> typer.Exit:
    """A bad combination of options: one line on stderr, exit code 2 like click's own."""
    err.print(f"error: {message}")
    return typer.Exit(2)
