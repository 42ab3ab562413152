"""Group directories: syncing groups' members from providers, lookup by phone, cache health.

Sync never makes things worse: a group's members are replaced in one transaction only
after the provider answered; a failed fetch keeps the last good members and records
why it failed. Fetches are paced per channel (a token bucket shared by every group of
the channel) and a 429 pauses the whole channel for the ``Retry-After`` it asked for,
then retries, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from wahub.domain.actors import Actor
from wahub.domain.errors import (
    NotFound,
    ProviderError,
    RetryableProviderError,
    StoreUnavailable,
    ValidationError,
    WahubError,
)
from wahub.domain.phones import PhoneForms, group_chat_id, member_phone, phone_lookup_forms
from wahub.features.access import AccessControl
from wahub.pipeline.pacing import TokenBucket
from wahub.providers.base import GroupDirectory, GroupInfo, GroupPage
from wahub.store import accounts as accounts_q
from wahub.store import channels as channels_q
from wahub.store import groups as q
from wahub.store.database import Database

log = logging.getLogger("wahub.groups")

T = TypeVar("T")

DirectoryFor = Callable[[dict[str, Any]], GroupDirectory]
"""Builds the group directory of a channel row; raises ValidationError when the
channel's provider has none."""

RANKS = frozenset({"creator", "admin", "member"})
LID_BATCH = 50  # phones per linked-id question
_LID_RE = re.compile(r"^[0-9]{1,30}@lid$")
PAGE_SIZE = 100


@runtime_checkable
class LinkedIdSource(Protocol):
    """A directory that can tell the linked ids of phones (WHAPI's ``GET /contacts/lids``).
    Maps each phone asked (as given) to its ``...@lid``; unknown phones are left out."""

    async def lids_for(self, phones: Sequence[str]) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class GroupSyncResult:
    chat_id: str
    status: str  # success | failed
    members: int = 0  # members stored by this sync (0 when it failed)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass(frozen=True, slots=True)
class AccountSyncResult:
    account_id: str
    account_name: str
    status: str  # success when every group of the account synced, else failed
    members_synced: int
    groups: tuple[GroupSyncResult, ...]


