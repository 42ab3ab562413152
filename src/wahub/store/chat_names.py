"""Named queries for chat names: who named a chat, and when a new name may replace it.

Several sources learn a chat's name; each write carries its ``name_source`` and replaces
the stored name only when its source ranks at least as high as the stored one
(``NAME_SOURCE_RANK``), so a rename from the same source always lands and a lower source
never overwrites a higher one. The comparison is inside the UPDATE, so concurrent
writers (several processes on PostgreSQL) cannot undo each other's precedence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import bindparam, case, literal, or_, select, update

from wahub.domain.phones import GROUP_SUFFIX
from wahub.store.database import in_one_hop
from wahub.store.schema import chats
from wahub.store.sql import insert_ignore

# Higher wins. "api": an admin named the chat. "group_sync": the group directory sync read
# the group itself. "profile": a name seen on inbound traffic (the sender's WhatsApp
# profile, a provider's chat name in a webhook). "provider": a chat-directory lookup
# (GET /chats/{id}, the refresh). Unknown or missing sources rank 0, below all of them.
NAME_SOURCE_RANK: Final[dict[str, int]] = {
    "api": 40,
    "group_sync": 30,
    "profile": 20,
    "provider": 10,
}

NAME_MAX_CHARS: Final = 300  # chats.name is String(300); PostgreSQL enforces it


@dataclass(frozen=True, slots=True)
class LearnedName:
    chat_id: str
    name: str | None
    kind: str  # person | group


@dataclass(frozen=True, slots=True)
class LearnCounts:
    """``already_named``: chats that had a name before this write; ``newly_named`` the
    rest (each of them now exists as a row, named when the source gave a name)."""

    newly_named: int
    already_named: int


def _stored_rank() -> Any:
    return case(
        *((chats.c.name_source == source, rank) for source, rank in NAME_SOURCE_RANK.items()),
        else_=0,
    )


def _clean(name: str | None) -> str | None:
    text = (name or "").strip()
    return text[:NAME_MAX_CHARS] or None


def learn_chat_names_sync(
    conn: SyncConnection,
    names: Iterable[LearnedName],
    *,
    source: str,
    now: float,
    channel_id: str | None = None,
) -> LearnCounts:
    """Record what ``source`` says the chats are called.

    Missing chats are created (kind as given, on ``channel_id``); a name replaces the
    stored one only when ``source`` ranks at least as high as the stored name's source,
    and only when it differs (so ``name_updated_at`` says when the name last changed).
    A ``None`` name never erases one.
    """
    learned = {n.chat_id: n for n in names}
    if not learned:
        return LearnCounts(0, 0)
    ids = list(learned)
    already: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        already.update(
            r.chat_id
            for r in conn.execute(
                select(chats.c.chat_id).where(chats.c.chat_id.in_(chunk), chats.c.name.is_not(None))
            )
        )
    rows = [
        {
            "chat_id": n.chat_id,
            "kind": "group" if n.chat_id.endswith(GROUP_SUFFIX) else n.kind,
            "channel_id": channel_id,
            "name": None,
            "name_source": None,
            "name_updated_at": None,
            "created_at": now,
        }
        for n in learned.values()
    ]
    conn.execute(insert_ignore(conn, chats), rows)
    rank = NAME_SOURCE_RANK.get(source, 0)
    updates = [
        {"b_chat_id": chat_id, "b_name": name}
        for chat_id, n in learned.items()
        if (name := _clean(n.name)) is not None
    ]
    if updates:
        conn.execute(
            update(chats)
            .where(
                chats.c.chat_id == bindparam("b_chat_id"),
                or_(chats.c.name.is_(None), chats.c.name != bindparam("b_name")),
                or_(chats.c.name.is_(None), _stored_rank() <= literal(rank)),
            )
            .values(name=bindparam("b_name"), name_source=source, name_updated_at=now),
            updates,
        )
    return LearnCounts(newly_named=len(learned) - len(already), already_named=len(already))


def learn_chat_name_sync(
    conn: SyncConnection,
    *,
    chat_id: str,
    name: str | None,
    source: str,
    now: float,
    kind: str | None = None,
    channel_id: str | None = None,
) -> None:
    """One chat's name from ``source`` (see ``learn_chat_names_sync``). For other features
    that learn names (inbound profiles: ``profile``; group sync: ``group_sync``)."""
    learn_chat_names_sync(
        conn,
        [
            LearnedName(
                chat_id, name, kind or ("group" if chat_id.endswith(GROUP_SUFFIX) else "person")
            )
        ],
        source=source,
        now=now,
        channel_id=channel_id,
    )


def get_chat_name_sync(conn: SyncConnection, chat_id: str) -> dict[str, Any] | None:
    """``{chat_id, name, name_source, name_updated_at, channel_id, kind}`` or None."""
    row = conn.execute(
        select(
            chats.c.chat_id,
            chats.c.name,
            chats.c.name_source,
            chats.c.name_updated_at,
            chats.c.channel_id,
            chats.c.kind,
        ).where(chats.c.chat_id == chat_id)
    ).first()
    return None if row is None else dict(row._mapping)


learn_chat_names = in_one_hop(learn_chat_names_sync)
learn_chat_name = in_one_hop(learn_chat_name_sync)
get_chat_name = in_one_hop(get_chat_name_sync)
