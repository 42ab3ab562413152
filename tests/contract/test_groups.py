"""Groups on every store backend: sync that never makes things worse, linked ids, lookup
by phone, accounts, health and cleanup, and cron slots run once.

The provider side is ``ListedDirectory``, an in-memory implementation of our own
``GroupDirectory`` port (like httpx's MockTransport): the WHAPI adapter is tested
against the sandbox over HTTP elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from phone_spellings import documented_spellings, reported_phones, spaced
from wahub.domain.content import SendRequest
from wahub.domain.errors import (
    ConflictError,
    NotFound,
    PermanentProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.domain.phones import member_phone
from wahub.features.accounts import Accounts
from wahub.features.groups import GroupCache, GroupSync, members_of
from wahub.pipeline.scheduler import PeriodicJob, Scheduler
from wahub.providers.base import GroupDirectory, GroupInfo, GroupPage, GroupParticipant
from wahub.store import channels as channels_q
from wahub.store import groups as q
from wahub.store.database import Database
from wahub.store.schema import chats, contacts, group_members, lid_links

if TYPE_CHECKING:
    from conftest import ContractEnv


G1 = "120363000000000101@g.us"
G2 = "120363000000000102@g.us"
G3 = "120363000000000103@g.us"
ALICE = "+4915111111111"
BOB = "+4915122222222"
CAROL = "+4915133333333"
CAROL_LID = "76699677012110@lid"


def person(phone: str | None, rank: str = "member", lid: str | None = None) -> GroupParticipant:
    return GroupParticipant(phone=phone, lid=lid, rank=rank)


def group(
    chat_id: str, *participants: GroupParticipant, name: str = "Band", member: bool = True
) -> GroupInfo:
    return GroupInfo(chat_id=chat_id, name=name, participants=participants, we_are_member=member)


class ListedDirectory:
    """A provider's group directory held in memory; ``failures`` makes the next fetches
    of a group raise (one exception per fetch, in order)."""

    def __init__(self, *groups: GroupInfo) -> None:
        self.groups = {g.chat_id: g for g in groups}
        self.failures: dict[str, list[Exception]] = {}
        self.fetches: list[str] = []

    async def list_groups(self, *, offset: int = 0, count: int = 100) -> GroupPage:
        listed = sorted(self.groups.values(), key=lambda g: g.chat_id)
        return GroupPage(tuple(listed[offset : offset + count]), len(listed), offset)

    async def get_group(self, chat_id: str) -> GroupInfo:
        self.fetches.append(chat_id)
        pending = self.failures.get(chat_id)
        if pending:
            raise pending.pop(0)
        if chat_id not in self.groups:
            raise NotFound(f"group {chat_id} not found")
        return self.groups[chat_id]


class DirectoryWithLids(ListedDirectory):
    """A directory that also tells phones' linked ids (like WHAPI's GET /contacts/lids)."""

    def __init__(self, *groups: GroupInfo, lids: dict[str, str]) -> None:
        super().__init__(*groups)
        self.lids = lids
        self.asked: list[list[str]] = []

    async def lids_for(self, phones: Sequence[str]) -> dict[str, str]:
        self.asked.append(list(phones))
        return {p: self.lids[p] for p in phones if p in self.lids}


def syncer(env: ContractEnv, directory: GroupDirectory, **options: Any) -> GroupSync:
    options.setdefault("rate_per_second", 1000.0)
    options.setdefault("burst", 1000.0)
    return GroupSync(env.db, lambda _channel: directory, **options)


async def register(env: ContractEnv, *chat_ids: str) -> None:
    for chat_id in chat_ids:
        await env.channels.register_group(chat_id=chat_id, name=None, channel_id=env.channel_id)


async def member_rows(env: ContractEnv, chat_id: str) -> list[tuple[str | None, str | None, str]]:
    async with env.db.read() as conn:
        rows = await q.list_members(conn, chat_id)
    return sorted((r["member_phone"], r["member_lid"], r["rank"]) for r in rows)


async def chat(env: ContractEnv, chat_id: str) -> dict[str, Any]:
    async with env.db.read() as conn:
        row = await channels_q.get_chat(conn, chat_id)
    assert row is not None, f"no chat row for {chat_id}"
    return row


def cache(env: ContractEnv) -> GroupCache:
    return GroupCache(env.db, env.access)


async def lookup(env: ContractEnv, phone: str) -> list[tuple[str, str, str]]:
    found = await cache(env).lookup(phone)
    return sorted((m["account_name"], m["chat_id"], m["rank"]) for m in found.matches)


async def account(env: ContractEnv, name: str, *groups: str) -> str:
    """An account linked to ``groups``. The sync its creation starts finds nothing (an
    empty directory) and is waited for, so it cannot race the test's own syncs."""
    sync = syncer(env, ListedDirectory())
    created = await Accounts(env.db, sync).create(name=name, group_ids=list(groups))
    await sync.drain()
    return str(created["id"])


