"""The send loop of the session process: the outbox worker, restricted to the web
channels whose session this process holds and that are ``working`` now.

Messages of a session that is not working are not claimed, so they wait, queued (they
are not failed); they go once the session works again, in this process or in the one
that takes the phone over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wahub.config import Settings
from wahub.pipeline.outbox import OutboxWorker
from wahub.pipeline.wakeup import Wakeup
from wahub.providers.registry import ProviderRegistry
from wahub.store import channels as channel_q
from wahub.store.database import Database


class SessionSender(OutboxWorker):
    """Sends for the channels ``sendable()`` names (re-read every second)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        providers: ProviderRegistry,
        wakeup: Wakeup,
        *,
        sendable: Callable[[], set[str]],
        worker_id: str,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(db, settings, providers, wakeup, worker_id=worker_id, on_change=on_change)
        self._sendable = sendable

    async def _take_channels(self) -> dict[str, dict[str, Any]]:
        # The session leases (store/sessions.py) are the ownership: no channel lease.
        wanted = self._sendable()
        if not wanted:
            return {}
        async with self.db.read() as conn:
            return {
                c["id"]: c
                for c in await channel_q.list_channels(conn, include_removed=True)
                # A paused channel's messages wait, queued, as they do for workers.
                if c["id"] in wanted and not c["paused"]
            }
