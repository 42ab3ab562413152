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
    user_id: str
    user_name: str
    role: Role
    key_id: str

    @property
    def can_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.AGENT)

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.ADMIN, Role.VIEWER)
