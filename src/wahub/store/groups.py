"""Named queries for group members, linked ids, the lookup by phone, and cache health.

A group's members are only ever replaced whole, inside one transaction, after the
provider answered: readers see the old list or the new one, never a half-written one,
and a failed fetch never touches them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import and_, delete, exists, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wahub.store.database import in_one_hop
from wahub.store.schema import (
    account_chats,
    accounts,
    chats,
    contacts,
    group_members,
    lid_links,
    periodic_runs,
)
from wahub.store.sql import insert_ignore

MAX_ERROR_CHARS = 2000
HEALTH_LIST_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Member:
    """One member as stored: a phone (E.164), a linked id, or both."""

    phone: str | None
    lid: str | None
    rank: str


@dataclass(frozen=True, slots=True)
class FetchedGroup:
    """What a successful fetch learned about one group."""

    chat_id: str
    channel_id: str
    name: str | None
    readonly: bool  # our number is not a participant
    members: Sequence[Member]


def upsert_lid_links_sync(
    conn: SyncConnection, pairs: Collection[tuple[str, str]], *, source: str, now: float
) -> None:
    """Remember that linked id ``lid`` is ``phone`` (the newest source wins)."""
    if not pairs:
        return
    rows = [
        {"lid": lid, "phone": phone, "source": source, "learned_at": now}
        for lid, phone in sorted(set(pairs))
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(lid_links)
    stmt = stmt.on_conflict_do_update(
        index_elements=[lid_links.c.lid],
        set_={
            "phone": stmt.excluded.phone,
            "source": stmt.excluded.source,
            "learned_at": stmt.excluded.learned_at,
        },
    )
    conn.execute(stmt, rows)


def store_fetched_group_sync(conn: SyncConnection, group: FetchedGroup, now: float) -> int:
    """Replace a group's members with a successful fetch's, and mark it synced.

    Creates the group's chat row when the directory showed a group we did not know.
    Runs in the caller's transaction: if anything fails, nothing of it is kept.
    Returns the number of members stored.
    """
    existing = conn.execute(
        select(chats.c.channel_id, chats.c.name).where(chats.c.chat_id == group.chat_id)
    ).first()
    synced: dict[str, Any] = {
        "is_active": True,
        "readonly": group.readonly,
        "last_synced_at": now,
        "sync_status": "success",
        "sync_error": None,
    }
    if group.name:
        synced |= {"name": group.name, "name_source": "provider", "name_updated_at": now}
    if existing is None:
        conn.execute(
            chats.insert(),
            {"chat_id": group.chat_id, "kind": "group", "channel_id": group.channel_id}
            | synced
            | {"created_at": now},
        )
    else:
        if existing.channel_id is None:
            synced["channel_id"] = group.channel_id
        if existing.name == group.name:
            # Same name: keep when and by whom it was set.
            for key in ("name", "name_source", "name_updated_at"):
                synced.pop(key, None)
        conn.execute(update(chats).where(chats.c.chat_id == group.chat_id).values(synced))
    conn.execute(delete(group_members).where(group_members.c.chat_id == group.chat_id))
    if group.members:
        conn.execute(
            group_members.insert(),
            [
                {
                    "chat_id": group.chat_id,
                    "member_phone": m.phone,
                    "member_lid": m.lid,
                    "rank": m.rank,
                    "synced_at": now,
                }
                for m in group.members
            ],
        )
    pairs = {(m.lid, m.phone) for m in group.members if m.lid and m.phone}
    upsert_lid_links_sync(conn, pairs, source="group-sync", now=now)
    return len(group.members)


def record_sync_failure_sync(
    conn: SyncConnection, chat_id: str, error: str, now: float, *, gone: bool = False
) -> None:
    """Mark a group's sync failed with the reason; its members stay as they were.

    ``gone``: the provider says the group does not exist (any more): it becomes inactive.
    ``last_synced_at`` stays the time of the last successful sync.
    """
    values: dict[str, Any] = {"sync_status": "failed", "sync_error": error[:MAX_ERROR_CHARS]}
    if gone:
        values["is_active"] = False
    conn.execute(update(chats).where(chats.c.chat_id == chat_id).values(values))


def has_unresolved_lids_sync(conn: SyncConnection, channel_id: str) -> bool:
    """Whether a group of ``channel_id`` has a member known only by a linked id that
    ``lid_links`` does not resolve yet."""
    unresolved = (
        select(group_members.c.id)
        .join(chats, chats.c.chat_id == group_members.c.chat_id)
        .where(
            chats.c.channel_id == channel_id,
            group_members.c.member_phone.is_(None),
            ~exists().where(lid_links.c.lid == group_members.c.member_lid),
        )
        .limit(1)
    )
    return conn.execute(unresolved).first() is not None


def phones_without_lid_sync(conn: SyncConnection, channel_id: str, *, limit: int) -> list[str]:
    """Phones we know (members of the channel's groups, and contacts) whose linked id
    we have not learned yet: the ones worth asking the provider about."""
    unlinked_member = (
        select(group_members.c.member_phone.label("phone"))
        .join(chats, chats.c.chat_id == group_members.c.chat_id)
        .where(
            chats.c.channel_id == channel_id,
            group_members.c.member_phone.is_not(None),
            ~exists().where(lid_links.c.phone == group_members.c.member_phone),
        )
    )
    unlinked_contact = select(contacts.c.phone.label("phone")).where(
        ~exists().where(lid_links.c.phone == contacts.c.phone)
    )
    union = unlinked_member.union(unlinked_contact).subquery()
    rows = conn.execute(select(union.c.phone).order_by(union.c.phone).limit(limit))
    return [r.phone for r in rows]


def group_chat_channels_sync(
    conn: SyncConnection, chat_ids: Sequence[str]
) -> dict[str, str | None]:
    """Each known chat id -> the channel it belongs to (None when not set yet)."""
    rows = conn.execute(
        select(chats.c.chat_id, chats.c.channel_id).where(chats.c.chat_id.in_(chat_ids))
    )
    return {r.chat_id: r.channel_id for r in rows}


def lookup_by_phone_sync(conn: SyncConnection, forms: Collection[str]) -> list[dict[str, Any]]:
    """Accounts whose groups have a member with one of the phone ``forms``, with the
    group and the member's rank: one row per account and group.

    Members stored by linked id count when ``lid_links`` resolves the id to one of the
    forms. One statement; the phone and linked-id indexes answer it.
    """
    resolved_lids = select(lid_links.c.lid).where(lid_links.c.phone.in_(list(forms)))
    stmt = (
        select(
            accounts.c.id.label("account_id"),
            accounts.c.name.label("account_name"),
            accounts.c.external_ref,
            chats.c.chat_id,
            chats.c.name.label("group_name"),
            group_members.c.rank,
        )
        .select_from(
            group_members.join(account_chats, account_chats.c.chat_id == group_members.c.chat_id)
            .join(accounts, accounts.c.id == account_chats.c.account_id)
            .join(chats, chats.c.chat_id == group_members.c.chat_id)
        )
        .where(
            or_(
                group_members.c.member_phone.in_(list(forms)),
                group_members.c.member_lid.in_(resolved_lids),
            )
        )
    )
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in conn.execute(stmt):
        # One member seen twice in a group (by phone and by a linked id) counts once,
        # with the higher rank.
        found = dict(row._mapping)
        key = (found["account_id"], found["chat_id"])
        kept = best.get(key)
        if kept is None or RANK_ORDER.get(found["rank"], 9) < RANK_ORDER.get(kept["rank"], 9):
            best[key] = found
    return sorted(best.values(), key=lambda r: (r["account_name"], r["account_id"], r["chat_id"]))


RANK_ORDER = {"creator": 0, "admin": 1, "member": 2}


def list_members_sync(conn: SyncConnection, chat_id: str) -> list[dict[str, Any]]:
    """A group's members, creators and admins first; linked ids resolved where known."""
    stmt = (
        select(
            group_members.c.member_phone,
            group_members.c.member_lid,
            group_members.c.rank,
            group_members.c.synced_at,
            lid_links.c.phone.label("resolved_phone"),
        )
        .select_from(
            group_members.outerjoin(lid_links, lid_links.c.lid == group_members.c.member_lid)
        )
        .where(group_members.c.chat_id == chat_id)
    )
    rows = [dict(r._mapping) for r in conn.execute(stmt)]
    rows.sort(
        key=lambda r: (RANK_ORDER.get(r["rank"], 9), r["member_phone"] or r["member_lid"] or "")
    )
    return rows


def member_counts_sync(conn: SyncConnection, chat_ids: Sequence[str]) -> dict[str, int]:
    if not chat_ids:
        return {}
    stmt = (
        select(group_members.c.chat_id, func.count())
        .where(group_members.c.chat_id.in_(chat_ids))
        .group_by(group_members.c.chat_id)
    )
    return {r[0]: int(r[1]) for r in conn.execute(stmt)}


def cache_health_sync(conn: SyncConnection, *, now: float, stale_after: float) -> dict[str, Any]:
    """The figures ``GET /v1/groups/health`` and the Prometheus gauges show.

    Lists are capped at ``HEALTH_LIST_LIMIT`` entries; the ``*_count`` fields are exact.
    """
    total_members = conn.execute(select(func.count()).select_from(group_members)).scalar_one()
    has_members = exists().where(group_members.c.chat_id == account_chats.c.chat_id)
    accounts_with_cache = conn.execute(
        select(func.count(func.distinct(account_chats.c.account_id))).where(has_members)
    ).scalar_one()
    synced = select(
        func.max(chats.c.last_synced_at), func.min(chats.c.last_synced_at), func.count()
    ).where(chats.c.kind == "group", chats.c.last_synced_at.is_not(None))
    most_recent, oldest, synced_groups = conn.execute(synced).one()

    # Accounts with at least one group, none of which has a cached member.
    any_member = (
        select(account_chats.c.account_id)
        .join(group_members, group_members.c.chat_id == account_chats.c.chat_id)
        .where(account_chats.c.account_id == accounts.c.id)
        .exists()
    )
    has_group = exists().where(account_chats.c.account_id == accounts.c.id)
    without = and_(has_group, ~any_member)
    without_count = conn.execute(
        select(func.count()).select_from(accounts).where(without)
    ).scalar_one()
    without_rows = conn.execute(
        select(accounts.c.id, accounts.c.name)
        .where(without)
        .order_by(accounts.c.name, accounts.c.id)
        .limit(HEALTH_LIST_LIMIT)
    ).all()
    groups_of = _account_chat_ids(conn, [r.id for r in without_rows])

    failed = chats.c.sync_status == "failed"
    failed_count = conn.execute(select(func.count()).select_from(chats).where(failed)).scalar_one()
    failed_rows = conn.execute(
        select(chats.c.chat_id, chats.c.name, chats.c.sync_error, chats.c.last_synced_at)
        .where(failed)
        .order_by(chats.c.chat_id)
        .limit(HEALTH_LIST_LIMIT)
    ).all()

    stale = and_(chats.c.kind == "group", chats.c.last_synced_at < now - stale_after)
    stale_count = conn.execute(select(func.count()).select_from(chats).where(stale)).scalar_one()
    stale_rows = conn.execute(
        select(chats.c.chat_id, chats.c.name, chats.c.last_synced_at)
        .where(stale)
        .order_by(chats.c.last_synced_at, chats.c.chat_id)
        .limit(HEALTH_LIST_LIMIT)
    ).all()
    return {
        "total_cached_members": int(total_members),
        "accounts_with_cache": int(accounts_with_cache),
        "synced_groups": int(synced_groups),
        "most_recent_sync": most_recent,
        "oldest_sync": oldest,
        "accounts_without_members_count": int(without_count),
        "accounts_without_members": [
            {"id": r.id, "name": r.name, "chat_ids": groups_of.get(r.id, [])} for r in without_rows
        ],
        "failed_syncs_count": int(failed_count),
        "failed_syncs": [dict(r._mapping) for r in failed_rows],
        "stale_groups_count": int(stale_count),
        "stale_groups": [dict(r._mapping) for r in stale_rows],
    }


def _account_chat_ids(conn: SyncConnection, account_ids: Sequence[str]) -> dict[str, list[str]]:
    if not account_ids:
        return {}
    rows = conn.execute(
        select(account_chats.c.account_id, account_chats.c.chat_id)
        .where(account_chats.c.account_id.in_(account_ids))
        .order_by(account_chats.c.chat_id)
    )
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r.account_id, []).append(r.chat_id)
    return found