@dataclass(slots=True)
class SyncReport:
    groups: list[GroupSyncResult] = field(default_factory=list)
    accounts: list[AccountSyncResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures not tied to one group

    @property
    def success_count(self) -> int:
        return sum(1 for g in self.groups if g.ok)

    @property
    def fail_count(self) -> int:
        return len(self.groups) - self.success_count


class SyncProgress:
    """Hooks a caller (the CLI's progress bar) passes to follow a sync. No-ops here."""

    def started(self, total: int | None) -> None:
        """Called once the number of groups to sync is known (None: not known yet)."""

    def advanced(self, result: GroupSyncResult) -> None:
        """Called after each group."""


def members_of(info: GroupInfo) -> list[q.Member]:
    """A provider's participant list as rows to store: one per person.

    A participant reported twice (by phone and by linked id) is one member, with the
    higher rank; a participant with neither a usable phone nor a linked id is dropped.
    """
    phone_of_lid = {
        lid: phone
        for p in info.participants
        if (lid := _lid(p.lid)) is not None and (phone := member_phone(p.phone)) is not None
    }
    by_key: dict[str, q.Member] = {}
    lids_taken: set[str] = set()
    for p in info.participants:
        lid = _lid(p.lid)
        phone = member_phone(p.phone) or (phone_of_lid.get(lid) if lid else None)
        key = phone or lid
        if key is None:
            continue
        rank = p.rank.lower() if p.rank.lower() in RANKS else "member"
        kept = by_key.get(key)
        if kept is not None:
            higher = rank if q.RANK_ORDER[rank] < q.RANK_ORDER[kept.rank] else kept.rank
            by_key[key] = q.Member(kept.phone, kept.lid or _free(lid, lids_taken), higher)
            continue
        by_key[key] = q.Member(phone, _free(lid, lids_taken), rank)
    return list(by_key.values())


def _free(lid: str | None, taken: set[str]) -> str | None:
    # A linked id names one person: never store it on two members of one group.
    if lid is None or lid in taken:
        return None
    taken.add(lid)
    return lid


def _lid(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit():
        text += "@lid"
    return text if _LID_RE.match(text) else None


class GroupSync:
    """Fetches groups from their channel's directory and stores their members."""

    def __init__(
        self,
        db: Database,
        directory_for: DirectoryFor,
        *,
        rate_per_second: float = 2.0,
        burst: float = 5.0,
        max_attempts: int = 5,
        max_retry_wait: float = 120.0,
        concurrency: int = 4,
        max_lid_questions: int = 1000,
    ) -> None:
        self.db = db
        self.directory_for = directory_for
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self.concurrency = concurrency
        self.max_lid_questions = max_lid_questions
        self._buckets: dict[str, TokenBucket] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- entry points ----------------------------------------------------------------

    async def sync_groups(
        self, chat_ids: Sequence[str], *, progress: SyncProgress | None = None
    ) -> list[GroupSyncResult]:
        """Sync each group once, the rest going on when one fails. Results in input order."""
        progress = progress or SyncProgress()
        unique = list(dict.fromkeys(chat_ids))
        progress.started(len(unique))
        directories = await self._directories_for(unique)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(chat_id: str) -> GroupSyncResult:
            async with gate:
                result = await self._sync_one(chat_id, directories[chat_id])
            progress.advanced(result)
            return result

        results = list(await asyncio.gather(*(one(c) for c in unique)))
        used = {d for d in directories.values() if not isinstance(d, str)}
        await self._resolve_linked_ids({channel_id: source for channel_id, source in used})
        return results

    async def sync_accounts(
        self, account_id: str | None = None, *, progress: SyncProgress | None = None
    ) -> SyncReport:
        """Sync the groups of one account, or of every account that has a group.

        Raises NotFound for an unknown account, ValidationError for one without a group.
        """
        async with self.db.read() as conn:
            linked = await accounts_q.accounts_chats(conn, account_id)
            if account_id is not None and not linked:
                if await accounts_q.get_account(conn, account_id) is None:
                    raise NotFound(f"no account {account_id}")
                raise ValidationError(
                    f"account_id: account {account_id} has no group to sync",
                    details={"field": "account_id", "value": account_id},
                )
        chat_ids = [c for _, chats in linked for c in chats]
        results = {r.chat_id: r for r in await self.sync_groups(chat_ids, progress=progress)}
        report = SyncReport(groups=list(results.values()))
        for account, chats in linked:
            groups = tuple(results[c] for c in chats)
            report.accounts.append(
                AccountSyncResult(
                    account_id=account["id"],
                    account_name=account["name"],
                    status="success" if all(g.ok for g in groups) else "failed",
                    members_synced=sum(g.members for g in groups),
                    groups=groups,
                )
            )
        return report

    async def sync_directory(
        self, channel_id: str | None = None, *, progress: SyncProgress | None = None
    ) -> SyncReport:
        """Store every group a channel's directory lists (all channels with a directory
        when ``channel_id`` is None), page by page: one listing call per page of groups."""
        progress = progress or SyncProgress()
        async with self.db.read() as conn:
            rows = await channels_q.list_channels(conn)
        if channel_id is not None:
            rows = [c for c in rows if c["id"] == channel_id]
            if not rows:
                raise NotFound(f"no channel {channel_id}")
            self.directory_for(rows[0])  # raises ValidationError when it has no directory
        report = SyncReport()
        directories = self._capable(rows)
        progress.started(None)
        total = 0
        for channel, directory in directories:
            offset = 0
            while True:
                try:
                    page = await self._paced(
                        channel["id"],
                        functools.partial(directory.list_groups, offset=offset, count=PAGE_SIZE),
                    )
                except ProviderError as exc:
                    report.errors.append(f"channel {channel['id']}: listing groups failed: {exc}")
                    break
                if offset == 0:
                    total += page.total
                    progress.started(total)
                for result in await self._store_page(channel["id"], page):
                    report.groups.append(result)
                    progress.advanced(result)
                offset += len(page.groups)
                if not page.groups or offset >= page.total:
                    break
        await self._resolve_linked_ids({c["id"]: d for c, d in directories})
        return report

    def sync_in_background(self, chat_ids: Sequence[str]) -> None:
        """Start syncing ``chat_ids`` and return at once. A sync cut short (process
        stopped) leaves the groups ``pending`` for the next scheduled sync."""
        if not chat_ids:
            return
        task = asyncio.create_task(self._sync_quietly(list(chat_ids)), name="group-sync")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the background syncs started so far."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Cancel background syncs (stopping the process)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- one group -------------------------------------------------------------------

    async def _sync_quietly(self, chat_ids: list[str]) -> None:
        try:
            results = await self.sync_groups(chat_ids)
        except Exception:
            log.exception("background sync of %d group(s) failed", len(chat_ids))
            return
        for r in results:
            if not r.ok:
                log.warning("group %s sync failed: %s", r.chat_id, r.error)

    async def _sync_one(
        self, chat_id: str, directory: tuple[str, GroupDirectory] | str
    ) -> GroupSyncResult:
        if isinstance(directory, str):  # no directory: the reason why
            return await self._failed(chat_id, directory)
        channel_id, source = directory
        try:
            info = await self._paced(channel_id, functools.partial(source.get_group, chat_id))
        except NotFound as exc:
            return await self._failed(chat_id, f"provider: {exc.message}", gone=True)
        except RetryableProviderError as exc:
            return await self._failed(chat_id, f"provider still refusing after retries: {exc}")
        except ProviderError as exc:
            return await self._failed(chat_id, f"provider: {exc.message}")
        except StoreUnavailable:
            raise
        except WahubError as exc:
            return await self._failed(chat_id, exc.message)
        except Exception as exc:
            # One group's unexpected failure must not stop the others. The message may
            # hold provider details we do not want stored; the log has the traceback.
            log.exception("fetching group %s failed", chat_id)
            return await self._failed(chat_id, f"unexpected error ({type(exc).__name__})")
        if info.chat_id != chat_id:
            return await self._failed(
                chat_id, f"provider answered for another group ({info.chat_id})"
            )
        fetched = self._fetched(channel_id, info)
        count = await self.db.write(
            lambda conn: q.store_fetched_group_sync(conn, fetched, time.time())
        )
        return GroupSyncResult(chat_id, "success", count)

    async def _store_page(self, channel_id: str, page: GroupPage) -> list[GroupSyncResult]:
        fetched: list[q.FetchedGroup] = []
        results: list[GroupSyncResult] = []
        for info in page.groups:
            try:
                chat_id = group_chat_id(info.chat_id, field="chat_id")
            except ValidationError as exc:
                results.append(GroupSyncResult(info.chat_id, "failed", error=exc.message))
                continue
            fetched.append(self._fetched(channel_id, info, chat_id))

        def store(conn: Any) -> list[int]:
            now = time.time()
            return [q.store_fetched_group_sync(conn, g, now) for g in fetched]

        counts = await self.db.write(store) if fetched else []
        results.extend(
            GroupSyncResult(g.chat_id, "success", n) for g, n in zip(fetched, counts, strict=True)
        )
        return results

    def _fetched(
        self, channel_id: str, info: GroupInfo, chat_id: str | None = None
    ) -> q.FetchedGroup:
        return q.FetchedGroup(
            chat_id=chat_id or info.chat_id,
            channel_id=channel_id,
            name=info.name,
            readonly=not info.we_are_member,
            members=members_of(info),
        )

    async def _failed(self, chat_id: str, error: str, *, gone: bool = False) -> GroupSyncResult:
        await self.db.write(
            lambda conn: q.record_sync_failure_sync(conn, chat_id, error, time.time(), gone=gone)
        )
        return GroupSyncResult(chat_id, "failed", error=error)

    async def _paced(self, channel_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` within the channel's pace, retrying throttling (429, 5xx) a bounded
        number of times. The wait a provider asks for pauses the whole channel."""
        bucket = self._buckets.get(channel_id)
        if bucket is None:
            bucket = self._buckets[channel_id] = TokenBucket(self.rate_per_second, self.burst)
        attempt = 1
        while True:
            await bucket.acquire()
            try:
                return await call()
            except RetryableProviderError as exc:
                wait = exc.retry_after if exc.retry_after is not None else 2.0 ** (attempt - 1)
                if attempt >= self.max_attempts or wait > self.max_retry_wait:
                    raise
                log.info("channel %s throttled; pausing %.1fs", channel_id, wait)
                bucket.pause(wait)
                attempt += 1

    # -- linked ids ------------------------------------------------------------------

    async def _resolve_linked_ids(self, directories: dict[str, GroupDirectory]) -> None:
        """Ask each channel's provider for the linked ids of the phones we know, when a
        group of the channel has a member known only by a linked id we cannot resolve.

        WHAPI shows a participant either by phone or by linked id, never both, so this
        is how a member hidden behind a linked id becomes findable by phone. At most
        ``max_lid_questions`` phones per channel and sync; a failure here is logged and
        never fails the sync.
        """
        for channel_id, directory in directories.items():
            if not isinstance(directory, LinkedIdSource):
                continue
            try:
                async with self.db.read() as conn:
                    if not await q.has_unresolved_lids(conn, channel_id):
                        continue
                    phones = await q.phones_without_lid(
                        conn, channel_id, limit=self.max_lid_questions
                    )
                for start in range(0, len(phones), LID_BATCH):
                    batch = phones[start : start + LID_BATCH]
                    found = await self._paced(
                        channel_id, functools.partial(directory.lids_for, batch)
                    )
                    pairs = {
                        (lid, phone)
                        for asked, lid in found.items()
                        if (phone := member_phone(asked)) is not None and _lid(lid)
                    }
                    await self.db.write(
                        functools.partial(
                            q.upsert_lid_links_sync,
                            pairs=pairs,
                            source="provider-lids",
                            now=time.time(),
                        )
                    )
            except StoreUnavailable:
                raise
            except Exception:
                log.warning("resolving linked ids on channel %s failed", channel_id, exc_info=True)

    # -- which directory answers for a group -----------------------------------------

    def _capable(
        self, channels: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], GroupDirectory]]:
        found = []
        for channel in channels:
            try:
                found.append((channel, self.directory_for(channel)))
            except ValidationError:
                continue  # this provider has no group directory
        return found

    async def _directories_for(
        self, chat_ids: list[str]
    ) -> dict[str, tuple[str, GroupDirectory] | str]:
        """Each group's (channel id, directory), or why there is none."""
        async with self.db.read() as conn:
            owners = await q.group_chat_channels(conn, chat_ids)
            channels = await channels_q.list_channels(conn)
        by_id = {c["id"]: c for c in channels}
        capable = self._capable(channels)
        found: dict[str, tuple[str, GroupDirectory] | str] = {}
        for chat_id in chat_ids:
            if chat_id not in owners:
                found[chat_id] = f"unknown group {chat_id}"
                continue
            channel_id = owners[chat_id]
            if channel_id is None:
                if len(capable) == 1:
                    found[chat_id] = (capable[0][0]["id"], capable[0][1])
                elif not capable:
                    found[chat_id] = "no channel with a group directory (add a WHAPI channel)"
                else:
                    found[chat_id] = (
                        "the group has no channel and several channels have a group "
                        "directory: register the group with its channel_id"
                    )
                continue
            try:
                found[chat_id] = (channel_id, self.directory_for(by_id[channel_id]))
            except ValidationError as exc:
                found[chat_id] = f"channel {channel_id}: {exc.message}"
        return found


@dataclass(frozen=True, slots=True)
class LookupResult:
    phone: PhoneForms
    matches: list[dict[str, Any]]


class GroupCache:
    """Reads of the synced groups: lookup by phone, members, health; and cleanup."""

    def __init__(
        self,
        db: Database,
        access: AccessControl,
        *,
        default_region: str | None = None,
        stale_after_seconds: float = 24 * 3600.0,
    ) -> None:
        self.db = db
        self.access = access
        self.default_region = default_region
        self.stale_after_seconds = stale_after_seconds

    async def lookup(self, phone: str, *, field: str = "phone") -> LookupResult:
        """Accounts whose groups have ``phone`` as a member (any form it may be stored
        under, or a linked id resolved to it). Raises ValidationError naming ``field``."""
        forms = phone_lookup_forms(phone, default_region=self.default_region, field=field)
        matches = await self.db.read_one(
            functools.partial(q.lookup_by_phone_sync, forms=forms.forms)
        )
        return LookupResult(forms, matches)

    async def members(self, actor: Actor, raw_chat_id: str) -> tuple[dict[str, Any], list[Any]]:
        """A group and its cached members. NotFound also when an agent may not see it."""
        chat_id = group_chat_id(raw_chat_id, field="chat_id")
        visible = await self.access.visible_chat_ids(actor)
        async with self.db.read() as conn:
            chat = await channels_q.get_chat(conn, chat_id)
            members = await q.list_members(conn, chat_id) if chat is not None else []
        if chat is None or (visible is not None and chat_id not in visible):
            raise NotFound(f"no group {chat_id}")
        return chat, members

    async def health(self) -> dict[str, Any]:
        async with self.db.read() as conn:
            figures = await q.cache_health(
                conn, now=time.time(), stale_after=self.stale_after_seconds
            )
        figures["stale_after_hours"] = self.stale_after_seconds / 3600
        return figures

    async def cleanup(self, *, older_than_seconds: float) -> dict[str, int]:
        """Remove the members of groups not synced for ``older_than_seconds`` and of
        groups the provider says are gone. See ``store.groups.remove_stale_members``."""
        if older_than_seconds <= 0:
            raise ValidationError("older_than must be positive", details={"field": "older_than"})
        cutoff = time.time() - older_than_seconds
        return await self.db.write(lambda conn: q.remove_stale_members_sync(conn, cutoff=cutoff))
