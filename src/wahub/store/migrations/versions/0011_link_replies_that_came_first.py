"""Replies that arrive before the message they quote are linked when it arrives.

An inbound reply (or reaction) names the provider id of the message it answers
(``reply_to``) and is linked to it (``quoted_message_id``) when that message is stored.
Webhooks come in any order, and a provider id can be learned after the reply: our own
send's result, a status that teaches the id, a message sent from the phone that the
provider reports late. Until now such a reply stayed unlinked for good. Triggers link it
when the quoted message gets its provider id, by insert or by update, in the same
transaction, whichever path wrote it (the way the search and counter triggers work).

A partial index holds only the replies still waiting for their message, so the lookup
each new provider id makes costs an index probe into a set that is usually empty.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WAITING = "reply_to IS NOT NULL AND quoted_message_id IS NULL"


def _link(new: str) -> str:
    return f"""UPDATE messages SET quoted_message_id = {new}.id
        WHERE reply_to = {new}.provider_message_id AND quoted_message_id IS NULL
          AND id <> {new}.id"""


SQLITE_UP = [
    f"""CREATE TRIGGER messages_link_replies_ai AFTER INSERT ON messages
    WHEN new.provider_message_id IS NOT NULL BEGIN {_link("new")}; END""",
    f"""CREATE TRIGGER messages_link_replies_au AFTER UPDATE OF provider_message_id ON messages
    WHEN old.provider_message_id IS NULL AND new.provider_message_id IS NOT NULL
    BEGIN {_link("new")}; END""",
]

SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS messages_link_replies_au",
    "DROP TRIGGER IF EXISTS messages_link_replies_ai",
]

PG_UP = [
    f"""CREATE FUNCTION messages_link_replies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        {_link("NEW")};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER messages_link_replies_ai AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.provider_message_id IS NOT NULL)
    EXECUTE FUNCTION messages_link_replies()""",
    """CREATE TRIGGER messages_link_replies_au AFTER UPDATE OF provider_message_id ON messages
    FOR EACH ROW WHEN (OLD.provider_message_id IS NULL AND NEW.provider_message_id IS NOT NULL)
    EXECUTE FUNCTION messages_link_replies()""",
]

PG_DOWN = [
    "DROP TRIGGER IF EXISTS messages_link_replies_au ON messages",
    "DROP TRIGGER IF EXISTS messages_link_replies_ai ON messages",
    "DROP FUNCTION IF EXISTS messages_link_replies()",
]

# Replies stored before this revision whose message is here by now.
BACKFILL = """UPDATE messages SET quoted_message_id = (
        SELECT q.id FROM messages q WHERE q.provider_message_id = messages.reply_to)
    WHERE reply_to IS NOT NULL AND quoted_message_id IS NULL
      AND EXISTS (SELECT 1 FROM messages q WHERE q.provider_message_id = messages.reply_to)"""


def upgrade() -> None:
    op.create_index(
        "ix_messages_waiting_reply",
        "messages",
        ["reply_to"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else PG_UP:
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else PG_DOWN:
        op.execute(statement)
    op.drop_index("ix_messages_waiting_reply", table_name="messages")
