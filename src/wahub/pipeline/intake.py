"""Webhook intake: store a provider delivery durably before we answer 200.

Meta sends one status per request, three per message; committing each in its own
transaction would make the commit, not the work, the bottleneck. ``Database.write``
group-commits: deliveries arriving together share one transaction, and each request is
answered only after the commit that holds its row (DESIGN invariant 9).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wahub.store import inbox as inbox_q
from wahub.store.database import Database


class WebhookIntake:
    def __init__(self, db: Database, *, on_stored: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_stored = on_stored or (lambda: None)

    async def store(
        self, *, provider: str, dedupe_key: str, headers: dict[str, str], body: bytes
    ) -> bool:
        """Return once the delivery is committed; False when it was a duplicate.

        Raises whatever the database raised (StoreUnavailable when it is away), so the
        caller answers 5xx and the provider retries.
        """
        now = time.time()
        stored = await self.db.write(
            lambda conn: inbox_q.store_delivery_sync(
                conn,
                provider=provider,
                dedupe_key=dedupe_key,
                headers=headers,
                body=body,
                now=now,
            )
        )
        if stored:
            self.on_stored()
        return stored