# --- sync ---------------------------------------------------------------------------------


async def test_a_sync_stores_the_members_and_marks_the_group_synced(env: ContractEnv) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE, "creator"), person(BOB), name="Tour 2026"))
    before = time.time()

    [result] = await syncer(env, directory).sync_groups([G1])

    assert (result.status, result.members, result.error) == ("success", 2, None)
    assert await member_rows(env, G1) == [(ALICE, None, "creator"), (BOB, None, "member")]
    row = await chat(env, G1)
    assert row["name"] == "Tour 2026"
    assert row["sync_status"] == "success"
    assert row["sync_error"] is None
    assert row["last_synced_at"] >= before
    assert row["readonly"] is False
    assert row["is_active"] is True


async def test_a_second_sync_replaces_the_members(env: ContractEnv) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE), person(BOB)))
    sync = syncer(env, directory)
    await sync.sync_groups([G1])

    directory.groups[G1] = group(G1, person(BOB, "admin"), person(CAROL))
    await sync.sync_groups([G1])

    assert await member_rows(env, G1) == [(BOB, None, "admin"), (CAROL, None, "member")]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(
            PermanentProviderError("Unauthorized: bad token", http_status=401), id="permanent"
        ),
        pytest.param(RetryableProviderError("Too many requests", retry_after=0.01), id="throttled"),
    ],
)
async def test_a_failed_fetch_keeps_the_last_good_members_and_records_why(
    env: ContractEnv, failure: Exception
) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE), person(BOB)))
    sync = syncer(env, directory, max_attempts=2)
    await sync.sync_groups([G1])
    synced_at = (await chat(env, G1))["last_synced_at"]

    directory.failures[G1] = [failure, failure]
    [result] = await sync.sync_groups([G1])

    assert result.status == "failed"
    assert result.error is not None
    assert str(failure) in result.error
    assert await member_rows(env, G1) == [(ALICE, None, "member"), (BOB, None, "member")]
    row = await chat(env, G1)
    assert row["sync_status"] == "failed"
    assert str(failure) in row["sync_error"]
    assert row["last_synced_at"] == synced_at, "last_synced_at is the last successful sync"


async def test_a_group_the_provider_does_not_know_fails_and_the_others_go_on(
    env: ContractEnv,
) -> None:
    await register(env, G1, G2)
    directory = ListedDirectory(group(G1, person(ALICE)))

    results = await syncer(env, directory).sync_groups([G2, G1])

    assert [(r.chat_id, r.status) for r in results] == [(G2, "failed"), (G1, "success")]
    assert results[0].error is not None
    assert "not found" in results[0].error
    gone = await chat(env, G2)
    assert (gone["sync_status"], gone["is_active"]) == ("failed", False)
    assert "not found" in gone["sync_error"]
    assert await member_rows(env, G1) == [(ALICE, None, "member")]


