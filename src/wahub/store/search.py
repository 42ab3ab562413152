"""Full-text search over ``message_search`` (migration 0005): FTS5 on SQLite, a GIN-indexed
tsvector on PostgreSQL.

User input never reaches either query language as syntax: the caller passes plain words
(``terms``), each becomes a quoted prefix term, and all must match. So ``"``, ``*``,
``AND OR`` or ``'; drop`` cannot break the query, only find (or not find) words.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import bindparam, select, text

from wahub.store.database import in_one_hop
from wahub.store.schema import messages

# Must equal the expression of ix_message_search_fts (migration 0005).
PG_VECTOR: Final = "to_tsvector('simple', COALESCE(body, '') || ' ' || COALESCE(chat_name, ''))"
MARK_START: Final = "[["
MARK_END: Final = "]]"


@dataclass(frozen=True, slots=True)
class SearchHit:
    message: dict[str, Any]
    chat_name: str | None
    snippet: str | None
    score: float


def search_messages_sync(
    conn: SyncConnection,
    *,
    terms: Sequence[str],
    chat_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    visible_chat_ids: Sequence[str] | None = None,
    visible_sender: str | None = None,
    limit: int = 20,
    channel_ids: Collection[str] | None = None,
) -> list[SearchHit]:
    """Messages whose text, template name or chat name contain every term (as a word
    prefix), best first; ``score`` is higher for better matches. ``visible_*`` restrict
    an agent to the chats assigned to them and the messages they sent; ``channel_ids`` a
    key limited to channels to those."""
    if not terms:
        return []
    filters: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if chat_id is not None:
        filters.append("s.chat_id = :chat_id")
        params["chat_id"] = chat_id
    if since is not None:
        filters.append("s.created_at >= :since")
        params["since"] = since
    if until is not None:
        filters.append("s.created_at < :until")
        params["until"] = until
    expanding: list[str] = []
    if visible_chat_ids is not None or visible_sender is not None:
        filters.append(
            "EXISTS (SELECT 1 FROM messages m WHERE m.seq = s.seq AND "
            "(m.chat_id IN :visible_chats OR m.sender_user_id = :visible_sender))"
        )
        # An empty IN list is valid with an expanding parameter (SQLAlchemy renders it).
        params["visible_chats"] = list(visible_chat_ids or [])
        params["visible_sender"] = visible_sender
        expanding.append("visible_chats")
    if channel_ids is not None:
        filters.append(
            "EXISTS (SELECT 1 FROM messages m WHERE m.seq = s.seq AND "
            "m.channel_id IN :key_channels)"
        )
        params["key_channels"] = sorted(channel_ids)
        expanding.append("key_channels")
    where = "".join(f" AND {f}" for f in filters)
    if conn.dialect.name == "postgresql":
        params["query"] = " & ".join(f"{_pg_lexeme(t)}:*" for t in terms)
        sql = f"""
            SELECT hit.seq, hit.score, hit.chat_name,
                   ts_headline('simple', COALESCE(hit.body, ''), to_tsquery('simple', :query),
                               'StartSel="{MARK_START}", StopSel="{MARK_END}",
                                MaxFragments=1, MaxWords=18, MinWords=6') AS snippet
            FROM (
                SELECT s.seq, s.body, s.chat_name,
                       ts_rank({PG_VECTOR}, to_tsquery('simple', :query)) AS score
                FROM message_search s
                WHERE {PG_VECTOR} @@ to_tsquery('simple', :query){where}
                ORDER BY score DESC, s.seq DESC
                LIMIT :limit
            ) hit
            ORDER BY hit.score DESC, hit.seq DESC
        """
    else:
        params["query"] = " AND ".join(f'"{t}"*' for t in terms)
        sql = f"""
            SELECT s.seq, -bm25(message_search_fts) AS score, s.chat_name,
                   snippet(message_search_fts, 0, '{MARK_START}', '{MARK_END}', '…', 12)
                       AS snippet
            FROM message_search_fts JOIN message_search s ON s.seq = message_search_fts.rowid
            WHERE message_search_fts MATCH :query{where}
            ORDER BY score DESC, s.seq DESC
            LIMIT :limit
        """
    statement = text(sql)
    for name in expanding:
        statement = statement.bindparams(bindparam(name, expanding=True))
    hits = conn.execute(statement, params).all()
    if not hits:
        return []
    rows = {
        r.seq: dict(r._mapping)
        for r in conn.execute(select(messages).where(messages.c.seq.in_([h.seq for h in hits])))
    }
    return [
        SearchHit(
            message=rows[h.seq],
            chat_name=h.chat_name,
            snippet=h.snippet or None,
            score=float(h.score or 0.0),
        )
        for h in hits
        if h.seq in rows
    ]


def _pg_lexeme(term: str) -> str:
    # A quoted lexeme: to_tsquery reads it as one word, whatever characters it holds.
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


search_messages = in_one_hop(search_messages_sync)
