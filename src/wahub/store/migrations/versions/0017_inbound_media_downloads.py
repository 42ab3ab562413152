"""Inbound media is downloaded once into the media store.

- ``media_downloads`` (new): one row per received message whose file is still to be
  fetched from its provider, written in the transaction that stores the message (so a
  crash loses no download), deleted in the transaction that links the stored file to
  the message (or records why it never will be). Due rows are claimed by moving
  ``next_attempt_at`` past a lease, so two processes never fetch one file at once.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_downloads",
        sa.Column("message_id", sa.String(40), primary_key=True),
        sa.Column("channel_id", sa.String(40), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("chat_id", sa.String(120), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("mime_type", sa.String(100)),
        sa.Column("filename", sa.String(255)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_media_downloads_due", "media_downloads", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_media_downloads_due", table_name="media_downloads")
    op.drop_table("media_downloads")
