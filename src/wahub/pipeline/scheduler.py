"""Periodic jobs on cron expressions, each slot run once however many processes run.

Every ``wahub serve``/``wahub worker`` process runs a scheduler. When a slot comes due,
each one inserts ``(job name, slot time)`` into ``periodic_runs``; the primary key lets
exactly one insert through, and only that process runs the job. No leader election, no
clock agreement beyond "the slot's time", and a crashed runner cannot block later slots.

Cron expressions are read in UTC. A slot missed while no process was running is run at
start-up if it is at most ``catch_up_seconds`` old (a restart at 03:05 still runs the
03:00 sync); older ones are skipped, the next slot comes soon enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from wahub.domain.errors import ValidationError
from wahub.store import groups as q
from wahub.store.database import Database

log = logging.getLogger("wahub.scheduler")


def validate_cron(expression: str, *, field: str = "cron") -> str:
    """The expression, stripped, or ValidationError naming ``field``."""
    text = expression.strip()
    if not croniter.is_valid(text):
        raise ValidationError(
            f"{field}: {expression!r} is not a cron expression (e.g. '0 3 * * *')",
            details={"field": field, "value": expression},
        )
    return text


def slot_key(slot: float) -> str:
    """A slot's stored name: its time in ISO 8601 UTC (``2026-01-31T03:00:00Z``)."""
    return datetime.fromtimestamp(slot, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_slot(expression: str, after: float) -> float:
    """The first slot strictly after ``after`` (unix seconds)."""
    start = datetime.fromtimestamp(after, tz=UTC)
    return float(croniter(expression, start).get_next(float))


def previous_slot(expression: str, before: float) -> float:
    """The last slot at or before ``before``."""
    start = datetime.fromtimestamp(before + 1e-6, tz=UTC)
    return float(croniter(expression, start).get_prev(float))


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    cron: str
    run: Callable[[], Awaitable[Any]]


class Scheduler:
    """Runs ``jobs`` on their slots. ``run()`` until ``stop()``; ``tick(now)`` is one step
    of it (what tests drive)."""

    def __init__(
        self,
        db: Database,
        jobs: list[PeriodicJob],
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        catch_up_seconds: float = 3600.0,
        max_sleep_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.jobs = [PeriodicJob(j.name, validate_cron(j.cron), j.run) for j in jobs]
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self.clock = clock
        self.max_sleep_seconds = max_sleep_seconds
        now = clock()
        self._due: dict[str, float] = {}
        for job in self.jobs:
            missed = previous_slot(job.cron, now)
            fresh = now - missed <= catch_up_seconds
            self._due[job.name] = missed if fresh else next_slot(job.cron, now)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.tick(self.clock())
            wait = min(self._due.values(), default=self.clock() + 3600) - self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), timeout=max(0.05, min(wait, self.max_sleep_seconds))
                )

    def stop(self) -> None:
        self._stop.set()

    async def tick(self, now: float) -> list[str]:
        """Run every job whose slot is due and that this process wins; return their names."""
        ran = []
        for job in self.jobs:
            slot = self._due[job.name]
            if slot > now:
                continue
            self._due[job.name] = next_slot(job.cron, now)
            if await self.run_slot(job, slot):
                ran.append(job.name)
        return ran

    async def run_slot(self, job: PeriodicJob, slot: float) -> bool:
        """Claim ``slot`` of ``job`` and run it if the claim was ours. A failing job is
        logged, not retried: its slot is spent, as with cron."""
        key = slot_key(slot)
        won = await self.db.write(
            lambda conn: q.claim_periodic_slot_sync(
                conn, name=job.name, slot=key, owner=self.owner, now=self.clock()
            )
        )
        if not won:
            log.debug("%s %s already claimed by another process", job.name, key)
            return False
        log.info("running %s for slot %s", job.name, key)
        try:
            await job.run()
        except Exception:
            log.exception("periodic job %s (slot %s) failed", job.name, key)
        return True
