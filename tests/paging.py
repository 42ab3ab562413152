"""Reading a whole provider directory the way a caller pages through it
(``GroupDirectory.list_groups``, ``ChatDirectory.list_chats``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound="Page")


class Page(Protocol):
    @property
    def offset(self) -> int: ...

    @property
    def total(self) -> int | None: ...


async def every_item(
    fetch: Callable[[int], Awaitable[P]], items: Callable[[P], Sequence[T]]
) -> list[T]:
    """Everything ``fetch(offset)`` pages hold, from offset 0 until an empty page or the
    page's ``total``; asserts that each page says it starts where it was asked to."""
    collected: list[T] = []
    offset = 0
    while True:
        page = await fetch(offset)
        assert page.offset == offset
        found = items(page)
        collected.extend(found)
        offset += len(found)
        if not found or (page.total is not None and offset >= page.total):
            return collected
