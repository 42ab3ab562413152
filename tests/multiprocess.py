"""Helpers for tests that run wahub as separate processes (``wahub sandbox``, ``serve``,
``worker``), kill some of them, and count what the standalone sandbox received.

``Processes`` starts each process with its own log file; the ``procs`` fixture
(tests/integration/conftest.py) kills them all after the test and, when the test fails,
appends the tail of every log to the failure report.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from wahub.domain.status import FINAL
from wahub.store import messages as message_q
from wahub.store.database import Database

FINAL_STATUSES = frozenset(s.value for s in FINAL)


class Processes:
    """``wahub`` subprocesses of one test. Each gets ``<log_dir>/<name>.log`` (a name
    used twice appends to the same file, marked with the new pid)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"--- wahub {' '.join(args)}\n".encode())
            process = subprocess.Popen(
                [sys.executable, "-m", "wahub", *args], env=env, stdout=out, stderr=out
            )
        self.started.append((name, process))
        return process

    def kill_all(self) -> None:
        for _, process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def count_in_logs(self, text: str) -> dict[str, int]:
        """How often ``text`` occurs in each process's log."""
        return {
            name: (self.log_dir / f"{name}.log").read_text(errors="replace").count(text)
            for name in dict.fromkeys(name for name, _ in self.started)
        }

    def log_tails(self, chars: int = 4000) -> str:
        """The end of every log, with each process's exit code (None: still running)."""
        parts: list[str] = []
        for name in dict.fromkeys(name for name, _ in self.started):
            codes = [
                p.returncode if p.poll() is not None else None for n, p in self.started if n == name
            ]
            log = self.log_dir / f"{name}.log"
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            parts.append(f"===== {name} (exit codes {codes}) =====\n{text[-chars:]}")
        return "\n".join(parts)


async def wait_http(url: str, timeout: float = 180.0) -> None:
    """Return once ``url`` answers below 500. The default is generous: on a busy
    machine importing wahub alone has taken 50 s (mostly waiting for the disk)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def message_statuses(db: Database) -> Counter[str]:
    """How many messages are in each status."""
    async with db.read() as conn:
        return Counter(await message_q.count_by_status(conn))
