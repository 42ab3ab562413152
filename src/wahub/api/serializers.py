"""Stored rows -> API JSON.

Each ``*_out`` function lists the fields it shows (a whitelist), so a column added to
the schema later (a lease, a hash, a credential) never leaks by accident. Times are
stored as unix seconds and shown as ISO 8601 UTC (``2025-01-31T09:30:00.123Z``).

The pydantic models document the shapes in OpenAPI; routes return the plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from wahub.domain.phones import chat_recipient
from wahub.features.access import CreatedKey


def iso(timestamp: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC with milliseconds and a ``Z``; None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_MESSAGE_TIMES = (
    "created_at",
    "updated_at",
    "sending_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
)


def event_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ``message_events`` row as a history entry."""
    return {
        "status": row["status"],
        "source": row["source"],
        "attempt": row["attempt"],
        "at": iso(row["recorded_at"]),
        "error_code": row["error_code"],
        "detail": row["detail"],
    }


def message_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A message row as the API shows it; ``history`` only when the row carries it.

    Never shows idempotency_key, request_hash, sender or lease fields.
    """
    has_error = row["error_code"] is not None or row["error_title"] is not None
    out: dict[str, Any] = {
        "id": row["id"],
        "status": row["status"],
        "direction": row["direction"],
        "channel_id": row["channel_id"],
        "chat_id": row["chat_id"],
        "to": chat_recipient(row["chat_id"]),
        "type": row["type"],
        "content": row["content"],
        "reply_to": row["reply_to"],
        "priority": row["priority"],
        "attempts": row["attempts"],
        "provider_message_id": row["provider_message_id"],
        "wa_id": row["wa_id"],
        "template_name": row["template_name"],
        "source": row.get("source"),
        "sender_phone": row.get("sender_phone"),
        "sender_name": row.get("sender_name"),
        "text": row.get("text"),
        "quoted_message_id": row.get("quoted_message_id"),
        "error": (
            {
                "code": row["error_code"],
                "title": row["error_title"],
                "detail": row["error_detail"],
            }
            if has_error
            else None
        ),
    }
    for name in _MESSAGE_TIMES:
        out[name] = iso(row[name])
    if "history" in row:
        out["history"] = [event_out(e) for e in row["history"]]
    return out


def channel_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A channel without its credentials or lease."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "phone_number": row["phone_number"],
        "phone_number_id": row["phone_number_id"],
        "base_url": row["base_url"],
        "api_version": row["api_version"],
        "rate_per_second": row["rate_per_second"],
        "pair_burst": row["pair_burst"],
        "pair_interval_seconds": row["pair_interval_seconds"],
        "status": row["status"],
        "verified_at": iso(row.get("verified_at")),
        "paused": bool(row.get("paused")),
        "enforce_service_window": bool(row.get("enforce_service_window")),
        "heartbeat_at": iso(row.get("heartbeat_at")),
        "created_at": iso(row["created_at"]),
        "session_state": row.get("session_state"),
        "chat_jitter_seconds": float(row.get("chat_jitter_seconds") or 0.0),
        "daily_cap": row.get("daily_cap"),
    }


def template_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "channel_id": row["channel_id"],
        "name": row["name"],
        "language": row["language"],
        "category": row["category"],
        "body_parameters": row["body_parameters"],
        "created_at": iso(row["created_at"]),
    }


def chat_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "chat_id": row["chat_id"],
        "kind": row["kind"],
        "channel_id": row["channel_id"],
        "name": row["name"],
        "name_source": row["name_source"],
        "is_active": bool(row["is_active"]),
        "readonly": bool(row["readonly"]),
        "sync_status": row["sync_status"],
        "last_synced_at": iso(row["last_synced_at"]),
        "created_at": iso(row["created_at"]),
    }


def key_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A key's metadata: the prefix tells keys apart; neither secret nor hash is shown."""
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "user": row["user_name"],
        "role": row["role"],
        "prefix": row["prefix"],
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
        "channel_ids": row["channel_ids"],
        "read_only": bool(row["read_only"]),
    }


def created_key_out(created: CreatedKey) -> dict[str, Any]:
    """The one response that carries a key's secret."""
    return {
        "id": created.key_id,
        "key": created.key,
        "user_id": created.user_id,
        "user": created.user_name,
        "role": created.role.value,
        "prefix": created.prefix,
        "channel_ids": None if created.channel_ids is None else list(created.channel_ids),
        "read_only": created.read_only,
    }


# --- OpenAPI documentation models --------------------------------------------------------


class ErrorInfoOut(BaseModel):
    code: str | None
    title: str | None
    detail: str | None


class EventOut(BaseModel):
    status: str
    source: str
    attempt: int
    at: str | None
    error_code: str | None
    detail: str | None


class MessageOut(BaseModel):
    id: str
    status: str
    direction: str
    channel_id: str
    chat_id: str
    to: str
    type: str
    content: dict[str, Any]
    reply_to: str | None
    priority: int
    attempts: int
    provider_message_id: str | None
    wa_id: str | None
    template_name: str | None
    source: str | None = None
    sender_phone: str | None = None
    sender_name: str | None = None
    text: str | None = None
    quoted_message_id: str | None = None
    error: ErrorInfoOut | None
    created_at: str
    updated_at: str
    sending_at: str | None
    sent_at: str | None
    delivered_at: str | None
    read_at: str | None
    failed_at: str | None
    history: list[EventOut] | None = None


