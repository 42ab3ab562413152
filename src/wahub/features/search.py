"""Full-text search over stored messages (both directions), with the chat's name.

A query is plain words, never a query language: each word must occur (as the start of a
word) in the message's text, its template name or its chat's name. Punctuation and
operators in the input are just separators, so no input can be a syntax error; input
without any word is a ``ValidationError`` (422) that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from wahub.domain.actors import Actor
from wahub.domain.errors import ValidationError
from wahub.domain.phones import canonical_chat_id
from wahub.features.access import AccessControl
from wahub.store import search as q
from wahub.store.database import Database

MAX_TERMS: Final = 16
MAX_TERM_CHARS: Final = 64
MAX_LIMIT: Final = 100
# Letters and digits of any script; "_" separates words, as both databases' tokenizers do.
_WORD: Final = re.compile(r"[^\W_]+")


def query_terms(query: str) -> list[str]:
    """The words of ``query``, lower-cased, without repeats. Raises ``ValidationError`` when
    there is none or too many."""
    terms = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    if not terms:
        raise ValidationError(
            "q: no words to search for (punctuation and operators are ignored; "
            "give at least one letter or digit)",
            details={"field": "q", "value": query[:100]},
        )
    if len(terms) > MAX_TERMS:
        raise ValidationError(
            f"q: at most {MAX_TERMS} words, got {len(terms)}", details={"field": "q"}
        )
    if any(len(t) > MAX_TERM_CHARS for t in terms):
        raise ValidationError(
            f"q: words are at most {MAX_TERM_CHARS} characters", details={"field": "q"}
        )
    return terms


@dataclass(frozen=True, slots=True)
class SearchQuery:
    q: str
    chat_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 20


class MessageSearch:
    def __init__(
        self, db: Database, access: AccessControl, *, default_region: str | None = None
    ) -> None:
        self.db = db
        self.access = access
        self.default_region = default_region

    async def search(self, actor: Actor, query: SearchQuery) -> list[q.SearchHit]:
        """Best matches first. Agents find messages of chats assigned to them and messages
        they sent, like ``GET /v1/messages``. Raises ``ValidationError``."""
        terms = query_terms(query.q)
        if not 1 <= query.limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be in 1..{MAX_LIMIT}", details={"field": "limit"})
        if query.since is not None and query.until is not None and query.since >= query.until:
            raise ValidationError("since must be before until", details={"field": "since"})
        chat_id = (
            canonical_chat_id(query.chat_id, default_region=self.default_region, field="chat_id")
            if query.chat_id
            else None
        )
        visible = await self.access.visible_chat_ids(actor)
        async with self.db.read() as conn:
            return await q.search_messages(
                conn,
                terms=terms,
                chat_id=chat_id,
                since=query.since,
                until=query.until,
                visible_chat_ids=visible,
                visible_sender=None if visible is None else actor.user_id,
                limit=query.limit,
                channel_ids=actor.channel_ids,
            )
