"""Feeding real neonize events to a neonize session, offline.

``Feed`` attaches an unconnected neonize client to a ``NeonizeSession`` and pushes
protobuf events through neonize's own dispatcher (``Event.execute``, the function the Go
library calls with a pointer to the serialized event), so the session's handlers run
exactly as they do for whatsmeow's events, thread hop onto the loop included.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
from pathlib import Path
from typing import Any

from neonize.client import NewClient
from neonize.events import EVENT_TO_INT
from neonize.proto.Neonize_pb2 import JID

from wahub.providers.web.neonize_engine import NeonizeEngine, NeonizeSession
from wahub.providers.web.session import SessionEvent


def refusing_proxy() -> str:
    """An HTTP proxy address where nothing listens: a dial through it is refused, on a
    machine with a network as on one without."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def jid(user: str, server: str = "s.whatsapp.net") -> Any:
    return JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


class Feed:
    def __init__(
        self, tmp_path: Path, channel_id: str = "ch_feed", engine: NeonizeEngine | None = None
    ) -> None:
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self.engine = engine or NeonizeEngine(tmp_path / "sessions")
        self.session: NeonizeSession = self.engine.open(channel_id, on_event=self.events.put_nowait)
        self.client = NewClient(str(tmp_path / "feed.sqlite3"), uuid=channel_id)
        self.session.attach(self.client)

    def push(self, event: Any) -> None:
        """Hand ``event`` to neonize's dispatcher as the Go library does, from another
        thread (whatsmeow's callbacks never run on our loop)."""
        data = event.SerializePartialToString()
        code = EVENT_TO_INT[type(event)]
        buffer = ctypes.create_string_buffer(data, len(data))
        self.client.event.execute(0, ctypes.addressof(buffer), len(data), code)

    async def push_from_thread(self, event: Any) -> None:
        await asyncio.to_thread(self.push, event)

    async def next(self) -> SessionEvent:
        return await asyncio.wait_for(self.events.get(), 10)

    async def collect(self, event: Any, count: int) -> list[SessionEvent]:
        await self.push_from_thread(event)
        return [await self.next() for _ in range(count)]

    async def nothing_more(self) -> bool:
        """True when no further event is queued once the loop has run what is pending
        (the hop onto the loop is one ``call_soon_threadsafe``)."""
        for _ in range(3):
            await asyncio.sleep(0)
        return self.events.empty()

    async def close(self) -> None:
        await self.engine.close()
