"""Long-running commands (serve, worker): stop on a signal, or exit when the pipeline dies."""

from __future__ import annotations

import asyncio
import logging
import signal

from wahub.domain.errors import WahubError

log = logging.getLogger("wahub")


class PipelineDied(WahubError):
    """A pipeline loop died of an unexpected error (logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__(
            "a pipeline loop died (see the log above); exiting so a supervisor restarts us"
        )


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call inside the running loop); the signal is
    logged, so an operator sees why the process stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, sig, stop)
    return stop


def _stop(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info(
        "%s received: stopping, finishing in-flight sends", sig.name, extra={"signal": sig.name}
    )
    stop.set()


async def until_stopped_or_failed(stop: asyncio.Event, failed: asyncio.Event) -> None:
    """Wait for a stop signal, or for the hub's pipeline to die."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