async def test_throttling_is_retried_after_the_wait_the_provider_asked_for(
    env: ContractEnv,
) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE)))
    throttled = RetryableProviderError("429 Too Many Requests", retry_after=0.01)
    directory.failures[G1] = [throttled, throttled]

    [result] = await syncer(env, directory, max_attempts=3).sync_groups([G1])

    assert result.status == "success"
    assert directory.fetches == [G1, G1, G1]


async def test_a_wait_longer_than_allowed_is_not_waited_for(env: ContractEnv) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE)))
    directory.failures[G1] = [RetryableProviderError("slow down", retry_after=3600)]

    [result] = await syncer(env, directory, max_retry_wait=60).sync_groups([G1])

    assert result.status == "failed"
    assert directory.fetches == [G1], "no second attempt within the hour asked for"


async def test_replacing_members_is_one_transaction(env: ContractEnv) -> None:
    """A replacement that fails half-way (here: the same phone twice, which the unique
    index refuses after the delete ran) leaves the old members."""
    await register(env, G1)
    await syncer(env, ListedDirectory(group(G1, person(ALICE), person(BOB)))).sync_groups([G1])
    broken = q.FetchedGroup(
        chat_id=G1,
        channel_id=env.channel_id,
        name="renamed",
        readonly=False,
        members=[q.Member(CAROL, None, "member"), q.Member(CAROL, None, "admin")],
    )

    with pytest.raises(IntegrityError):
        await env.db.write(lambda conn: q.store_fetched_group_sync(conn, broken, time.time()))

    assert await member_rows(env, G1) == [(ALICE, None, "member"), (BOB, None, "member")]
    assert (await chat(env, G1))["name"] != "renamed"


async def test_a_group_we_left_becomes_readonly_and_sending_to_it_is_refused(
    env: ContractEnv,
) -> None:
    await register(env, G1)
    await syncer(env, ListedDirectory(group(G1, person(ALICE), member=False))).sync_groups([G1])

    assert (await chat(env, G1))["readonly"] is True
    request = SendRequest.model_validate(
        {"to": G1, "type": "text", "text": {"body": "hi"}, "channel_id": env.channel_id}
    )
    with pytest.raises(ValidationError, match="not a participant") as caught:
        await env.messaging.send(env.admin, request)
    assert caught.value.details["field"] == "to"


async def test_a_group_we_rejoined_can_be_sent_to_again(env: ContractEnv) -> None:
    await register(env, G1)
    directory = ListedDirectory(group(G1, person(ALICE), member=False))
    sync = syncer(env, directory)
    await sync.sync_groups([G1])

    directory.groups[G1] = group(G1, person(ALICE))
    await sync.sync_groups([G1])

    assert (await chat(env, G1))["readonly"] is False
    await env.send_text(G1)


async def test_a_group_without_a_channel_uses_the_only_channel_with_a_directory(
    env: ContractEnv,
) -> None:
    await env.channels.register_group(chat_id=G1, name=None, channel_id=None)

    [result] = await syncer(env, ListedDirectory(group(G1, person(ALICE)))).sync_groups([G1])

    assert result.status == "success"
    assert (await chat(env, G1))["channel_id"] == env.channel_id


async def test_a_channel_without_a_directory_fails_the_sync_saying_so(env: ContractEnv) -> None:
    await register(env, G1)

    def no_directory(channel: dict[str, Any]) -> GroupDirectory:
        raise ValidationError(f"channel kind {channel['kind']!r} has no group directory")

    [result] = await GroupSync(env.db, no_directory).sync_groups([G1])

    assert result.status == "failed"
    assert result.error is not None
    assert (
        result.error == f"channel {env.channel_id}: channel kind 'cloudapi' has no group directory"
    )


