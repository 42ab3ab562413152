"""What people change on the CRM's records: a lead's status and owner, a contact's name
and attributes, a conversation's assignee and read state (``PATCH`` routes).

Each edit checks, reads and writes in one transaction; the replication triggers log
the new row in it, and the caller gets the event to publish on ``/v1/stream`` once it
committed. Who may edit what follows who may see what: admins everything, agents the
contacts and leads of conversations they see and those conversations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection as SyncConnection

from wahub.domain.actors import Actor
from wahub.domain.errors import NotFound, PayloadTooLarge, ValidationError
from wahub.domain.phones import PERSON_SUFFIX
from wahub.store import conversations as conversation_q
from wahub.store import records as q
from wahub.store.access import get_user_sync
from wahub.store.conversations import LEAD_STATUSES, Reader
from wahub.store.database import Database

# A contact's attributes are a CRM's few fields, not a document store: bounded so one
# PATCH cannot bloat every list, replication payload and event that carries the row.
ATTRIBUTES_MAX_BYTES = 16 * 1024
ATTRIBUTES_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Edited:
    """The row after an edit, and the realtime event announcing it (publish it only
    after the edit returned: it is committed then)."""

    row: dict[str, Any]
    event: dict[str, Any]


class RecordEdits:
    """``PATCH /v1/leads/{id}``, ``/v1/contacts/{id}``, ``/v1/conversations/{id}``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def update_lead(self, actor: Actor, lead_id: str, fields: Mapping[str, Any]) -> Edited:
        """Set ``status`` (one of ``LEAD_STATUSES``) and/or ``owner_user_id`` (a user, or
        None). Raises ValidationError (the allowed statuses in ``details``, or an unknown
        owner), NotFound when absent or not visible to ``actor``."""
        values: dict[str, Any] = {}
        if "status" in fields:
            status = fields["status"]
            if status not in LEAD_STATUSES:
                raise ValidationError(
                    f"status: {status!r} is not a lead status; use one of "
                    + ", ".join(LEAD_STATUSES),
                    details={"field": "status", "allowed": list(LEAD_STATUSES)},
                )
            values["status"] = status
        if "owner_user_id" in fields:
            values["owner_user_id"] = fields["owner_user_id"]
        now = time.time()

        def edit(conn: SyncConnection) -> Edited:
            lead = conversation_q.get_lead_sync(conn, lead_id)
            if lead is None or not q.contact_seen_by_sync(conn, _reader(actor), lead["contact_id"]):
                raise NotFound(f"no lead {lead_id}")
            _check_user(conn, values.get("owner_user_id"), "owner_user_id")
            if values:
                q.update_lead_sync(conn, lead_id, {**values, "updated_at": now})
            row = conversation_q.get_lead_sync(conn, lead_id)
            assert row is not None
            contact = conversation_q.get_contact_sync(conn, row["contact_id"])
            event = {
                "type": "lead.updated",
                "lead_id": lead_id,
                "contact_id": row["contact_id"],
                "status": row["status"],
                "owner_user_id": row["owner_user_id"],
                **_audience(conn, actor, contact),
                "at": now,
            }
            return Edited(row, event)

        return await self.db.write(edit)

    async def update_contact(
        self, actor: Actor, contact_id: str, fields: Mapping[str, Any]
    ) -> Edited:
        """Set ``name`` (None clears it; an operator's name outranks the profile name
        from then on) and/or replace ``attributes`` (a JSON object of at most
        ``ATTRIBUTES_MAX_BYTES``). Raises ValidationError, PayloadTooLarge, NotFound."""
        values: dict[str, Any] = {}
        if "name" in fields:
            name = fields["name"].strip() if isinstance(fields["name"], str) else None
            values["name"] = name or None
            values["name_source"] = "api" if name else None
        if "attributes" in fields:
            values["attributes"] = check_attributes(fields["attributes"])
        now = time.time()

        def edit(conn: SyncConnection) -> Edited:
            if not q.contact_seen_by_sync(conn, _reader(actor), contact_id):
                raise NotFound(f"no contact {contact_id}")
            if values and not q.update_contact_sync(
                conn, contact_id, {**values, "updated_at": now}
            ):
                raise NotFound(f"no contact {contact_id}")
            row = conversation_q.get_contact_sync(conn, contact_id)
            if row is None:
                raise NotFound(f"no contact {contact_id}")
            event = {
                "type": "contact.updated",
                "contact_id": contact_id,
                "name": row["name"],
                "attributes": row["attributes"],
                **_audience(conn, actor, row),
                "at": now,
            }
            return Edited(row, event)

        return await self.db.write(edit)

    async def update_conversation(
        self, actor: Actor, conversation_id: str, fields: Mapping[str, Any]
    ) -> Edited:
        """Set ``assigned_user_id`` (a user, or None) and/or ``read`` (True: unread to
        zero and its notifications read; False: flagged unread). Raises ValidationError
        (unknown user), NotFound when absent or not visible to ``actor``."""
        now = time.time()

        def edit(conn: SyncConnection) -> Edited:
            row = conversation_q.get_conversation_sync(conn, conversation_id)
            if row is None or not conversation_q.is_conversation_seen_by_sync(
                conn, _reader(actor), conversation_id
            ):
                raise NotFound(f"no conversation {conversation_id}")
            if "assigned_user_id" in fields:
                assignee = fields["assigned_user_id"]
                _check_user(conn, assignee, "assigned_user_id")
                q.update_conversation_sync(
                    conn, conversation_id, {"assigned_user_id": assignee, "updated_at": now}
                )
            if fields.get("read") is True:
                conversation_q.mark_conversation_read_sync(conn, conversation_id, now)
            elif fields.get("read") is False:
                q.mark_conversation_unread_sync(conn, conversation_id, now)
            row = conversation_q.get_conversation_sync(conn, conversation_id)
            assert row is not None
            event = {
                "type": "conversation.updated",
                "conversation_id": conversation_id,
                "chat_id": row["chat_id"],
                "channel_id": row["channel_id"],
                "assigned_user_id": row["assigned_user_id"],
                "unread_count": row["unread_count"],
                "last_message_id": row["last_message_id"],
                "at": now,
                "_sender_user_id": actor.user_id,
            }
            return Edited(row, event)

        return await self.db.write(edit)


