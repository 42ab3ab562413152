"""Who is asking: the identity behind an API key, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # everything, including keys, channels and assignments
    AGENT = "agent"  # send (groups only when assigned), read what they may see
    VIEWER = "viewer"  # read only


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller. ``channel_ids`` None: the key acts on every channel; otherwise only on
    those (sends, reads and the stream alike). ``read_only``: the role's reads, no writes."""

    user_id: str
    user_name: str
    role: Role
    key_id: str
    channel_ids: frozenset[str] | None = None
    read_only: bool = False

    @property
    def can_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.AGENT) and not self.read_only

    @property
    def channel_scoped(self) -> bool:
        return self.channel_ids is not None

    def may_use_channel(self, channel_id: str | None) -> bool:
        """Whether the key may act on ``channel_id`` (None, no channel: only unscoped keys)."""
        return self.channel_ids is None or channel_id in self.channel_ids

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.ADMIN, Role.VIEWER)
