"""``wahub worker``: the pipeline alone, for the scale-out topology."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from wahub.cli.common import DatabaseOpt, run, settings_for
from wahub.cli.lifecycle import PipelineDied, stop_on_signals, until_stopped_or_failed

log = logging.getLogger("wahub")


def worker(
    database: DatabaseOpt = None,
    max_channels: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Lease at most this many channels, leaving the rest to other workers "
            "(default: $WAHUB_WORKER_MAX_CHANNELS, else every free channel).",
        ),
    ] = None,
) -> None:
    """Run only the pipeline (no HTTP). SIGTERM finishes in-flight sends, then exits."""
    settings = settings_for(database, worker_max_channels=max_channels)

    async def go() -> None:
        from wahub.runtime import Hub
        from wahub.startup import on_start
        from wahub.webhook_secrets import refuse_placeholder_secrets

        # No receivers here, but the same environment configures serve: fail alike.
        refuse_placeholder_secrets(settings)
        hub = Hub.build(settings)
        stop = stop_on_signals()
        await hub.start(workers=True, realtime=False)
        worker_id = hub.outbox.worker_id if hub.outbox else "?"
        await on_start(hub, command="worker", workers=True)
        log.info("worker %s started", worker_id)
        try:
            await until_stopped_or_failed(stop, hub.failed)
        finally:
            await hub.stop()
            log.info("worker %s stopped", worker_id)
        if hub.failed.is_set():
            raise PipelineDied()

    run(go)
