"""One message in flight per ordering key, enforced by the database.

The claim query already picks at most one head per chat; this index makes a second
in-flight message of the same chat impossible even if two workers race (PostgreSQL,
several processes), instead of relying on the query alone.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

IN_FLIGHT = "status IN ('sending','uncertain')"


def upgrade() -> None:
    op.create_index(
        "ux_messages_one_in_flight",
        "messages",
        ["ordering_key"],
        unique=True,
        sqlite_where=sa.text(IN_FLIGHT),
        postgresql_where=sa.text(IN_FLIGHT),
    )


def downgrade() -> None:
    op.drop_index("ux_messages_one_in_flight", table_name="messages")