async def test_the_directory_sync_stores_every_listed_group_page_by_page(
    env: ContractEnv,
) -> None:
    listed = [
        group(f"120363{n:012d}@g.us", person(f"+49151{n:08d}"), name=f"G{n}") for n in range(230)
    ]
    report = await syncer(env, ListedDirectory(*listed)).sync_directory()

    assert (report.success_count, report.fail_count, report.errors) == (230, 0, [])
    last = await chat(env, listed[-1].chat_id)
    assert (last["kind"], last["channel_id"], last["name"]) == ("group", env.channel_id, "G229")
    assert await env.count(group_members) == 230


# --- linked ids ---------------------------------------------------------------------------


def test_a_participant_reported_by_phone_and_by_linked_id_is_one_member() -> None:
    info = group(
        G1,
        person(CAROL, "member", lid=CAROL_LID),
        person(None, "admin", lid=CAROL_LID),
        person(ALICE),
        person(ALICE, "creator"),
        person(None, lid="not-a-lid"),
    )

    members = sorted(members_of(info), key=lambda m: m.phone or "")

    assert members == [q.Member(ALICE, None, "creator"), q.Member(CAROL, CAROL_LID, "admin")]


async def test_a_member_stored_by_linked_id_is_found_once_any_group_reveals_the_phone(
    env: ContractEnv,
) -> None:
    await register(env, G1, G2)
    await account(env, "Hidden", G1)
    await account(env, "Open", G2)
    directory = ListedDirectory(group(G1, person(None, "admin", lid=CAROL_LID)))
    sync = syncer(env, directory)
    await sync.sync_groups([G1])
    assert await lookup(env, CAROL) == [], "nothing links the linked id to the phone yet"

    directory.groups[G2] = group(G2, person(CAROL, lid=CAROL_LID))
    await sync.sync_groups([G2])

    assert await lookup(env, CAROL) == [("Hidden", G1, "admin"), ("Open", G2, "member")]
    assert await env.count(lid_links) == 1


async def test_a_linked_id_learned_from_another_source_resolves_too(env: ContractEnv) -> None:
    await register(env, G1)
    await account(env, "Hidden", G1)
    await syncer(env, ListedDirectory(group(G1, person(None, lid=CAROL_LID)))).sync_groups([G1])

    async with env.db.transaction() as conn:
        await q.upsert_lid_links(conn, [(CAROL_LID, CAROL)], source="webhook", now=time.time())

    assert await lookup(env, "+49 151 3333 3333") == [("Hidden", G1, "member")]


async def test_the_provider_is_asked_for_the_linked_ids_of_known_phones(
    env: ContractEnv,
) -> None:
    """WHAPI shows a member by phone or by linked id, never both: the pair comes from
    asking it about the phones we know (members elsewhere, contacts who wrote to us)."""
    await register(env, G1, G2)
    await account(env, "Hidden", G1)
    dave, dave_lid = "+4915144444444", "11122233344455@lid"
    async with env.db.transaction() as conn:
        now = time.time()
        await conn.execute(
            contacts.insert(),
            {"id": "ct_dave", "phone": dave, "created_at": now, "updated_at": now},
        )
    directory = DirectoryWithLids(
        group(G1, person(None, lid=CAROL_LID), person(None, "admin", lid=dave_lid)),
        group(G2, person(CAROL), person(ALICE)),
        lids={CAROL: CAROL_LID, dave: dave_lid, ALICE: "99988877766655@lid"},
    )
    sync = syncer(env, directory)

    await sync.sync_groups([G1, G2])

    assert sorted(p for batch in directory.asked for p in batch) == sorted([ALICE, CAROL, dave])
    assert await lookup(env, CAROL) == [("Hidden", G1, "member")]
    assert await lookup(env, dave) == [("Hidden", G1, "admin")]
    directory.asked.clear()
    await sync.sync_groups([G1, G2])
    assert directory.asked == [], "every linked id is resolved: nothing left to ask"


# --- lookup -------------------------------------------------------------------------------


