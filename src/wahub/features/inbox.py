"""What the dashboard's inbox shows: conversations unread first, with the names a person
reads (the contact's, else the chat's), and one conversation's thread with what may be
sent to it now.

Built on ``Conversations`` (the API's visibility rules: an agent sees the chats of the
groups assigned to them and the conversations assigned to them; anything else is
NotFound, also by typing its URL). A page costs the same few queries whatever the size
of the database: two pages of conversations, then one read for their names.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.domain.actors import Actor
from wahub.domain.phones import is_group_chat
from wahub.features.conversations import Conversations
from wahub.store import channels as channel_q
from wahub.store.database import Database
from wahub.store.schema import chats, users

PAGE = 50
THREAD = 50


@dataclass(frozen=True, slots=True)
class InboxRow:
    conversation: dict[str, Any]
    name: str
    assignee: str | None

    @property
    def unread(self) -> int:
        return int(self.conversation["unread_count"] or 0)


@dataclass(frozen=True, slots=True)
class Thread:
    """One conversation, its messages oldest first, and what may be sent now."""

    conversation: dict[str, Any]
    name: str
    messages: list[dict[str, Any]]
    channel: dict[str, Any]
    templates: list[dict[str, Any]]
    window_open: bool  # False: only a template is delivered (Meta's 24-hour rule)
    window_reason: str | None  # why it is closed, for people


class Inbox:
    def __init__(self, db: Database, conversations: Conversations) -> None:
        self.db = db
        self.conversations = conversations

    async def page(self, actor: Actor) -> list[InboxRow]:
        """Up to PAGE unread conversations, then the newest others, up to PAGE in all
        of those; each with its name and assignee."""
        unread, _ = await self.conversations.list_page(
            actor, channel_id=None, unread_only=True, cursor=None, limit=PAGE
        )
        recent, _ = await self.conversations.list_page(
            actor, channel_id=None, unread_only=False, cursor=None, limit=PAGE
        )
        seen = {row["id"] for row in unread}
        rows = unread + [row for row in recent if row["id"] not in seen]
        chat_names, user_names = await self.db.read_one(
            functools.partial(
                _names_sync,
                chat_ids=sorted({r["chat_id"] for r in rows}),
                user_ids=sorted({r["assigned_user_id"] for r in rows if r["assigned_user_id"]}),
            )
        )
        return [
            InboxRow(
                row,
                display_name(row, chat_names.get(row["chat_id"])),
                user_names.get(row["assigned_user_id"]),
            )
            for row in rows
        ]

    async def thread(self, actor: Actor, conversation_id: str, *, now: float) -> Thread:
        """The conversation (NotFound when absent or not the actor's to see)."""
        row = await self.conversations.get(actor, conversation_id, messages=THREAD)
        chat_names, _ = await self.db.read_one(
            functools.partial(_names_sync, chat_ids=[row["chat_id"]], user_ids=[])
        )
        channel, templates = await self.db.read_one(
            functools.partial(_channel_and_templates_sync, channel_id=row["channel_id"])
        )
        open_, reason = service_window(row, channel, now=now)
        contact = row.get("contact") or {}
        named = {**row, "contact_name": contact.get("name"), "contact_phone": contact.get("phone")}
        return Thread(
            conversation=row,
            name=display_name(named, chat_names.get(row["chat_id"])),
            messages=[{**m, "shown": shown_text(m)} for m in reversed(row["messages"])],
            channel=channel,
            templates=templates,
            window_open=open_,
            window_reason=reason,
        )


def display_name(row: dict[str, Any], chat_name: str | None) -> str:
    """The contact's name, else the chat's (a group's subject), else the number or id."""
    name = row.get("contact_name") or chat_name
    if name:
        return str(name)
    if row.get("contact_phone"):
        return str(row["contact_phone"])
    chat_id = str(row["chat_id"])
    return chat_id if is_group_chat(chat_id) else "+" + chat_id.split("@", 1)[0]


def shown_text(message: dict[str, Any]) -> str:
    """What a thread shows of a message: its text, a caption, or what kind it is."""
    if message.get("text"):
        return str(message["text"])
    content = message.get("content")
    if isinstance(content, dict):
        text = content.get("text")
        if isinstance(text, dict) and text.get("body"):
            return str(text["body"])
        media = content.get(message.get("type") or "")
        if isinstance(media, dict) and media.get("caption"):
            return f"[{message['type']}] {media['caption']}"
    if message.get("template_name"):
        return f"[template {message['template_name']}]"
    return f"[{message.get('type') or 'message'}]"


def service_window(
    conversation: dict[str, Any], channel: dict[str, Any], *, now: float
) -> tuple[bool, str | None]:
    """Whether a free-form message may go now, and if not why: the rule
    ``check_may_send`` enforces when the message is sent, said before it is typed."""
    if is_group_chat(conversation["chat_id"]):
        return True, None
    if channel["kind"] != "cloudapi" or not channel["enforce_service_window"]:
        return True, None
    until = conversation["service_window_until"]
    if until is not None and until > now:
        return True, None
    if until is None:
        return False, "they never wrote to this number, so WhatsApp delivers only a template"
    closed = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
    return False, f"their last message is over 24 hours old (the window closed {closed})"


def _names_sync(
    conn: SyncConnection, chat_ids: list[str], user_ids: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    chat_names: dict[str, str] = {}
    if chat_ids:
        stmt = select(chats.c.chat_id, chats.c.name).where(chats.c.chat_id.in_(chat_ids))
        chat_names = {r.chat_id: r.name for r in conn.execute(stmt) if r.name}
    user_names: dict[str, str] = {}
    if user_ids:
        stmt_users = select(users.c.id, users.c.name).where(users.c.id.in_(user_ids))
        user_names = {r.id: r.name for r in conn.execute(stmt_users)}
    return chat_names, user_names


def _channel_and_templates_sync(
    conn: SyncConnection, channel_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    row = channel_q.get_channel_sync(conn, channel_id, include_removed=True)
    assert row is not None  # a removed channel keeps its row (its conversations need it)
    channel = {k: v for k, v in row.items() if k != "credentials"}  # sealed, but not for pages
    return channel, channel_q.list_templates_sync(conn, channel_id)
