"""Full-text search over messages, with the chat name: ``message_search`` kept by triggers,
indexed by SQLite FTS5 or a PostgreSQL GIN index on a tsvector.

Why triggers: messages are written by sends, inbound processing, auto-replies and
whatever comes next, and chats are renamed by the name cache, group sync and admins.
Triggers keep the index right for all of them without any of them knowing about search,
in the same transaction as the write.

The ``simple`` text search configuration (PostgreSQL) and ``unicode61`` tokenizer
(SQLite) split on non-word characters and fold case without stemming: chat traffic mixes
languages, and both backends then find the same messages for the same words.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _body(row: str) -> str:
    # The readable text and the template name; NULL when both are empty.
    return f"NULLIF(TRIM(COALESCE({row}.text, '') || ' ' || COALESCE({row}.template_name, '')), '')"


# Must equal wahub.store.search.PG_VECTOR, or queries cannot use the index.
PG_VECTOR = "to_tsvector('simple', COALESCE(body, '') || ' ' || COALESCE(chat_name, ''))"

SQLITE_UP = [
    # External content: the FTS index stores no second copy of the text.
    "CREATE VIRTUAL TABLE message_search_fts USING fts5("
    "body, chat_name, content='message_search', content_rowid='seq', "
    "tokenize='unicode61 remove_diacritics 2')",
    """CREATE TRIGGER message_search_fts_ai AFTER INSERT ON message_search BEGIN
        INSERT INTO message_search_fts(rowid, body, chat_name)
        VALUES (new.seq, new.body, new.chat_name);
    END""",
    """CREATE TRIGGER message_search_fts_ad AFTER DELETE ON message_search BEGIN
        INSERT INTO message_search_fts(message_search_fts, rowid, body, chat_name)
        VALUES ('delete', old.seq, old.body, old.chat_name);
    END""",
    """CREATE TRIGGER message_search_fts_au AFTER UPDATE ON message_search BEGIN
        INSERT INTO message_search_fts(message_search_fts, rowid, body, chat_name)
        VALUES ('delete', old.seq, old.body, old.chat_name);
        INSERT INTO message_search_fts(rowid, body, chat_name)
        VALUES (new.seq, new.body, new.chat_name);
    END""",
    f"""CREATE TRIGGER messages_search_ai AFTER INSERT ON messages BEGIN
        INSERT INTO message_search(seq, message_id, chat_id, created_at, body, chat_name)
        VALUES (new.seq, new.id, new.chat_id, new.created_at, {_body("new")},
                (SELECT name FROM chats WHERE chat_id = new.chat_id));
    END""",
    f"""CREATE TRIGGER messages_search_au AFTER UPDATE OF text, template_name ON messages
    WHEN old.text IS NOT new.text OR old.template_name IS NOT new.template_name BEGIN
        UPDATE message_search SET body = {_body("new")} WHERE seq = new.seq;
    END""",
    """CREATE TRIGGER messages_search_ad AFTER DELETE ON messages BEGIN
        DELETE FROM message_search WHERE seq = old.seq;
    END""",
    """CREATE TRIGGER chats_search_ai AFTER INSERT ON chats WHEN new.name IS NOT NULL BEGIN
        UPDATE message_search SET chat_name = new.name WHERE chat_id = new.chat_id;
    END""",
    """CREATE TRIGGER chats_search_au AFTER UPDATE OF name ON chats
    WHEN old.name IS NOT new.name BEGIN
        UPDATE message_search SET chat_name = new.name WHERE chat_id = new.chat_id;
    END""",
]

SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS chats_search_au",
    "DROP TRIGGER IF EXISTS chats_search_ai",
    "DROP TRIGGER IF EXISTS messages_search_ad",
    "DROP TRIGGER IF EXISTS messages_search_au",
    "DROP TRIGGER IF EXISTS messages_search_ai",
    "DROP TABLE IF EXISTS message_search_fts",
]

PG_UP = [
    f"CREATE INDEX ix_message_search_fts ON message_search USING gin ({PG_VECTOR})",
    f"""CREATE FUNCTION message_search_from_messages() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO message_search(seq, message_id, chat_id, created_at, body, chat_name)
            VALUES (NEW.seq, NEW.id, NEW.chat_id, NEW.created_at, {_body("NEW")},
                    (SELECT name FROM chats WHERE chat_id = NEW.chat_id));
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE message_search SET body = {_body("NEW")} WHERE seq = NEW.seq;
        ELSE
            DELETE FROM message_search WHERE seq = OLD.seq;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER messages_search_ai AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_search_from_messages()""",
    """CREATE TRIGGER messages_search_au AFTER UPDATE OF text, template_name ON messages
    FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text
                       OR OLD.template_name IS DISTINCT FROM NEW.template_name)
    EXECUTE FUNCTION message_search_from_messages()""",
    """CREATE TRIGGER messages_search_ad AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION message_search_from_messages()""",
    """CREATE FUNCTION message_search_from_chats() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE message_search SET chat_name = NEW.name WHERE chat_id = NEW.chat_id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER chats_search_ai AFTER INSERT ON chats
    FOR EACH ROW WHEN (NEW.name IS NOT NULL) EXECUTE FUNCTION message_search_from_chats()""",
    """CREATE TRIGGER chats_search_au AFTER UPDATE OF name ON chats
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION message_search_from_chats()""",
]

PG_DOWN = [
    "DROP TRIGGER IF EXISTS chats_search_au ON chats",
    "DROP TRIGGER IF EXISTS chats_search_ai ON chats",
    "DROP FUNCTION IF EXISTS message_search_from_chats()",
    "DROP TRIGGER IF EXISTS messages_search_ad ON messages",
    "DROP TRIGGER IF EXISTS messages_search_au ON messages",
    "DROP TRIGGER IF EXISTS messages_search_ai ON messages",
    "DROP FUNCTION IF EXISTS message_search_from_messages()",
    "DROP INDEX IF EXISTS ix_message_search_fts",
]

BACKFILL = f"""
INSERT INTO message_search(seq, message_id, chat_id, created_at, body, chat_name)
SELECT m.seq, m.id, m.chat_id, m.created_at, {_body("m")}, c.name
FROM messages m LEFT JOIN chats c ON c.chat_id = m.chat_id
"""


def upgrade() -> None:
    op.create_table(
        "message_search",
        sa.Column("seq", SEQ, autoincrement=False, nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("chat_name", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_message_search_chat", "message_search", ["chat_id", "created_at"])
    op.create_index("ix_message_search_created", "message_search", ["created_at"])
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else PG_UP:
        op.execute(statement)
    # Messages stored before this revision become searchable too (on SQLite the
    # message_search triggers index them in FTS5 as they are inserted).
    op.execute(BACKFILL)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else PG_DOWN:
        op.execute(statement)
    op.drop_index("ix_message_search_created", table_name="message_search")
    op.drop_index("ix_message_search_chat", table_name="message_search")
    op.drop_table("message_search")
