"""Inbound: contacts, leads, conversations, notifications, auto-replies; inbound columns
on messages; the per-channel switch for the 24-hour customer-service window.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_MESSAGE_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[str]], ...] = (
    ("sender_phone", sa.String(length=32)),
    ("sender_name", sa.String(length=300)),
    ("text", sa.Text()),
    ("quoted_message_id", sa.String(length=40)),
    ("source", sa.String(length=20)),
)


def upgrade() -> None:
    op.add_column(
        "channels",
        sa.Column("enforce_service_window", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    for name, type_ in _MESSAGE_COLUMNS:
        op.add_column("messages", sa.Column(name, type_, nullable=True))

    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("wa_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("name_source", sa.String(length=40), nullable=True),
        sa.Column("opted_out_at", sa.Float(), nullable=True),
        sa.Column("opt_out_reason", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phone"),
    )

    op.create_table(
        "leads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_user_id", sa.String(length=40), nullable=True),
        sa.Column("first_message_at", sa.Float(), nullable=True),
        sa.Column("last_message_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["owner_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id"),
    )
    op.create_index("ix_leads_status", "leads", ["status"])

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=True),
        sa.Column("lead_id", sa.String(length=40), nullable=True),
        sa.Column("last_message_id", sa.String(length=40), nullable=True),
        sa.Column("last_message_at", sa.Float(), nullable=True),
        sa.Column("last_message_preview", sa.String(length=200), nullable=True),
        sa.Column("last_message_direction", sa.String(length=8), nullable=True),
        sa.Column("last_inbound_at", sa.Float(), nullable=True),
        sa.Column("unread_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("service_window_until", sa.Float(), nullable=True),
        sa.Column("assigned_user_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.ForeignKeyConstraint(["assigned_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel_id", "chat_id", name="uq_conversations_channel_chat"),
    )
    op.create_index("ix_conversations_last_message", "conversations", ["last_message_at"])
    op.create_index("ix_conversations_chat", "conversations", ["chat_id"])
    op.create_index("ix_conversations_contact", "conversations", ["contact_id"])

    op.create_table(
        "notifications",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=True),
        sa.Column("message_id", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notifications_conversation", "notifications", ["conversation_id", "id"])
    op.create_index("ix_notifications_user", "notifications", ["user_id", "id"])

    op.create_table(
        "auto_reply_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("match_kind", sa.String(length=20), nullable=False),
        sa.Column("pattern", sa.String(length=500), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=False),
        sa.Column("business_hours", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), server_default="86400", nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"]),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "auto_reply_log",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["auto_reply_rules.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_auto_reply_log_rule_chat", "auto_reply_log", ["rule_id", "chat_id", "sent_at"]
    )
    op.create_index("ix_auto_reply_log_chat", "auto_reply_log", ["chat_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_auto_reply_log_chat", table_name="auto_reply_log")
    op.drop_index("ix_auto_reply_log_rule_chat", table_name="auto_reply_log")
    op.drop_table("auto_reply_log")
    op.drop_table("auto_reply_rules")
    op.drop_index("ix_notifications_user", table_name="notifications")
    op.drop_index("ix_notifications_conversation", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_conversations_contact", table_name="conversations")
    op.drop_index("ix_conversations_chat", table_name="conversations")
    op.drop_index("ix_conversations_last_message", table_name="conversations")
    op.drop_table("conversations")
    op.drop_index("ix_leads_status", table_name="leads")
    op.drop_table("leads")
    op.drop_table("contacts")
    with op.batch_alter_table("messages") as batch:
        for name, _ in reversed(_MESSAGE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("enforce_service_window")
