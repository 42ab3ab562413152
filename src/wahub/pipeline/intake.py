"""Webhook intake: store a provider delivery durably before we answer 200.

Meta sends one status per request, three per message; a transaction per delivery would
make the round trips and the commit, not the work, the bottleneck. Deliveries arriving
together are written as one multi-row INSERT in one transaction (``WriteBatcher``), and
each request is answered only after the commit that holds its row (DESIGN invariant 9).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wahub.store import inbox as inbox_q
from wahub.store.batching import WriteBatcher
from wahub.store.database import Database


class WebhookIntake:
    def __init__(self, db: Database, *, on_stored: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_stored = on_stored or (lambda: None)
        self._batcher: WriteBatcher[inbox_q.NewDelivery, bool] = WriteBatcher(
            db, inbox_q.store_deliveries_sync
        )

    async def store(
        self, *, provider: str, dedupe_key: str, headers: dict[str, str], body: bytes
    ) -> bool:
        """Return once the delivery is committed; False when it was a duplicate.

        Raises whatever the database raised (StoreUnavailable when it is away), so the
        caller answers 5xx and the provider retries.
        """
        stored = await self._batcher.submit(
            inbox_q.NewDelivery(provider, dedupe_key, headers, body, time.time())
        )
        if stored:
            self.on_stored()
        return stored
