"""Channel credentials sealed at rest; channels proved before "connected"; removal.

- ``credentials`` held the provider token as a plain JSON object. It now holds one
  Fernet token (a JSON string) of that object, sealed with ``WAHUB_SECRET_KEY`` or the
  SQLite key file (see ``wahub.store.secret_key``). This migration seals every row
  still in plaintext, in the transaction that moves the schema, so no plaintext row
  outlives it; it gets the cipher from ``wahub.store.migrate.upgrade`` and refuses to
  run without one when there is anything to seal.
- ``status`` said ``connected`` from the moment a channel was added, proved or not.
  Existing channels become ``unverified`` until a send or a check succeeds
  (``verified_at``, new, records when).
- ``paused`` (new): workers leave a paused channel's messages queued until it resumes.
- ``removed_at`` (new): a removed channel keeps its row, because its messages, chats
  and conversations refer to it, but leaves every list and frees its name and number.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from wahub.domain.errors import SecretKeyError

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_channels = sa.table(
    "channels",
    sa.column("id", sa.String),
    sa.column("credentials", sa.JSON),
    sa.column("status", sa.String),
)


def _cipher(needed_for: str) -> Any:
    cipher = context.config.attributes.get("credential_cipher")
    if cipher is None:
        raise SecretKeyError(
            f"migration 0012 must {needed_for} and has no key: run it with `wahub migrate` "
            "(WAHUB_SECRET_KEY, or the SQLite key file beside the database)"
        )
    return cipher


def upgrade() -> None:
    op.add_column("channels", sa.Column("removed_at", sa.Float(), nullable=True))
    op.add_column("channels", sa.Column("verified_at", sa.Float(), nullable=True))
    op.add_column(
        "channels", sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    conn = op.get_bind()
    conn.execute(
        _channels.update().where(_channels.c.status == "connected").values(status="unverified")
    )
    rows = conn.execute(sa.select(_channels.c.id, _channels.c.credentials)).all()
    plaintext = [r for r in rows if isinstance(r.credentials, Mapping)]
    if not plaintext:
        return
    cipher = _cipher("seal the channels' plaintext credentials")
    for row in plaintext:
        conn.execute(
            _channels.update()
            .where(_channels.c.id == row.id)
            .values(credentials=cipher.reseal(row.credentials, channel=row.id))
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_channels.c.id, _channels.c.credentials)).all()
    sealed = [r for r in rows if isinstance(r.credentials, str)]
    if sealed:
        cipher = _cipher("open the channels' sealed credentials for the older schema")
        for row in sealed:
            conn.execute(
                _channels.update()
                .where(_channels.c.id == row.id)
                .values(credentials=cipher.open(row.credentials, channel=row.id))
            )
    conn.execute(
        _channels.update().where(_channels.c.status == "unverified").values(status="connected")
    )
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("paused")
        batch.drop_column("verified_at")
        batch.drop_column("removed_at")
