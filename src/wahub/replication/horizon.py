"""How far the log may be read without skipping a change that has not committed yet.

On PostgreSQL, seq numbers are drawn when a change is written, not when it commits: a
transaction holding seq 10 may commit after another's seq 11 is visible. A cursor that
moved past 11 would never see 10. So shippers read only up to a horizon below which
every change is final (committed or rolled back):

1. read L, the last seq any transaction has drawn (the sequence, not the table);
2. then take a snapshot: xmax is the first transaction id not yet started. Every
   transaction that drew a seq <= L did so before step 2, so its id is below xmax
   (the capture trigger runs after the row write that assigned the id);
3. once a later snapshot's xmin (the oldest transaction still running) reaches that
   xmax, all of those transactions have finished: every seq <= L is final.

Each poll records (L, xmax) and advances the horizon to the newest L whose xmax the
current xmin has passed, so under steady traffic the horizon trails by one poll. A
transaction left open (on any database of the same server: transaction ids are
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
        self._candidates: list[tuple[int, int]] = []  # (seq drawn, xmax after it)
        self._safe = 0

    async def current(self) -> int | None:
        """The highest seq below which every change is final; None: no bound (SQLite)."""
        if self.db.is_sqlite:
            return None
        async with self.db.read() as conn:
            # Two statements, so the snapshot (READ COMMITTED: one per statement) is
            # taken after the sequence was read.
            drawn = await conn.run_sync(q.pg_sequence_position_sync)
            xmin, xmax = await conn.run_sync(q.pg_snapshot_bounds_sync)
        self._candidates.append((drawn, xmax))
        final = [seq for seq, bound in self._candidates if bound <= xmin]
        self._candidates = [(s, b) for s, b in self._candidates if b > xmin]
        if len(self._candidates) > MAX_CANDIDATES:
            # Fewer candidates only make the horizon more cautious, never wrong.
            self._candidates = self._candidates[::2]
        if final:
            self._safe = max(self._safe, *final)
        return self._safe
