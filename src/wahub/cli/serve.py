"""``wahub serve``: the HTTP API, and by default the workers, in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from wahub.cli.common import DatabaseOpt, console, run, settings_for
from wahub.cli.lifecycle import PipelineDied, stop_on_signals, until_stopped_or_failed


def serve(
    database: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Attach the in-process sandbox provider (random webhook secrets for any "
            "unset) and its channel: added, or pointed at this run's sandbox, and the "
            "default for sends without channel_id.",
        ),
    ] = False,
    sandbox_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="With --sandbox: the sandbox's port (0: any free port)."
        ),
    ] = 0,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run the send pipeline in this process.")
    ] = True,
    sessions: Annotated[
        bool | None,
        typer.Option(
            "--sessions/--no-sessions",
            help="Run the WhatsApp Web session process (`wahub sessions`) as a child, "
            "restarted if it dies (default: $WAHUB_RUN_SESSIONS, on). Skip it when it "
            "runs as a service of its own.",
        ),
    ] = None,
) -> None:
    """Run the HTTP API (and, by default, the workers and the session process) until
    SIGINT/SIGTERM."""
    settings = settings_for(
        database, host=host, port=port, run_workers=workers, run_sessions=sessions
    )

    async def go() -> None:
        from wahub.embedded import describe_send_default, embedded_stack
        from wahub.sessions.supervisor import SessionSupervisor
        from wahub.startup import on_start

        stop = stop_on_signals()
        async with embedded_stack(
            settings,
            with_sandbox=sandbox,
            workers=workers,
            sandbox_channel=sandbox,
            sandbox_port=sandbox_port,
        ) as stack:
            if stack.sandbox_url is not None:
                console.print(f"sandbox provider on {stack.sandbox_url}")
            await on_start(stack.hub, command="serve", workers=workers)
            console.print(await describe_send_default(stack.hub), soft_wrap=True)
            supervisor = None
            if settings.run_sessions:
                # Started once the schema is migrated (the stack did), so the child
                # never races the migration.
                supervisor = SessionSupervisor(settings.database_url)
                await supervisor.start()
            console.print(f"wahub serving on {stack.url} (docs at {stack.url}/docs)")
            try:
                await until_stopped_or_failed(stop, stack.hub.failed)
            finally:
                if supervisor is not None:
                    await supervisor.stop()
            console.print("shutting down: finishing in-flight sends")
        if stack.hub.failed.is_set():
            raise PipelineDied()

    run(go)
