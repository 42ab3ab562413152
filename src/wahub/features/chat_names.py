"""What is this chat called? Answered from the ``chats`` table, asking the provider at most
once per chat.

- ``name_of(chat_id)``: a stored name is a hit. On a miss, one call to the channel's chat
  directory (Periskope ``GET /chats/{id}``, the WHAPI group lookup); concurrent misses for
  one chat in this process share that call (single flight), and the answer is stored with
  ``name_source="provider"``. A failed or empty lookup is remembered for
  ``negative_ttl_s`` (or the provider's ``Retry-After``, if longer), so a dead provider
  is not asked again for every message; a 429 also pauses lookups on that channel.
  A provider outage never raises: the name is just ``None`` for now.
- ``refresh()``: page through every chat of every channel with a directory and store
  them all; answers the seed's ``{status, total_chats, newly_cached, already_cached}``.

Chats this module creates get no ``channel_id``: messaging sends a group's messages on
the group's own channel, and a directory-only channel (Periskope) cannot send.

Names learned elsewhere are stored through ``store.chat_names.learn_chat_name`` and win
by the precedence documented there: api > group_sync > profile > provider. A chat named
by any source is a hit, so a name from an inbound profile or a group sync saves the call.

People's names exist only in Periskope's directory; on WHAPI and the Cloud API they come
from inbound profiles, so those channels are never asked about a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from wahub.domain.errors import (
    NotFound,
    ProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.domain.phones import canonical_chat_id, is_group_chat
from wahub.providers import catalog
from wahub.providers.base import ChatDirectory, ChatInfo
from wahub.providers.registry import ProviderRegistry
from wahub.providers.spec import Capability
from wahub.store import channels as channel_q
from wahub.store import chat_names as q
from wahub.store.database import Connection, Database

log = logging.getLogger("wahub.chat_names")

REFRESH_PAGE: Final = 500
REFRESH_ATTEMPTS: Final = 4  # per page, for retryable errors
MAX_REFRESH_WAIT_S: Final = 30.0


@dataclass(slots=True)
class ChatNameStats:
    """Counters since the process started (exported at ``/metrics``)."""

    hits: int = 0
    misses: int = 0
    negative_hits: int = 0
    provider_calls: int = 0
    provider_failures: int = 0


@dataclass(frozen=True, slots=True)
class RefreshResult:
    total_chats: int
    newly_cached: int
    already_cached: int

    def as_seed(self) -> dict[str, Any]:
        """The seed's ``GET /refresh-cache`` body."""
        return {
            "status": "success",
            "total_chats": self.total_chats,
            "newly_cached": self.newly_cached,
            "already_cached": self.already_cached,
        }


class RefreshFailed(ProviderError):
    """A refresh stopped because a provider kept failing; what it stored is kept."""

    code = "provider_unavailable"


