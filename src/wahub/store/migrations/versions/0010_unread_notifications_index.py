"""Unread notifications indexed.

``GET /v1/notifications`` answers every page with the caller's unread count, and its
``?unread=true`` filter and ``POST /v1/notifications/read-all`` look for unread rows only.
Every inbound message writes a notification and nothing deletes them, so without an
index each of those reads every notification ever written. An index of the unread ones
holds only what nobody has read yet (marking a conversation read marks its
notifications): an entry is added when a notification is written and removed when it is
read. In id order, so the newest unread come first; with ``user_id``, so counting the
unread of a caller who sees every chat reads the index alone.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UNREAD = "read_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["id", "user_id"],
        sqlite_where=sa.text(UNREAD),
        postgresql_where=sa.text(UNREAD),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_unread", table_name="notifications")
