"""A local journal that makes a session event durable before the engine acknowledges it.

An engine acknowledges an event (to the sandbox, to WhatsApp's servers) once
``on_event`` returns, and ``on_event`` cannot wait for a database commit. So it appends
the event to this journal (a write the kernel keeps even if the process is killed), and
a drain task stores journaled events in the inbox, a burst at a time (a receipt per
send, hundreds a second, would otherwise cost a transaction each); the inbox's dedupe
key makes a replay harmless. A process that died leaves its journal behind, and the next one on
the same host drains it first: nothing acknowledged is lost.

Each process appends to ``<dir>/events.<pid>.jsonl``; a drain renames it to
``events.<pid>.<n>.draining`` (appends continue in a new file), stores every line, then
deletes it. A drain also takes the journals of processes that are no longer running.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import orjson

# Stores a burst of (dedupe key, body) pairs, in order; returns once all are committed.
Store = Callable[[Sequence[tuple[str, bytes]]], Awaitable[object]]

# Events handed to one ``Store`` call at most (one multi-row insert: WriteBatcher's size).
BURST: Final = 512


class EventSpool:
    """Append-only journal of (dedupe key, body) pairs in ``directory``."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / f"events.{os.getpid()}.jsonl"
        self._fd: int | None = None
        self._counter = itertools.count()
        self.pending = 0

    def append(self, key: str, body: bytes) -> None:
        """Write one event; on return it survives the process being killed (with
        ``fsync``, a power loss too)."""
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        line = orjson.dumps({"k": key, "b": base64.b64encode(body).decode()}) + b"\n"
        os.write(self._fd, line)
        if self.fsync:
            os.fsync(self._fd)
        self.pending += 1

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._path.exists() and self._path.stat().st_size > 0:
            target = self.directory / f"events.{os.getpid()}.{next(self._counter)}.draining"
            os.replace(self._path, target)
        self.pending = 0

    async def drain(self, store: Store) -> int:
        """Store every journaled event (this process's and any a dead one left), oldest
        file first, up to ``BURST`` per ``store`` call, deleting each file once all its
        events are stored. Returns how many were stored. An exception from ``store``
        leaves the file for the next drain (what was stored of it is stored again, and
        deduplicated by its key)."""
        self._rotate()
        self._adopt_orphans()
        stored = 0
        for path in sorted(self.directory.glob("events.*.draining"), key=_age):
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue  # another process drained it meanwhile
            entries: list[tuple[str, bytes]] = []
            for raw in lines:
                try:
                    entry = orjson.loads(raw)
                    entries.append((str(entry["k"]), base64.b64decode(entry["b"])))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    continue  # a line cut short by a kill mid-write: never acknowledged
            for start in range(0, len(entries), BURST):
                await store(entries[start : start + BURST])
            stored += len(entries)
            path.unlink(missing_ok=True)
        return stored

    def _adopt_orphans(self) -> None:
        """Journals of processes that died become drainable."""
        for path in self.directory.glob("events.*.jsonl"):
            try:
                pid = int(path.name.split(".")[1])
            except ValueError:
                continue
            if pid == os.getpid() or _alive(pid):
                continue
            target = self.directory / f"events.{pid}.o{os.getpid()}-{next(self._counter)}.draining"
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, target)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
