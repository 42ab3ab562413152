"""Wake idle loops early when there is new work, instead of waiting for the next poll."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """A level-triggered signal: ``notify`` before ``wait`` is not lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, max_wait: float) -> None:
        """Return when notified or after ``max_wait`` seconds, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._event.wait()
        self._event.clear()
