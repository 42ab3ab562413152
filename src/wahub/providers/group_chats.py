"""A chat directory over a group directory: chat names on providers that only list groups.

WHAPI has no chat-name lookup of its own that we use; its group lookup carries the name.
People's names on WHAPI and the Cloud API come from inbound profiles instead, so
``get_chat`` for a person is ``NotFound`` without any provider call.
"""

from __future__ import annotations

from wahub.domain.errors import NotFound
from wahub.domain.phones import GROUP_SUFFIX
from wahub.providers.base import ChatInfo, ChatPage, GroupDirectory

# WHAPI pages at most 500 groups (GET /groups count).
MAX_GROUP_PAGE = 500


class GroupChatDirectory:
    """``ChatDirectory`` backed by a ``GroupDirectory`` (groups only)."""

    def __init__(self, groups: GroupDirectory) -> None:
        self._groups = groups

    async def get_chat(self, chat_id: str) -> ChatInfo:
        if not chat_id.endswith(GROUP_SUFFIX):
            raise NotFound(f"{chat_id} is not a group: this provider names groups only")
        group = await self._groups.get_group(chat_id)
        return ChatInfo(chat_id=group.chat_id, name=group.name, kind="group")

    async def list_chats(self, *, offset: int = 0, limit: int = 100) -> ChatPage:
        page = await self._groups.list_groups(offset=offset, count=min(limit, MAX_GROUP_PAGE))
        return ChatPage(
            chats=tuple(ChatInfo(g.chat_id, g.name, "group") for g in page.groups),
            total=page.total,
            offset=page.offset,
        )
