"""``serve`` runs the session process as a child and restarts it whenever it dies.

Sessions live in a process of their own because an engine can take its whole process
down (a Go panic in neonize aborts Python). The child resumes every linked phone from its
stored credentials (no new QR); what it had journaled but not stored yet is stored by
the next one. Restarts back off from half a second to ten, and the backoff starts over
once a child has lived a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

log = logging.getLogger("wahub.sessions")

STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 10.0
STOP_GRACE_S = 15.0


class SessionSupervisor:
    """Keeps one ``wahub sessions`` child running for ``database_url`` until ``stop``."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.restarts = 0
        self.child: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._watch(), name="sessions-supervisor")

    async def _spawn(self) -> None:
        self.child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wahub",
            "sessions",
            "--database",
            self.database_url,
            "--exit-with-parent",
        )
        log.info("session process started (pid %d)", self.child.pid)

    async def _watch(self) -> None:
        backoff = 0.5
        while True:
            child = self.child
            assert child is not None
            started = time.monotonic()
            code = await child.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff = 0.5
            self.restarts += 1
            log.error(
                "session process (pid %d) exited with code %s; restarting in %.1f s (restart %d)",
                child.pid,
                code,
                backoff,
                self.restarts,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            try:
                await self._spawn()
            except OSError as exc:
                log.error("restarting the session process failed: %s", exc)
                self.child = None
                await asyncio.sleep(backoff)
                await self._spawn()

    async def stop(self) -> None:
        """SIGTERM the child (it closes its connections, keeping the links) and wait for
        it; killed after ``STOP_GRACE_S``."""
        self._stopping.set()
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await child.wait()
            except TimeoutError:
                log.warning("session process did not stop in %.0f s: killed", STOP_GRACE_S)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
