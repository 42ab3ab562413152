"""Groups, accounts and lookup by phone: group members, linked ids, accounts, cron slots.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "group_members",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.Column("member_phone", sa.String(length=32), nullable=True),
        sa.Column("member_lid", sa.String(length=64), nullable=True),
        sa.Column("rank", sa.String(length=16), nullable=False),
        sa.Column("synced_at", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "member_phone IS NOT NULL OR member_lid IS NOT NULL",
            name="ck_group_members_identity",
        ),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.chat_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_group_members_chat_phone", "group_members", ["chat_id", "member_phone"], unique=True
    )
    op.create_index(
        "ux_group_members_chat_lid", "group_members", ["chat_id", "member_lid"], unique=True
    )
    op.create_index("ix_group_members_phone", "group_members", ["member_phone"])
    op.create_index("ix_group_members_lid", "group_members", ["member_lid"])

    op.create_table(
        "lid_links",
        sa.Column("lid", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("learned_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lid"),
    )
    op.create_index("ix_lid_links_phone", "lid_links", ["phone"])

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_ref"),
    )

    op.create_table(
        "account_chats",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.chat_id"]),
        sa.PrimaryKeyConstraint("account_id", "chat_id"),
    )
    op.create_index("ix_account_chats_chat", "account_chats", ["chat_id"])

    op.create_table(
        "periodic_runs",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slot", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "slot"),
    )


def downgrade() -> None:
    op.drop_table("periodic_runs")
    op.drop_index("ix_account_chats_chat", table_name="account_chats")
    op.drop_table("account_chats")
    op.drop_table("accounts")
    op.drop_index("ix_lid_links_phone", table_name="lid_links")
    op.drop_table("lid_links")
    op.drop_index("ix_group_members_lid", table_name="group_members")
    op.drop_index("ix_group_members_phone", table_name="group_members")
    op.drop_index("ux_group_members_chat_lid", table_name="group_members")
    op.drop_index("ux_group_members_chat_phone", table_name="group_members")
    op.drop_table("group_members")