async def test_lookup_finds_every_account_and_group_with_the_member_and_rank(
    env: ContractEnv,
) -> None:
    await register(env, G1, G2, G3)
    await account(env, "Artist A", G1, G2)
    await account(env, "Artist B", G2)
    directory = ListedDirectory(
        group(G1, person(ALICE, "admin")),
        group(G2, person(ALICE), person(BOB)),
        group(G3, person(ALICE, "creator")),  # linked to no account: not an answer
    )
    await syncer(env, directory).sync_groups([G1, G2, G3])

    assert await lookup(env, "+49 151 1111 1111") == [
        ("Artist A", G1, "admin"),
        ("Artist A", G2, "member"),
        ("Artist B", G2, "member"),
    ]
    assert await lookup(env, CAROL) == []


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("+551187654321", "+55 11 98765-4321"),  # WhatsApp still shows the old form
        ("+5511987654321", "+55 11 8765-4321"),
        ("+5215512345678", "+52 55 1234 5678"),
        ("+525512345678", "+52 1 55 1234 5678"),
        ("+4915111111111", "0049 (151) 1111-1111"),
    ],
)
async def test_lookup_matches_every_form_a_number_is_stored_under(
    env: ContractEnv, stored: str, asked: str
) -> None:
    await register(env, G1)
    await account(env, "Artist", G1)
    await syncer(env, ListedDirectory(group(G1, person(stored)))).sync_groups([G1])

    assert await lookup(env, asked) == [("Artist", G1, "member")]


async def test_every_phone_sync_stores_is_found_by_lookup_in_every_documented_spelling(
    env: ContractEnv,
) -> None:
    # Hypothesis drives the examples from a thread (it is synchronous); each example runs
    # a real sync and real lookups on this test's event loop and database.
    await register(env, G1)
    await account(env, "Artist", G1)
    loop = asyncio.get_running_loop()
    caches: dict[str | None, GroupCache] = {}

    async def check(reported: list[str], spaced_forms: list[str]) -> None:
        directory = ListedDirectory(group(G1, *(person(r) for r in reported)))
        [result] = await syncer(env, directory).sync_groups([G1])
        assert result.ok, result
        stored = [phone for phone, _lid, _rank in await member_rows(env, G1)]
        assert stored == sorted({m for r in reported if (m := member_phone(r)) is not None})
        for phone, spaced_form in zip(stored, spaced_forms, strict=True):
            assert phone is not None
            for raw, region in documented_spellings(phone, spaced_form):
                found = await caches.setdefault(
                    region, GroupCache(env.db, env.access, default_region=region)
                ).lookup(raw)
                rows = [(m["account_name"], m["chat_id"]) for m in found.matches]
                assert ("Artist", G1) in rows, (phone, raw, region, found.phone)

    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(reported_phones(), min_size=1, max_size=6), st.data())
    def property_holds(reported: list[str], data: st.DataObject) -> None:
        stored = sorted({m for r in reported if (m := member_phone(r)) is not None})
        assume(stored)
        spaced_forms = [data.draw(spaced(phone)) for phone in stored]
        asyncio.run_coroutine_threadsafe(check(reported, spaced_forms), loop).result()

    await asyncio.to_thread(property_holds)


async def test_lookup_of_a_bad_phone_is_a_validation_error_naming_the_field(
    env: ContractEnv,
) -> None:
    with pytest.raises(ValidationError) as caught:
        await cache(env).lookup("12")

    assert caught.value.details["field"] == "phone"


# --- accounts -----------------------------------------------------------------------------


async def test_creating_an_account_syncs_its_group_in_the_background(env: ContractEnv) -> None:
    sync = syncer(env, ListedDirectory(group(G1, person(ALICE), name="From WHAPI")))
    accounts = Accounts(env.db, sync)

    created = await accounts.create(
        name="Artist", group_ids=[G1.removesuffix("@g.us")], channel_id=env.channel_id
    )

    assert [g["chat_id"] for g in created["groups"]] == [G1]
    assert created["groups"][0]["sync_status"] == "pending"
    await sync.drain()
    stored = await accounts.get(created["id"])
    assert stored["groups"][0]["sync_status"] == "success"
    assert stored["groups"][0]["member_count"] == 1
    assert stored["groups"][0]["name"] == "From WHAPI"


