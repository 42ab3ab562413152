"""Campaign messages' index without ``status``.

0006 indexed campaign messages on (campaign_id, template_name, status) so the recount
behind ``wahub stats verify`` was one index-only scan. But every status change of a
campaign message then rewrote its index entry, and ``wahub bench ingest`` put most of the
status-apply slowdown on campaign messages there, not in the counter triggers (SQLite,
noisy 2-core machine: 22-43 % slower with it, 10-22 % after this revision, 5 % with the
index but no counter trigger). The recount is an operator's check; status ingest is the
hot path. Without ``status`` the index still finds a campaign's
messages, and SQLite leaves it alone when only the status changes.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CAMPAIGN_ROWS = "campaign_id IS NOT NULL"


def _create(columns: list[str]) -> None:
    op.create_index(
        "ix_messages_campaign",
        "messages",
        columns,
        sqlite_where=sa.text(CAMPAIGN_ROWS),
        postgresql_where=sa.text(CAMPAIGN_ROWS),
    )


def upgrade() -> None:
    op.drop_index("ix_messages_campaign", table_name="messages")
    _create(["campaign_id", "template_name"])


def downgrade() -> None:
    op.drop_index("ix_messages_campaign", table_name="messages")
    _create(["campaign_id", "template_name", "status"])
