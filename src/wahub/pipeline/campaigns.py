"""The campaign dispatcher: queues running campaigns' recipients into the outbox in
chunks, next to the send workers (``Hub.start(workers=True)``).

It holds no state of its own: what is left to queue is the recipients still
``pending``, so a dispatcher that crashes or a second one in another process simply
continues where the database says (see ``wahub.features.campaigns`` for why that never
sends twice).
"""

from __future__ import annotations

import logging

from wahub.domain.errors import WahubError
from wahub.features.campaigns import Campaigns
from wahub.pipeline.wakeup import Wakeup

log = logging.getLogger("wahub.campaigns")


class CampaignDispatcher:
    def __init__(self, campaigns: Campaigns, wakeup: Wakeup, *, poll_seconds: float = 1.0) -> None:
        self.campaigns = campaigns
        self.wakeup = wakeup
        self.poll_seconds = poll_seconds
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        self.wakeup.notify()

    async def run(self) -> None:
        while not self._stopped:
            try:
                settled = await self.campaigns.dispatch_due()
            except WahubError as exc:
                # A busy or unreachable database, or a chunk rolled back: the recipients
                # are still pending, the next pass takes them.
                log.warning("campaign dispatch failed: %s", exc.message)
                settled = 0
            except Exception:
                log.exception("campaign dispatch failed")
                settled = 0
            if settled == 0:
                # Nothing was queued (no campaign due, or each waits for its backlog
                # to drain): poll, or wake early when a campaign is started.
                await self.wakeup.wait(self.poll_seconds)