def remove_stale_members_sync(conn: SyncConnection, *, cutoff: float) -> dict[str, int]:
    """Delete the members of groups whose last successful sync is older than ``cutoff``
    and of groups the provider says are gone (inactive); prune cron slots older than
    ``cutoff``. Linked-id links stay: they are facts, not a cache."""
    doomed = select(chats.c.chat_id).where(
        chats.c.kind == "group",
        or_(chats.c.is_active == false(), chats.c.last_synced_at < cutoff),
    )
    groups = conn.execute(
        select(func.count(func.distinct(group_members.c.chat_id))).where(
            group_members.c.chat_id.in_(doomed)
        )
    ).scalar_one()
    members = conn.execute(delete(group_members).where(group_members.c.chat_id.in_(doomed)))
    runs = conn.execute(delete(periodic_runs).where(periodic_runs.c.claimed_at < cutoff))
    return {
        "groups": int(groups),
        "members_removed": int(members.rowcount),
        "periodic_runs_removed": int(runs.rowcount),
    }


def claim_periodic_slot_sync(
    conn: SyncConnection, *, name: str, slot: str, owner: str, now: float
) -> bool:
    """True for exactly one caller per (name, slot), however many processes race."""
    result = conn.execute(
        insert_ignore(conn, periodic_runs),
        {"name": name, "slot": slot, "owner": owner, "claimed_at": now},
    )
    return result.rowcount == 1