async def test_changing_an_account_s_groups_syncs_only_the_new_group(env: ContractEnv) -> None:
    directory = ListedDirectory(group(G1, person(ALICE)), group(G2, person(BOB)))
    sync = syncer(env, directory)
    accounts = Accounts(env.db, sync)
    created = await accounts.create(name="Artist", group_ids=[G1], channel_id=env.channel_id)
    await sync.drain()
    directory.fetches.clear()

    updated = await accounts.update(created["id"], group_ids=[G2], channel_id=env.channel_id)
    await sync.drain()

    assert [g["chat_id"] for g in updated["groups"]] == [G2]
    assert directory.fetches == [G2]
    assert await lookup(env, BOB) == [("Artist", G2, "member")]
    assert await lookup(env, ALICE) == [], "the old group is no longer the account's"


async def test_an_external_ref_belongs_to_one_account(env: ContractEnv) -> None:
    accounts = Accounts(env.db, syncer(env, ListedDirectory()))
    await accounts.create(name="A", external_ref="crm-1")

    with pytest.raises(ConflictError) as caught:
        await accounts.create(name="B", external_ref="crm-1")

    assert caught.value.details["field"] == "external_ref"
    rows, total = await accounts.list_page(limit=10, offset=0)
    assert [r["name"] for r in rows] == ["A"]
    assert total == 1


async def test_deleting_an_account_keeps_its_group(env: ContractEnv) -> None:
    accounts = Accounts(env.db, syncer(env, ListedDirectory()))
    created = await accounts.create(name="A", group_ids=[G1])

    await accounts.delete(created["id"])

    with pytest.raises(NotFound):
        await accounts.get(created["id"])
    with pytest.raises(NotFound):
        await accounts.delete(created["id"])
    assert (await chat(env, G1))["kind"] == "group"


async def test_syncing_accounts_reports_per_account(env: ContractEnv) -> None:
    await register(env, G1, G2)
    await account(env, "Artist A", G1)
    await account(env, "Artist B", G1, G2)
    directory = ListedDirectory(group(G1, person(ALICE), person(BOB)))

    report = await syncer(env, directory).sync_accounts()

    assert [(a.account_name, a.status, a.members_synced) for a in report.accounts] == [
        ("Artist A", "success", 2),
        ("Artist B", "failed", 2),
    ]
    assert (report.success_count, report.fail_count) == (1, 1)
    assert directory.fetches.count(G1) == 1, "a group shared by two accounts is fetched once"


async def test_syncing_an_unknown_account_is_not_found(env: ContractEnv) -> None:
    with pytest.raises(NotFound):
        await syncer(env, ListedDirectory()).sync_accounts("acc_nope")


# --- health and cleanup -------------------------------------------------------------------


async def age(env: ContractEnv, chat_id: str, seconds: float) -> None:
    async with env.db.transaction() as conn:
        await conn.execute(
            update(chats)
            .where(chats.c.chat_id == chat_id)
            .values(last_synced_at=time.time() - seconds)
        )


async def test_health_reports_the_cache_figures(env: ContractEnv) -> None:
    await register(env, G1, G2, G3)
    await account(env, "Cached", G1)
    await account(env, "Empty", G2)
    directory = ListedDirectory(group(G1, person(ALICE), person(BOB)), group(G3, person(CAROL)))
    directory.failures[G2] = [PermanentProviderError("forbidden")]
    await syncer(env, directory).sync_groups([G1, G2, G3])
    await age(env, G3, 3 * 86400)

    health = await cache(env).health()

    assert health["total_cached_members"] == 3
    assert health["accounts_with_cache"] == 1
    assert health["oldest_sync"] < health["most_recent_sync"]
    assert health["accounts_without_members_count"] == 1
    assert [(a["name"], a["chat_ids"]) for a in health["accounts_without_members"]] == [
        ("Empty", [G2])
    ]
    assert [(f["chat_id"], f["sync_error"]) for f in health["failed_syncs"]] == [
        (G2, "provider: forbidden")
    ]
    assert [s["chat_id"] for s in health["stale_groups"]] == [G3]
    assert health["stale_groups_count"] == 1


