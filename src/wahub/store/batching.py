"""Batched writes: many callers' rows of one kind in one transaction and few statements.

Every database round trip costs a few hundred microseconds of CPU on each side (more on
a loaded machine), and a transaction is at least three (BEGIN, the work, COMMIT). The
hot writes (webhook deliveries, new messages) arrive from many concurrent callers, one
row each; written one transaction per caller, the round trips, not the work, are the
cost. A ``WriteBatcher`` collects the items that arrive while the previous batch is
being written and writes them together with set-wise statements (one multi-row INSERT
instead of one per row). Batches grow with load and stay at one item when idle.

Every caller still hears back only after the commit that holds its item (the
guarantee behind ``202``/``200``). If writing a batch fails for a reason other than an
outage, each item is written again on its own, so one bad item fails only its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import Connection as SyncConnection

from wahub.domain.errors import StoreUnavailable
from wahub.store.database import Database

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

MAX_BATCH = 512


class WriteBatcher(Generic[ItemT, ResultT]):
    """``await submit(item)`` writes ``item`` with whatever else is waiting.

    ``flush(conn, items)`` writes a batch inside the caller's transaction and returns
    one result per item, in order. It may run more than once for the same items (a
    failed batch is written again one item at a time), so it must only touch the
    database, never state outside the transaction.
    """

    def __init__(
        self,
        db: Database,
        flush: Callable[[SyncConnection, Sequence[ItemT]], Sequence[ResultT]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.db = db
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="batched-writes")
        return await done

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self.batches += 1
            self.items += len(batch)
            try:
                await self._write(batch)
            except BaseException as exc:
                # Cancelled (shutdown): nobody may wait forever.
                _fail(batch, exc)
                raise

    async def _write(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self.db.write(lambda conn: self._flush(conn, items))
        except StoreUnavailable as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            # One item spoiled the batch (a constraint, a bug): each on its own now, so
            # only that item's caller gets the error.
            await asyncio.gather(*(self._write_one(item, done) for item, done in batch))
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)

    async def _write_one(self, item: ItemT, done: asyncio.Future[ResultT]) -> None:
        try:
            (result,) = await self.db.write(lambda conn: self._flush(conn, [item]))
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(result)


def _fail(batch: Sequence[tuple[object, asyncio.Future[ResultT]]], exc: BaseException) -> None:
    for _, done in batch:
        if done.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(exc)
