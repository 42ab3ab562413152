"""Named queries for what people (through the API) change on contacts, leads and
conversations, and for who may see a contact or a lead.

Every function runs in the caller's transaction. The replication triggers log each
update in that transaction, so an edit is replicated exactly when it commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import case, select, update

from wahub.store.conversations import Reader, conversations_seen_by
from wahub.store.schema import contacts, conversations, leads


def update_lead_sync(conn: SyncConnection, lead_id: str, values: dict[str, Any]) -> bool:
    """Set ``values`` (status, owner_user_id, updated_at) on the lead; False when absent."""
    result = conn.execute(update(leads).where(leads.c.id == lead_id).values(values))
    return bool(result.rowcount)


def update_contact_sync(conn: SyncConnection, contact_id: str, values: dict[str, Any]) -> bool:
    """Set ``values`` (name, name_source, attributes, updated_at) on the contact; False
    when absent."""
    result = conn.execute(update(contacts).where(contacts.c.id == contact_id).values(values))
    return bool(result.rowcount)


def update_conversation_sync(
    conn: SyncConnection, conversation_id: str, values: dict[str, Any]
) -> bool:
    """Set ``values`` (assigned_user_id, updated_at) on the conversation; False when absent."""
    stmt = update(conversations).where(conversations.c.id == conversation_id).values(values)
    return bool(conn.execute(stmt).rowcount)


def mark_conversation_unread_sync(conn: SyncConnection, conversation_id: str, now: float) -> None:
    """Flag the conversation unread again: a count of 0 becomes 1, a higher count stays
    (the messages behind it are still unread)."""
    conn.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id)
        .values(
            unread_count=case(
                (conversations.c.unread_count == 0, 1), else_=conversations.c.unread_count
            ),
            updated_at=now,
        )
    )


def conversations_of_contact_sync(conn: SyncConnection, contact_id: str) -> list[dict[str, Any]]:
    """The contact's conversations (one per channel it wrote on or was written to on)."""
    stmt = select(conversations).where(conversations.c.contact_id == contact_id)
    return [dict(r._mapping) for r in conn.execute(stmt.order_by(conversations.c.id))]


def contact_seen_by_sync(conn: SyncConnection, reader: Reader, contact_id: str) -> bool:
    """Whether ``reader`` sees one of the contact's conversations (every reader who sees
    every chat sees every contact)."""
    if reader.every_chat and reader.channel_ids is None:
        return True
    stmt = select(conversations.c.id).where(
        conversations.c.contact_id == contact_id, conversations_seen_by(reader)
    )
    return conn.execute(stmt.limit(1)).first() is not None