async def test_cleanup_removes_members_of_stale_and_gone_groups_only(env: ContractEnv) -> None:
    await register(env, G1, G2, G3)
    directory = ListedDirectory(
        group(G1, person(ALICE)), group(G2, person(BOB)), group(G3, person(CAROL), person(ALICE))
    )
    sync = syncer(env, directory)
    await sync.sync_groups([G1, G2, G3])
    await age(env, G2, 8 * 86400)
    del directory.groups[G3]
    await sync.sync_groups([G3])  # the provider no longer knows it: inactive

    removed = await cache(env).cleanup(older_than_seconds=7 * 86400)

    assert (removed["groups"], removed["members_removed"]) == (2, 3)
    assert await member_rows(env, G1) == [(ALICE, None, "member")]
    assert await member_rows(env, G2) == []
    assert await member_rows(env, G3) == []


# --- cron slots ---------------------------------------------------------------------------


SLOT = 1_767_236_400.0  # 2026-01-01T03:00:00Z


async def test_two_schedulers_racing_for_a_slot_run_it_once(
    db: Database, database_url: str
) -> None:
    other_process = Database(database_url, sqlite_synchronous="OFF")
    runs: list[str] = []

    def job(who: str) -> PeriodicJob:
        async def run() -> None:
            runs.append(who)

        return PeriodicJob("group-sync", "0 3 * * *", run)

    try:
        first = Scheduler(db, [job("first")], owner="first", clock=lambda: SLOT - 60)
        second = Scheduler(other_process, [job("second")], owner="second", clock=lambda: SLOT - 60)

        ran = await asyncio.gather(first.tick(SLOT + 1), second.tick(SLOT + 1))

        assert sorted(len(r) for r in ran) == [0, 1], f"exactly one process runs it: {ran}"
        assert len(runs) == 1
        assert await first.tick(SLOT + 2) == [], "a slot runs once, also in its own process"
        next_day = SLOT + 86400 + 1
        assert len(await asyncio.gather(first.tick(next_day), second.tick(next_day))) == 2
        assert len(runs) == 2, "the next slot runs (once) again"
    finally:
        await other_process.dispose()


async def test_many_claims_of_one_slot_let_exactly_one_through(
    db: Database, database_url: str
) -> None:
    handles = [Database(database_url, sqlite_synchronous="OFF") for _ in range(3)]

    async def claim(handle: Database, owner: str) -> bool:
        return await handle.write(
            lambda conn: q.claim_periodic_slot_sync(
                conn, name="job", slot="2026-01-01T03:00:00Z", owner=owner, now=time.time()
            )
        )

    try:
        won = await asyncio.gather(*(claim(h, f"p{i}") for i, h in enumerate([db, *handles] * 3)))
    finally:
        for handle in handles:
            await handle.dispose()

    assert won.count(True) == 1, won


async def test_a_slot_missed_at_start_up_is_caught_up_only_when_recent(db: Database) -> None:
    runs: list[float] = []

    async def run() -> None:
        runs.append(1)

    recent = Scheduler(db, [PeriodicJob("a", "0 3 * * *", run)], clock=lambda: SLOT + 300)
    old = Scheduler(db, [PeriodicJob("b", "0 3 * * *", run)], clock=lambda: SLOT + 7200)

    assert await recent.tick(SLOT + 300) == ["a"]
    assert await old.tick(SLOT + 7200) == []


def test_a_bad_cron_expression_is_refused(db: Database) -> None:
    async def run() -> None:
        return None

    with pytest.raises(ValidationError, match="not a cron expression"):
        Scheduler(db, [PeriodicJob("x", "every day at 3", run)])
