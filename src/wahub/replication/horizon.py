"""How far the log may be read without skipping a change that has not committed yet.

On PostgreSQL, seq numbers are drawn when a change is written, not when it commits: a
transaction holding seq 10 may commit after another's seq 11 is visible. A cursor that
moved past 11 would never see 10. So shippers read only up to a horizon below which
every change is final (committed or rolled back):

1. read L, the last seq any transaction has drawn (the sequence, not the table);
2. then take a fresh transaction id X (a tiny transaction of our own). Ids are handed
   out in order, and every transaction that drew a seq <= L had its id before that
   (the capture trigger runs after the row write that assigns it), so its id is < X;
3. once a later snapshot's xmin (the oldest transaction still running) reaches X,
   all of those transactions have finished: every seq <= L is final.

(A snapshot's xmax is not enough for step 2: it is the newest *finished* id plus one,
and a transaction that took its id later but is still running is below no xmax.)

Each poll that finds new seqs records (L, X) and advances the horizon to the newest
L whose X the current xmin has reached, so under steady traffic the horizon trails by
one poll. A transaction left open (on any database of the same server: transaction ids are
cluster-wide) holds the horizon back until it ends: that is a delay, never a loss.

On SQLite there is one writer at a time, so seq order is commit order: no horizon.
"""

from __future__ import annotations

from wahub.store import changelog as q
from wahub.store.database import Database

MAX_CANDIDATES = 64


class CommitHorizon:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._candidates: list[tuple[int, int]] = []  # (seq drawn, an id taken after it)
        self._last_drawn = 0
        self._safe = 0

    async def current(self) -> int | None:
        """The highest seq below which every change is final; None: no bound (SQLite)."""
        if self.db.is_sqlite:
            return None
        async with self.db.read() as conn:
            drawn = await conn.run_sync(q.pg_sequence_position_sync)
            xmin = await conn.run_sync(q.pg_snapshot_xmin_sync)
        final = [seq for seq, xid in self._candidates if xid <= xmin]
        self._candidates = [(s, x) for s, x in self._candidates if x > xmin]
        if final:
            self._safe = max(self._safe, *final)
        if drawn > self._last_drawn:
            # Only when there are new seqs: an idle log costs no transaction ids.
            async with self.db.transaction() as conn:
                xid = await conn.run_sync(q.pg_new_xid_sync)
            self._candidates.append((drawn, xid))
            self._last_drawn = drawn
            if len(self._candidates) > MAX_CANDIDATES:
                # Fewer candidates only make the horizon more cautious, never wrong.
                self._candidates = self._candidates[1::2]
        return self._safe