store_fetched_group = in_one_hop(store_fetched_group_sync)
record_sync_failure = in_one_hop(record_sync_failure_sync)
group_chat_channels = in_one_hop(group_chat_channels_sync)
has_unresolved_lids = in_one_hop(has_unresolved_lids_sync)
phones_without_lid = in_one_hop(phones_without_lid_sync)
upsert_lid_links = in_one_hop(upsert_lid_links_sync)
lookup_by_phone = in_one_hop(lookup_by_phone_sync)
list_members = in_one_hop(list_members_sync)
member_counts = in_one_hop(member_counts_sync)
cache_health = in_one_hop(cache_health_sync)
remove_stale_members = in_one_hop(remove_stale_members_sync)
claim_periodic_slot = in_one_hop(claim_periodic_slot_sync)


def apply_group_change_sync(
    conn: SyncConnection,
    *,
    channel_id: str,
    chat_id: str,
    name: str | None,
    joined: Sequence[Member],
    left: Sequence[Member],
    now: float,
) -> None:
    """Fold one reported change of a group into the directory: the group's chat row
    (created when new; renamed when ``name`` is given), members who joined added, members
    who left removed (by phone or by LID). Members known by phone and LID both also
    teach the lookup that pair."""
    existing = conn.execute(select(chats.c.chat_id).where(chats.c.chat_id == chat_id)).first()
    named: dict[str, Any] = (
        {"name": name, "name_source": "provider", "name_updated_at": now} if name else {}
    )
    if existing is None:
        conn.execute(
            chats.insert(),
            {"chat_id": chat_id, "kind": "group", "channel_id": channel_id, "created_at": now}
            | named,
        )
    elif named:
        conn.execute(update(chats).where(chats.c.chat_id == chat_id).values(named))
    for member in left:
        who = [
            c == v
            for c, v in (
                (group_members.c.member_phone, member.phone),
                (group_members.c.member_lid, member.lid),
            )
            if v
        ]
        if who:
            conn.execute(delete(group_members).where(group_members.c.chat_id == chat_id, or_(*who)))
    for member in joined:
        conn.execute(
            insert_ignore(conn, group_members),
            {
                "chat_id": chat_id,
                "member_phone": member.phone,
                "member_lid": member.lid,
                "rank": member.rank,
                "synced_at": now,
            },
        )
    pairs = {(m.lid, m.phone) for m in joined if m.lid and m.phone}
    upsert_lid_links_sync(conn, pairs, source="session", now=now)


def link_lid_members_sync(conn: SyncConnection, *, lid: str, phone: str, now: float) -> None:
    """Learn that ``lid`` is ``phone``: remember the pair for the lookup, and merge group
    members stored under the LID alone with the phone (one row per member and group)."""
    upsert_lid_links_sync(conn, [(lid, phone)], source="session", now=now)
    by_phone = select(group_members.c.chat_id).where(group_members.c.member_phone == phone)
    # Where the group has the member under both, the phone's row stays (and gets the LID).
    conn.execute(
        delete(group_members).where(
            group_members.c.member_lid == lid,
            group_members.c.member_phone.is_(None),
            group_members.c.chat_id.in_(by_phone),
        )
    )
    by_lid = select(group_members.c.chat_id).where(group_members.c.member_lid == lid)
    conn.execute(
        update(group_members)
        .where(
            group_members.c.member_phone == phone,
            group_members.c.member_lid.is_(None),
            group_members.c.chat_id.not_in(by_lid),
        )
        .values(member_lid=lid)
    )
    conn.execute(
        update(group_members)
        .where(group_members.c.member_lid == lid, group_members.c.member_phone.is_(None))
        .values(member_phone=phone, synced_at=now)
    )