class MessagePage(BaseModel):
    data: list[MessageOut]
    next_cursor: str | None


class ChannelOut(BaseModel):
    id: str
    kind: str
    name: str
    phone_number: str | None
    phone_number_id: str | None
    base_url: str
    api_version: str
    rate_per_second: float
    pair_burst: int
    pair_interval_seconds: float
    status: str = Field(
        description="unverified until a send or a check succeeds with its credentials, "
        "then connected."
    )
    verified_at: str | None = Field(description="When a send or a check last proved it.")
    paused: bool = Field(description="Workers leave its messages queued until resumed.")
    enforce_service_window: bool = False
    heartbeat_at: str | None
    created_at: str
    session_state: str | None = Field(
        default=None,
        description="web channels: stopped, starting, scan_qr, working, degraded, failed "
        "or logged_out (GET /v1/channels/{channel}/session has the details).",
    )
    chat_jitter_seconds: float = Field(
        default=0.0, description="Random extra spacing (0..this s) between sends to a chat."
    )
    daily_cap: int | None = Field(
        default=None,
        description="web channels: messages a day while the number is under a week "
        "linked (null: WAHUB_WEB_NEW_NUMBER_DAILY_CAP).",
    )


class CheckErrorOut(BaseModel):
    code: str = Field(description="The provider's code (190: token refused) or ours.")
    message: str


class ChannelCheckOut(BaseModel):
    ok: bool
    channel: ChannelOut
    error: CheckErrorOut | None


class ChannelRemovedOut(BaseModel):
    id: str
    removed: bool
    failed_messages: int = Field(
        description="Queued messages failed with channel_removed (only with force)."
    )


class TemplateOut(BaseModel):
    channel_id: str
    name: str
    language: str
    category: str
    body_parameters: int
    created_at: str


class ChatOut(BaseModel):
    chat_id: str
    kind: str
    channel_id: str | None
    name: str | None
    name_source: str | None
    is_active: bool
    readonly: bool
    sync_status: str | None
    last_synced_at: str | None
    created_at: str


class KeyOut(BaseModel):
    id: str
    user_id: str
    user: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None
    channel_ids: list[str] | None
    read_only: bool


class CreatedKeyOut(BaseModel):
    id: str
    key: str
    user_id: str
    user: str
    role: str
    prefix: str
    channel_ids: list[str] | None
    read_only: bool


class ChannelList(BaseModel):
    data: list[ChannelOut]


class TemplateList(BaseModel):
    data: list[TemplateOut]


class ChatList(BaseModel):
    data: list[ChatOut]


class KeyList(BaseModel):
    data: list[KeyOut]


# --- conversations, contacts, leads, auto-replies ----------------------------------------


def contact_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "phone": row["phone"],
        "wa_id": row["wa_id"],
        "name": row["name"],
        "name_source": row["name_source"],
        "opted_out": row["opted_out_at"] is not None,
        "opted_out_at": iso(row["opted_out_at"]),
        "opt_out_reason": row["opt_out_reason"],
        "attributes": row.get("attributes") or {},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def lead_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "contact_id": row["contact_id"],
        "status": row["status"],
        "owner_user_id": row["owner_user_id"],
        "first_message_at": iso(row["first_message_at"]),
        "last_message_at": iso(row["last_message_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def conversation_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A conversation; list rows carry the contact's name and phone and the lead's
    status, a single conversation its contact, lead and newest messages."""
    out: dict[str, Any] = {
        "id": row["id"],
        "channel_id": row["channel_id"],
        "chat_id": row["chat_id"],
        "contact_id": row["contact_id"],
        "lead_id": row["lead_id"],
        "assigned_user_id": row["assigned_user_id"],
        "unread_count": row["unread_count"],
        "last_message_id": row["last_message_id"],
        "last_message_at": iso(row["last_message_at"]),
        "last_message_preview": row["last_message_preview"],
        "last_message_direction": row["last_message_direction"],
        "last_inbound_at": iso(row["last_inbound_at"]),
        "service_window_until": iso(row["service_window_until"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if "contact_name" in row:
        out["contact_name"] = row["contact_name"]
        out["contact_phone"] = row["contact_phone"]
        out["opted_out"] = row["contact_opted_out_at"] is not None
        out["lead_status"] = row["lead_status"]
    if "messages" in row:
        out["contact"] = contact_out(row["contact"]) if row["contact"] else None
        out["lead"] = lead_out(row["lead"]) if row["lead"] else None
        out["messages"] = [message_out(m) for m in row["messages"]]
    return out


def notification_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A notification; ``user_id`` None means everyone who sees the conversation."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "conversation_id": row["conversation_id"],
        "message_id": row["message_id"],
        "user_id": row["user_id"],
        "title": row["title"],
        "body": row["body"],
        "created_at": iso(row["created_at"]),
        "read_at": iso(row["read_at"]),
    }


def auto_reply_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel_id": row["channel_id"],
        "name": row["name"],
        "match_kind": row["match_kind"],
        "pattern": row["pattern"],
        "reply_text": row["reply_text"],
        "business_hours": row["business_hours"],
        "enabled": bool(row["enabled"]),
        "cooldown_seconds": row["cooldown_seconds"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