class ChatNames:
    def __init__(
        self,
        db: Database,
        providers: ProviderRegistry,
        *,
        negative_ttl_s: float = 60.0,
        default_region: str | None = None,
        refresh_attempts: int = REFRESH_ATTEMPTS,
        refresh_backoff_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.providers = providers
        self.negative_ttl_s = negative_ttl_s
        self.default_region = default_region
        self.refresh_attempts = refresh_attempts
        self.refresh_backoff_s = refresh_backoff_s
        self.max_refresh_wait_s = MAX_REFRESH_WAIT_S
        self.stats = ChatNameStats()
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._negative: dict[str, float] = {}  # chat id -> clock() until which we do not ask
        self._channel_paused: dict[str, float] = {}  # channel id -> clock() of its Retry-After

    # -- lookups -------------------------------------------------------------------------

    async def name_of(self, chat_id: str, channel_id: str | None = None) -> str | None:
        """The chat's name, or ``None`` when nobody knows it (yet). Raises
        ``ValidationError`` for something that is not a chat id or phone number."""
        entry = await self.entry(chat_id, channel_id)
        return None if entry is None else str(entry["name"])

    async def entry(self, chat_id: str, channel_id: str | None = None) -> dict[str, Any] | None:
        """The chat's stored row (``chat_id, name, name_source, name_updated_at,
        channel_id, kind``) once it has a name, else ``None``; a miss asks the provider
        as ``name_of`` says. A hit is one short read (one hop), the whole cost of a
        cached answer besides the request itself."""
        chat_id = canonical_chat_id(chat_id, default_region=self.default_region, field="chat_id")
        row = await self.db.read_one(functools.partial(q.get_chat_name_sync, chat_id=chat_id))
        if row is not None and row["name"]:
            self.stats.hits += 1
            return row
        self.stats.misses += 1
        task = self._inflight.get(chat_id)
        if task is None:
            if self._negative_cached(chat_id):
                self.stats.negative_hits += 1
                return None
            channel = channel_id or (row["channel_id"] if row is not None else None)
            task = asyncio.create_task(self._resolve(chat_id, channel), name="chat-name")
            self._inflight[chat_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(chat_id, None))
        # Shielded: a caller that gives up must not cancel the lookup the others share.
        return await asyncio.shield(task)

    def forget_failures(self) -> None:
        """Drop the negative cache and channel pauses (an operator fixed the provider)."""
        self._negative.clear()
        self._channel_paused.clear()

    def _negative_cached(self, chat_id: str) -> bool:
        until = self._negative.get(chat_id)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._negative[chat_id]
        return False

    def _remember_failure(self, chat_id: str, retry_after: float | None = None) -> None:
        self._negative[chat_id] = self._clock() + max(self.negative_ttl_s, retry_after or 0.0)
        if len(self._negative) > 100_000:
            # Bounded memory: forget the expired ones (a dead provider's chats stay).
            now = self._clock()
            self._negative = {k: v for k, v in self._negative.items() if v > now}

    async def _resolve(self, chat_id: str, channel_id: str | None) -> dict[str, Any] | None:
        # Read again inside the single flight: a lookup that finished a moment ago has
        # stored the name, and this one must not ask the provider a second time.
        async with self.db.read() as conn:
            row = await q.get_chat_name(conn, chat_id)
            channel = await self._pick_channel(conn, chat_id, channel_id)
        if row is not None and row["name"]:
            return row
        if self._negative_cached(chat_id):
            self.stats.negative_hits += 1
            return None
        if channel is None:
            self._remember_failure(chat_id)
            return None
        paused_until = self._channel_paused.get(channel["id"], 0.0)
        if paused_until > self._clock():
            self.stats.negative_hits += 1
            return None
        directory = self.providers.chats_for_channel(channel)
        self.stats.provider_calls += 1
        try:
            info = await directory.get_chat(chat_id)
        except NotFound:
            self._remember_failure(chat_id)
            return None
        except ProviderError as exc:
            self.stats.provider_failures += 1
            self._remember_failure(chat_id, exc.retry_after)
            if isinstance(exc, RetryableProviderError) and exc.retry_after:
                self._channel_paused[channel["id"]] = self._clock() + exc.retry_after
            log.warning("chat name lookup for %s failed: %s", chat_id, exc.message)
            return None
        now = time.time()
        await self.db.write(
            lambda conn: q.learn_chat_names_sync(
                conn,
                [q.LearnedName(chat_id, info.name, info.kind)],
                source="provider",
                now=now,
            )
        )
        if not info.name:
            self._remember_failure(chat_id)
            return None
        stored = await self.db.read_one(functools.partial(q.get_chat_name_sync, chat_id=chat_id))
        # A higher-ranked source may have named the chat while we asked: theirs wins.
        if stored is not None and stored["name"]:
            return stored
        return {
            "chat_id": chat_id,
            "name": info.name,
            "name_source": "provider",
            "name_updated_at": now,
            "channel_id": channel["id"],
            "kind": info.kind,
        }

    async def _pick_channel(
        self, conn: Connection, chat_id: str, channel_id: str | None
    ) -> dict[str, Any] | None:
        """The channel to ask: the one given (or the chat's), when it can name this chat;
        otherwise the first channel with a directory that can."""
        if channel_id is not None:
            channel = await channel_q.get_channel(conn, channel_id)
            if channel is not None and _can_name(channel, chat_id):
                return channel
        for channel in await channel_q.list_channels(conn):
            if _can_name(channel, chat_id):
                return channel
        return None

    # -- refresh -------------------------------------------------------------------------

    async def refresh(self, channel_id: str | None = None) -> RefreshResult:
        """Fetch every chat from the directory of ``channel_id`` (or of every channel
        that has one) and store them. Raises ``NotFound`` for an unknown channel,
        ``ValidationError`` for a channel without a directory (or none at all), and
        ``RefreshFailed`` when a page keeps failing (pages stored so far are kept)."""
        async with self.db.read() as conn:
            if channel_id is not None:
                channel = await channel_q.get_channel(conn, channel_id)
                if channel is None:
                    raise NotFound(f"no channel {channel_id}")
                channels = [channel]
            else:
                able = catalog.kinds_with(Capability.CHATS)
                channels = [c for c in await channel_q.list_channels(conn) if c["kind"] in able]
        if not channels:
            raise ValidationError(
                "no channel has a chat directory: add a periskope (or whapi) channel first",
                details={"field": "channel_id"},
            )
        total = newly = already = 0
        seen: set[str] = set()
        for channel in channels:
            directory = self.providers.chats_for_channel(channel)
            offset = 0
            while True:
                page = await self._page(directory, channel, offset)
                fresh = [c for c in page.chats if c.chat_id not in seen]
                seen.update(c.chat_id for c in fresh)
                if fresh:
                    counts = await self._store_page(fresh)
                    total += len(fresh)
                    newly += counts.newly_named
                    already += counts.already_named
                    for chat in fresh:
                        if chat.name:
                            self._negative.pop(chat.chat_id, None)
                offset += len(page.chats)
                if not page.chats or (page.total is not None and offset >= page.total):
                    break
        return RefreshResult(total, newly, already)

    async def _page(self, directory: ChatDirectory, channel: dict[str, Any], offset: int) -> Any:
        delay = self.refresh_backoff_s
        for attempt in range(1, self.refresh_attempts + 1):
            self.stats.provider_calls += 1
            try:
                return await directory.list_chats(offset=offset, limit=REFRESH_PAGE)
            except RetryableProviderError as exc:
                self.stats.provider_failures += 1
                if attempt == self.refresh_attempts:
                    raise RefreshFailed(
                        f"chat refresh of channel {channel['id']} stopped at offset {offset}: "
                        f"{exc.message}",
                        http_status=exc.http_status,
                        details={"channel_id": channel["id"], "offset": offset},
                    ) from exc
                await asyncio.sleep(min(exc.retry_after or delay, self.max_refresh_wait_s))
                delay *= 2
            except ProviderError as exc:
                self.stats.provider_failures += 1
                raise RefreshFailed(
                    f"chat refresh of channel {channel['id']} failed: {exc.message}",
                    http_status=exc.http_status,
                    details={"channel_id": channel["id"], "offset": offset},
                ) from exc
        raise AssertionError("unreachable")

    async def _store_page(self, chats: list[ChatInfo]) -> q.LearnCounts:
        now = time.time()
        learned = [q.LearnedName(c.chat_id, c.name, c.kind) for c in chats]
        return await self.db.write(
            lambda conn: q.learn_chat_names_sync(conn, learned, source="provider", now=now)
        )

    # -- warm on start -------------------------------------------------------------------

    async def warm(self) -> None:
        """``refresh()`` for ``WAHUB_CACHE_ON_STARTUP``: in the background, logged, never
        raising (a provider outage at start must not take the server down)."""
        try:
            result = await self.refresh()
        except asyncio.CancelledError:
            raise
        except ValidationError as exc:
            log.info("chat-name cache not warmed: %s", exc.message)
        except Exception as exc:
            log.warning("chat-name cache warm-up failed: %s", getattr(exc, "message", exc))
        else:
            log.info("chat-name cache warmed: %s", result.as_seed())

    async def close(self) -> None:
        """Cancel lookups still in flight (on shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _can_name(channel: dict[str, Any], chat_id: str) -> bool:
    """Whether the channel's provider declares a chat directory that knows this chat's
    kind (some name groups only)."""
    spec = catalog.spec_for(channel["kind"])
    if spec is None or not spec.supports(Capability.CHATS):
        return False
    return spec.names_people or is_group_chat(chat_id)