def check_attributes(value: Any) -> dict[str, Any] | None:
    """``value`` when it is a JSON object (or None) small and shallow enough to keep.

    Raises ValidationError (not an object, nested deeper than ``ATTRIBUTES_MAX_DEPTH``)
    or PayloadTooLarge (over ``ATTRIBUTES_MAX_BYTES`` as compact JSON).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(
            "attributes: must be a JSON object (or null to clear them)",
            details={"field": "attributes"},
        )
    if _depth(value) > ATTRIBUTES_MAX_DEPTH:
        raise ValidationError(
            f"attributes: nested deeper than {ATTRIBUTES_MAX_DEPTH} levels",
            details={"field": "attributes", "max_depth": ATTRIBUTES_MAX_DEPTH},
        )
    size = len(orjson.dumps(value))
    if size > ATTRIBUTES_MAX_BYTES:
        raise PayloadTooLarge(
            f"attributes: {size} bytes as JSON, over the {ATTRIBUTES_MAX_BYTES}-byte limit",
            details={"field": "attributes", "size": size, "limit": ATTRIBUTES_MAX_BYTES},
        )
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _reader(actor: Actor) -> Reader:
    return Reader(
        user_id=actor.user_id, every_chat=actor.sees_everything, channel_ids=actor.channel_ids
    )


def _check_user(conn: SyncConnection, user_id: str | None, field: str) -> None:
    if user_id is not None and get_user_sync(conn, user_id) is None:
        raise ValidationError(
            f"{field}: no user {user_id!r}", details={"field": field, "value": user_id}
        )


def _audience(conn: SyncConnection, actor: Actor, contact: dict[str, Any] | None) -> dict[str, Any]:
    """Who a contact's or lead's event is for: its person chat (agents who see that
    chat get it) and the channels it has conversations on (for channel-scoped keys)."""
    if contact is None:
        return {"chat_id": None, "channel_ids": [], "_sender_user_id": actor.user_id}
    wa_id = contact["wa_id"] or str(contact["phone"]).lstrip("+")
    channel_ids = [c["channel_id"] for c in q.conversations_of_contact_sync(conn, contact["id"])]
    return {
        "chat_id": wa_id + PERSON_SUFFIX,
        "channel_ids": channel_ids,
        "_sender_user_id": actor.user_id,
    }
