"""What a CRM may change, how narrowly a key may act, and the media it sends.

- ``contacts.attributes`` (new): free-form JSON the CRM keeps on a contact (set by
  ``PATCH /v1/contacts/{id}``). The replication triggers are generated from a table's
  columns, so they are installed again here and the log carries the new column.
- ``api_keys.channel_ids`` (new): None for a key that may act on every channel, or the
  list of channel ids it is limited to. ``api_keys.read_only`` (new): the key may read
  what its role sees but never write.
- ``media`` (new): one row per file in the media store (``wahub.media``).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wahub.store.changelog import install_capture

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("attributes", sa.JSON(), nullable=True))
    op.add_column("api_keys", sa.Column("channel_ids", sa.JSON(), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "media",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("mime_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("uploader_user_id", sa.String(40), nullable=True),
        sa.Column("channel_id", sa.String(40), nullable=True),
        sa.Column("chat_id", sa.String(120), nullable=True),
        sa.Column("provider_media_id", sa.String(200), nullable=True),
        sa.Column("provider_channel_id", sa.String(40), nullable=True),
        sa.Column("provider_media_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["uploader_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_media_chat", "media", ["chat_id"])
    install_capture(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_media_chat", table_name="media")
    op.drop_table("media")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("read_only")
        batch.drop_column("channel_ids")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("attributes")
    install_capture(op.get_bind())
