"""Campaigns, their recipients, and per-template funnels kept by triggers.

Why triggers: a campaign message's status is changed by the send worker, the webhook
processor, parked statuses, lease expiry, the uncertain reconciler and operator retries,
and replies arrive through inbound processing. Counters kept by triggers change in the
same transaction as every one of those writes, including writers added later, so they
always equal a recount; code in each path would be one forgotten call away from drift.

Funnel semantics (a message counts in each bucket once, by its current status, which
only moves forward): ``queued`` every message created; ``sent`` status sent, delivered
or read; ``delivered`` delivered or read; ``read`` read; ``failed`` failed. So
queued >= sent >= delivered >= read whatever order statuses arrive in, and a status
seen twice changes nothing. ``replied``: recipients whose campaign message was followed
by an inbound message in the same chat and channel within the campaign's reply window.

The message triggers fire only when a status crosses a bucket (queued, sending and
uncertain are one bucket), so claims and lease expiry never touch the counter row.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

CAMPAIGN_ROWS = "campaign_id IS NOT NULL"


def _flag(condition: str) -> str:
    return f"(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _stage(row: str) -> str:
    """A status's funnel bucket: waiting statuses are one bucket."""
    return (
        f"(CASE WHEN {row}.status IN ('queued','sending','uncertain') THEN 'queued' "
        f"ELSE {row}.status END)"
    )


# Bucket membership of a message row, 0 or 1.
_MESSAGE_BUCKETS = {
    "sent": "{r}.status IN ('sent','delivered','read')",
    "delivered": "{r}.status IN ('delivered','read')",
    '"read"': "{r}.status = 'read'",
    "failed": "{r}.status = 'failed'",
}

# Counters of a recipient row, 0 or 1.
_RECIPIENT_COUNTERS = {
    "total": "1 = 1",
    "skipped_opted_out": "{r}.status = 'skipped' AND {r}.skip_reason = 'opted_out'",
    "skipped_other": "{r}.status = 'skipped' AND COALESCE({r}.skip_reason, '') <> 'opted_out'",
    "replied": "{r}.replied_at IS NOT NULL",
}


def _delta(counters: dict[str, str], key_row: str, new: str | None, old: str | None) -> str:
    """UPDATE campaign_stats adding the new row's memberships and removing the old's."""
    sets = []
    for column, condition in counters.items():
        term = column
        if new is not None:
            term += " + " + _flag(condition.format(r=new))
        if old is not None:
            term += " - " + _flag(condition.format(r=old))
        sets.append(f"{column} = {term}")
    return (
        f"UPDATE campaign_stats SET {', '.join(sets)} "
        f"WHERE campaign_id = {key_row}.campaign_id AND template_name = {key_row}.template_name"
    )


def _message_delta(new: str | None, old: str | None) -> str:
    counters = dict(_MESSAGE_BUCKETS)
    if new is None or old is None:
        counters = {"queued": "1 = 1", **counters}
    return _delta(counters, new or old or "", new, old)


def _reply(new: str) -> str:
    """Mark the campaign messages this inbound message answers (once per recipient)."""
    return f"""UPDATE campaign_recipients SET replied_at = {new}.created_at,
                                       reply_message_id = {new}.id
    WHERE replied_at IS NULL AND message_id IN (
        SELECT m.id FROM messages m JOIN campaigns c ON c.id = m.campaign_id
        WHERE m.campaign_id IS NOT NULL AND m.chat_id = {new}.chat_id
          AND m.channel_id = {new}.channel_id AND m.direction = 'out'
          AND m.created_at <= {new}.created_at
          AND m.created_at >= {new}.created_at - c.reply_window_seconds)"""


SQLITE_UP = [
    f"""CREATE TRIGGER messages_campaign_stats_ai AFTER INSERT ON messages
    WHEN new.campaign_id IS NOT NULL BEGIN {_message_delta("new", None)}; END""",
    f"""CREATE TRIGGER messages_campaign_stats_au AFTER UPDATE OF status ON messages
    WHEN new.campaign_id IS NOT NULL AND {_stage("old")} IS NOT {_stage("new")}
    BEGIN {_message_delta("new", "old")}; END""",
    f"""CREATE TRIGGER messages_campaign_stats_ad AFTER DELETE ON messages
    WHEN old.campaign_id IS NOT NULL BEGIN {_message_delta(None, "old")}; END""",
    f"""CREATE TRIGGER messages_campaign_reply_ai AFTER INSERT ON messages
    WHEN new.direction = 'in' BEGIN {_reply("new")}; END""",
    f"""CREATE TRIGGER campaign_recipients_stats_ai AFTER INSERT ON campaign_recipients
    BEGIN {_delta(_RECIPIENT_COUNTERS, "new", "new", None)}; END""",
    f"""CREATE TRIGGER campaign_recipients_stats_au
    AFTER UPDATE OF status, skip_reason, replied_at ON campaign_recipients
    WHEN old.status IS NOT new.status OR old.skip_reason IS NOT new.skip_reason
      OR (old.replied_at IS NULL) <> (new.replied_at IS NULL)
    BEGIN {_delta(_RECIPIENT_COUNTERS, "new", "new", "old")}; END""",
    f"""CREATE TRIGGER campaign_recipients_stats_ad AFTER DELETE ON campaign_recipients
    BEGIN {_delta(_RECIPIENT_COUNTERS, "old", None, "old")}; END""",
]

SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_ad",
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_au",
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_ai",
    "DROP TRIGGER IF EXISTS messages_campaign_reply_ai",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_ad",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_au",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_ai",
]


def _pg_function(name: str, insert: str, update: str, delete: str) -> str:
    return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {insert};
        ELSIF TG_OP = 'UPDATE' THEN
            {update};
        ELSE
            {delete};
        END IF;
        RETURN NULL;
    END $$"""


PG_UP = [
    _pg_function(
        "campaign_stats_from_messages",
        _message_delta("NEW", None),
        _message_delta("NEW", "OLD"),
        _message_delta(None, "OLD"),
    ),
    """CREATE TRIGGER messages_campaign_stats_ai AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.campaign_id IS NOT NULL)
    EXECUTE FUNCTION campaign_stats_from_messages()""",
    f"""CREATE TRIGGER messages_campaign_stats_au AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN (NEW.campaign_id IS NOT NULL
                       AND {_stage("OLD")} IS DISTINCT FROM {_stage("NEW")})
    EXECUTE FUNCTION campaign_stats_from_messages()""",
    """CREATE TRIGGER messages_campaign_stats_ad AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.campaign_id IS NOT NULL)
    EXECUTE FUNCTION campaign_stats_from_messages()""",
    f"""CREATE FUNCTION campaign_reply_from_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_reply("NEW")};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER messages_campaign_reply_ai AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.direction = 'in') EXECUTE FUNCTION campaign_reply_from_messages()""",
    _pg_function(
        "campaign_stats_from_recipients",
        _delta(_RECIPIENT_COUNTERS, "NEW", "NEW", None),
        _delta(_RECIPIENT_COUNTERS, "NEW", "NEW", "OLD"),
        _delta(_RECIPIENT_COUNTERS, "OLD", None, "OLD"),
    ),
    """CREATE TRIGGER campaign_recipients_stats_ai AFTER INSERT ON campaign_recipients
    FOR EACH ROW EXECUTE FUNCTION campaign_stats_from_recipients()""",
    """CREATE TRIGGER campaign_recipients_stats_au
    AFTER UPDATE OF status, skip_reason, replied_at ON campaign_recipients
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.skip_reason IS DISTINCT FROM NEW.skip_reason
                       OR (OLD.replied_at IS NULL) <> (NEW.replied_at IS NULL))
    EXECUTE FUNCTION campaign_stats_from_recipients()""",
    """CREATE TRIGGER campaign_recipients_stats_ad AFTER DELETE ON campaign_recipients
    FOR EACH ROW EXECUTE FUNCTION campaign_stats_from_recipients()""",
]

PG_DOWN = [
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_ad ON campaign_recipients",
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_au ON campaign_recipients",
    "DROP TRIGGER IF EXISTS campaign_recipients_stats_ai ON campaign_recipients",
    "DROP FUNCTION IF EXISTS campaign_stats_from_recipients()",
    "DROP TRIGGER IF EXISTS messages_campaign_reply_ai ON messages",
    "DROP FUNCTION IF EXISTS campaign_reply_from_messages()",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_ad ON messages",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_au ON messages",
    "DROP TRIGGER IF EXISTS messages_campaign_stats_ai ON messages",
    "DROP FUNCTION IF EXISTS campaign_stats_from_messages()",
]


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("audience_source", sa.String(length=16), nullable=False),
        sa.Column("reply_window_seconds", sa.Float(), nullable=False),
        sa.Column("start_at", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status", "start_at"])
    op.create_table(
        "campaign_recipients",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.Column("template_name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skip_reason", sa.String(length=40), nullable=True),
        sa.Column("message_id", sa.String(length=40), nullable=True),
        sa.Column("queued_at", sa.Float(), nullable=True),
        sa.Column("replied_at", sa.Float(), nullable=True),
        sa.Column("reply_message_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "phone", name="uq_campaign_recipients_phone"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index(
        "ix_campaign_recipients_pending",
        "campaign_recipients",
        ["campaign_id", "id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "campaign_stats",
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("template_name", sa.String(length=200), nullable=False),
        *(
            sa.Column(name, sa.Integer(), server_default="0", nullable=False)
            for name in (
                "total",
                "skipped_opted_out",
                "skipped_other",
                "queued",
                "sent",
                "delivered",
                "read",
                "failed",
                "replied",
            )
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "template_name"),
    )
    op.create_index(
        "ix_messages_campaign",
        "messages",
        ["campaign_id", "template_name", "status"],
        sqlite_where=sa.text(CAMPAIGN_ROWS),
        postgresql_where=sa.text(CAMPAIGN_ROWS),
    )
    op.create_index(
        "ix_messages_campaign_chat",
        "messages",
        ["chat_id", "created_at"],
        sqlite_where=sa.text(CAMPAIGN_ROWS),
        postgresql_where=sa.text(CAMPAIGN_ROWS),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else PG_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else PG_DOWN:
        op.execute(statement)
    op.drop_index("ix_messages_campaign_chat", table_name="messages")
    op.drop_index("ix_messages_campaign", table_name="messages")
    op.drop_table("campaign_stats")
    op.drop_index("ix_campaign_recipients_pending", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
    op.drop_table("campaigns")
