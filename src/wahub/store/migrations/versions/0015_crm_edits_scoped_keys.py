"""What a CRM may change and how narrowly a key may act.

- ``contacts.attributes`` (new): free-form JSON the CRM keeps on a contact (set by
  ``PATCH /v1/contacts/{id}``). The replication triggers are generated from a table's
  columns, so they are installed again here and the log carries the new column.
- ``api_keys.channel_ids`` (new): None for a key that may act on every channel, or the
  list of channel ids it is limited to. ``api_keys.read_only`` (new): the key may read
  what its role sees but never write.

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
    install_capture(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("read_only")
        batch.drop_column("channel_ids")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("attributes")
    install_capture(op.get_bind())
