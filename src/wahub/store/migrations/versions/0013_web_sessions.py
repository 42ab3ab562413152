"""WhatsApp Web sessions: a channel of kind ``web`` holds a linked phone.

- The session's state (``session_state``: stopped, starting, scan_qr, working, degraded,
  failed, logged_out; null for other kinds) with its reason and since when, what the
  operator wants (``session_desired``: running or stopped, plus ``session_epoch``, which
  a restart bumps, and ``session_logout_requested``), the current QR string and when it
  expires, our own number, LID and push name once connected, the last keep-alive, and
  when the number was first linked (new numbers get a daily cap).
- A pairing-code request (``pair_phone``) and its answer (``pairing_code``): the API asks,
  the session process (which holds the connection) answers.
- Pacing against bans: ``daily_cap`` (null: the setting's default) and
  ``chat_jitter_seconds`` (random extra spacing between two messages to one chat).
- ``channel_state_history``: one row per state change, the feed of ``channel.session``
  events on ``/v1/stream``.
- ``session_lease_owner``/``session_lease_until``: the one session process that holds
  the phone's connection (ordinary workers lease channels by ``lease_owner``; web
  channels are leased only by session processes, on these columns).

Revision ID: 0013
Revises: 0016 (assigned 0013, chained after main's 0016 so there is one head)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("session_state", sa.String(20), nullable=True),
    sa.Column("session_reason", sa.Text(), nullable=True),
    sa.Column("session_state_at", sa.Float(), nullable=True),
    sa.Column("session_desired", sa.String(20), nullable=True),
    sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("session_logout_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("session_lease_owner", sa.String(80), nullable=True),
    sa.Column("session_lease_until", sa.Float(), nullable=True),
    sa.Column("qr", sa.Text(), nullable=True),
    sa.Column("qr_expires_at", sa.Float(), nullable=True),
    sa.Column("me_phone", sa.String(32), nullable=True),
    sa.Column("me_lid", sa.String(80), nullable=True),
    sa.Column("push_name", sa.String(200), nullable=True),
    sa.Column("last_keepalive_at", sa.Float(), nullable=True),
    sa.Column("linked_at", sa.Float(), nullable=True),
    sa.Column("pair_phone", sa.String(32), nullable=True),
    sa.Column("pairing_code", sa.String(40), nullable=True),
    sa.Column("pairing_error", sa.Text(), nullable=True),
    sa.Column("daily_cap", sa.Integer(), nullable=True),
    sa.Column("chat_jitter_seconds", sa.Float(), nullable=False, server_default="0"),
)


def upgrade() -> None:
    for column in _COLUMNS:
        op.add_column("channels", column)
    op.create_table(
        "channel_state_history",
        sa.Column("id", SeqType, primary_key=True, autoincrement=True),
        sa.Column("channel_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_channel_state_history_channel", "channel_state_history", ["channel_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_channel_state_history_channel", table_name="channel_state_history")
    op.drop_table("channel_state_history")
    with op.batch_alter_table("channels") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column.name)
