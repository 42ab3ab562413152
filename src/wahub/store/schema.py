"""The schema, in SQLAlchemy Core. Migrations (``store/migrations``) create it.

Times are unix epoch seconds (float): comparable and indexable the same way on SQLite and
PostgreSQL; the API renders them as ISO 8601.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

metadata = MetaData()

# BigInteger on PostgreSQL, but INTEGER on SQLite so it is the rowid alias (autoincrement).
SeqType = BigInteger().with_variant(Integer(), "sqlite")

channels = Table(
    "channels",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),  # cloudapi | whapi | periskope
    Column("name", String(200), nullable=False),
    Column("phone_number", String(32)),
    Column("phone_number_id", String(64)),
    Column("base_url", String(500), nullable=False),
    Column("api_version", String(16), nullable=False, server_default="21.0"),
    # A Fernet token (a JSON string) of the provider credentials, sealed with
    # WAHUB_SECRET_KEY or the SQLite key file (migration 0012); never returned by the API.
    Column("credentials", JSON, nullable=False),
    Column("rate_per_second", Float, nullable=False, server_default="80"),
    Column("pair_burst", Integer, nullable=False, server_default="45"),
    Column("pair_interval_seconds", Float, nullable=False, server_default="6"),
    # unverified until a send or a check proves the credentials work, then connected.
    Column("status", String(20), nullable=False, server_default="connected"),
    Column("verified_at", Float),
    # Workers leave a paused channel's messages queued (it is not leased) until resumed.
    Column("paused", Boolean, nullable=False, server_default=false()),
    # Removed channels keep their row (messages and chats refer to it) but leave every
    # list and free their name and number for a new channel.
    Column("removed_at", Float),
    Column("lease_owner", String(80)),
    Column("lease_until", Float),
    Column("heartbeat_at", Float),
    Column("created_at", Float, nullable=False),
    # Refuse free-form sends outside the 24-hour customer-service window up front, as
    # Meta would (131047). Off for channels whose provider has no such rule (the sandbox).
    Column("enforce_service_window", Boolean, nullable=False, server_default=true()),
    # WhatsApp Web sessions (kind web, migration 0013); null/default for other kinds.
    # The state the session process last saw, and what the operator wants of it: the
    # API writes ``session_desired``/``session_epoch``/``session_logout_requested`` and
    # the session process, which alone holds the connection, acts on them.
    Column("session_state", String(20)),
    Column("session_reason", Text),
    Column("session_state_at", Float),
    Column("session_desired", String(20)),
    Column("session_epoch", Integer, nullable=False, server_default="0"),
    Column("session_logout_requested", Boolean, nullable=False, server_default=false()),
    # One session process holds a phone's connection (workers never lease web channels).
    Column("session_lease_owner", String(80)),
    Column("session_lease_until", Float),
    Column("qr", Text),
    Column("qr_expires_at", Float),
    Column("me_phone", String(32)),
    Column("me_lid", String(80)),
    Column("push_name", String(200)),
    Column("last_keepalive_at", Float),
    # When the number was first linked: younger than a week, it gets a daily cap.
    Column("linked_at", Float),
    Column("pair_phone", String(32)),
    Column("pairing_code", String(40)),
    Column("pairing_error", Text),
    Column("daily_cap", Integer),
    Column("chat_jitter_seconds", Float, nullable=False, server_default="0"),
)

# Every change of a web channel's session state: the history the API shows and the feed
# of ``channel.session`` events on /v1/stream.
channel_state_history = Table(
    "channel_state_history",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("channel_id", String(40), nullable=False),
    Column("state", String(20), nullable=False),
    Column("reason", Text),
    Column("at", Float, nullable=False),
    Index("ix_channel_state_history_channel", "channel_id", "id"),
)

chats = Table(
    "chats",
    metadata,
    Column("chat_id", String(120), primary_key=True),  # ...@s.whatsapp.net | ...@g.us
    Column("kind", String(16), nullable=False),  # person | group
    Column("channel_id", String(40), ForeignKey("channels.id")),
    Column("name", String(300)),
    Column("name_source", String(40)),
    Column("name_updated_at", Float),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("readonly", Boolean, nullable=False, server_default=false()),
    Column("last_synced_at", Float),
    Column("sync_status", String(16)),
    Column("sync_error", Text),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("password_hash", String(200)),  # argon2id; NULL: signs in with a key only
    Column("password_role", String(16)),  # the role a password sign-in gets
)

employee_groups = Table(
    "employee_groups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

employee_group_members = Table(
    "employee_group_members",
    metadata,
    Column("employee_group_id", String(40), ForeignKey("employee_groups.id"), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), primary_key=True),
    Index("ix_employee_group_members_user", "user_id"),
)

group_assignments = Table(
    "group_assignments",
    metadata,
    Column("employee_group_id", String(40), ForeignKey("employee_groups.id"), primary_key=True),
    Column("chat_id", String(120), ForeignKey("chats.chat_id"), primary_key=True),
    Column("created_at", Float, nullable=False),
    Index("ix_group_assignments_chat", "chat_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("role", String(16), nullable=False),  # admin | agent | viewer
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("prefix", String(16), nullable=False),  # shown to humans to tell keys apart
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    # 0015: None acts on every channel; a list limits the key to those channel ids.
    Column("channel_ids", JSON),
    Column("read_only", Boolean, nullable=False, server_default=false()),
)

messages = Table(
    "messages",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("channel_id", String(40), ForeignKey("channels.id"), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("direction", String(8), nullable=False),  # out | in
    Column("type", String(20), nullable=False),
    Column("content", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(300), unique=True),  # "<user id>:<client key>"
    Column("request_hash", String(64)),
    Column("provider_message_id", String(200), unique=True),
    Column("wa_id", String(32)),
    Column("reply_to", String(200)),
    Column("sender_user_id", String(40)),
    Column("campaign_id", String(40)),
    Column("template_name", String(200)),
    Column("ordering_key", String(160), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(80)),
    Column("lease_until", Float),
    Column("error_code", String(40)),
    Column("error_title", String(300)),
    Column("error_detail", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sending_at", Float),
    Column("uncertain_at", Float),
    Column("sent_at", Float),
    Column("delivered_at", Float),
    Column("read_at", Float),
    Column("failed_at", Float),
    # Inbound messages (direction in, 0004): who wrote, the text a human reads (keywords,
    # search), our id of the message they quoted or reacted to. ``source`` marks rows
    # that no API client asked for (auto_reply).
    Column("sender_phone", String(32)),
    Column("sender_name", String(300)),
    Column("text", Text),
    Column("quoted_message_id", String(40)),
    Column("source", String(20)),
    # The claim query walks active messages per ordering key in sequence order.
    Index(
        "ix_messages_active_lane",
        "channel_id",
        "ordering_key",
        "seq",
        sqlite_where=text("status IN ('queued','sending','uncertain')"),
        postgresql_where=text("status IN ('queued','sending','uncertain')"),
    ),
    # At most one message in flight per chat, whatever races between workers (0002).
    Index(
        "ux_messages_one_in_flight",
        "ordering_key",
        unique=True,
        sqlite_where=text("status IN ('sending','uncertain')"),
        postgresql_where=text("status IN ('sending','uncertain')"),
    ),
    Index("ix_messages_chat_seq", "chat_id", "seq"),
    Index("ix_messages_status_seq", "status", "seq"),
    Index(
        "ix_messages_lease",
        "lease_until",
        sqlite_where=text("status = 'sending'"),
        postgresql_where=text("status = 'sending'"),
    ),
    # Campaign messages only (0006, 0008): a campaign's messages for the recount that
    # ``wahub stats verify`` compares the counters against (without ``status``, which
    # would make every status change rewrite the entry); the second finds the campaign
    # messages an inbound message may be a reply to.
    Index(
        "ix_messages_campaign",
        "campaign_id",
        "template_name",
        sqlite_where=text("campaign_id IS NOT NULL"),
        postgresql_where=text("campaign_id IS NOT NULL"),
    ),
    Index(
        "ix_messages_campaign_chat",
        "chat_id",
        "created_at",
        sqlite_where=text("campaign_id IS NOT NULL"),
        postgresql_where=text("campaign_id IS NOT NULL"),
    ),
    # Replies whose quoted message is not here yet (0011): a trigger links them when a
    # message gets the provider id they name.
    Index(
        "ix_messages_waiting_reply",
        "reply_to",
        sqlite_where=text("reply_to IS NOT NULL AND quoted_message_id IS NULL"),
        postgresql_where=text("reply_to IS NOT NULL AND quoted_message_id IS NULL"),
    ),
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("message_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),  # api | worker | webhook | operator
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("provider_timestamp", BigInteger, nullable=False, server_default="0"),
    Column("error_code", String(40)),
    Column("detail", Text),
    Column("recorded_at", Float, nullable=False),
    # A webhook delivered twice records its status once.
    UniqueConstraint(
        "message_id", "status", "source", "attempt", "provider_timestamp", name="uq_message_events"
    ),
    Index("ix_message_events_message", "message_id", "id"),
)

# Statuses for a provider id we have not recorded yet: the webhook outran our send result.
parked_statuses = Table(
    "parked_statuses",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("provider_message_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_timestamp", BigInteger, nullable=False),
    Column("error_code", String(40)),
    Column("detail", Text),
    Column("parked_at", Float, nullable=False),
    Index("ix_parked_statuses_provider_id", "provider_message_id"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("provider", String(20), nullable=False),
    Column("dedupe_key", String(64), nullable=False, unique=True),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(12), nullable=False),  # pending | processed | dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("error", Text),
    Column("received_at", Float, nullable=False),
    Column("processed_at", Float),
    Index(
        "ix_inbox_pending",
        "next_attempt_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# Approved templates per channel: a send naming a template the channel does not know is
# refused before it is queued, with the parameter count checked too.
templates = Table(
    "templates",
    metadata,
    Column("channel_id", String(40), ForeignKey("channels.id"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("language", String(16), primary_key=True),
    Column("category", String(32), nullable=False, server_default="utility"),
    Column("body_parameters", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
)

# -- groups, accounts and lookup by phone (0003) -----------------------------------------

# A group's members as its provider last reported them. Replaced whole, in one
# transaction, after a successful fetch (a failed fetch leaves the last good list).
group_members = Table(
    "group_members",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("chat_id", String(120), ForeignKey("chats.chat_id"), nullable=False),
    Column("member_phone", String(32)),  # E.164, when the provider shows the number
    Column("member_lid", String(64)),  # "<digits>@lid", when the provider shows that
    Column("rank", String(16), nullable=False),  # creator | admin | member
    Column("synced_at", Float, nullable=False),
    CheckConstraint(
        "member_phone IS NOT NULL OR member_lid IS NOT NULL", name="ck_group_members_identity"
    ),
    # One row per member and group, whichever identity the provider gave (NULLs are
    # distinct in a unique index on both backends). The first also serves "by chat".
    Index("ux_group_members_chat_phone", "chat_id", "member_phone", unique=True),
    Index("ux_group_members_chat_lid", "chat_id", "member_lid", unique=True),
    Index("ix_group_members_phone", "member_phone"),
    Index("ix_group_members_lid", "member_lid"),
)

# Linked ids (WhatsApp's privacy ids) resolved to phones, from whichever source revealed
# the pair. A lookup by phone also finds members stored by linked id through here.
lid_links = Table(
    "lid_links",
    metadata,
    Column("lid", String(64), primary_key=True),
    Column("phone", String(32), nullable=False),
    Column("source", String(40), nullable=False),
    Column("learned_at", Float, nullable=False),
    Index("ix_lid_links_phone", "phone"),
)

# CRM records (an artist, a client, a customer), each linked to one or more groups.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("external_ref", String(200), unique=True),  # the CRM's own id
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

account_chats = Table(
    "account_chats",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("chat_id", String(120), ForeignKey("chats.chat_id"), primary_key=True),
    Index("ix_account_chats_chat", "chat_id"),
)

# One row per cron slot that ran: the primary key decides which process runs it.
periodic_runs = Table(
    "periodic_runs",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("slot", String(40), primary_key=True),  # the slot's time, ISO 8601 UTC
    Column("owner", String(80), nullable=False),
    Column("claimed_at", Float, nullable=False),
)

# -- inbound: contacts, leads, conversations, notifications, auto-replies (0004) ----------

# A person we talk to, by phone (E.164). Opted out by a keyword (STOP, ...) until they
# opt in again (START).
contacts = Table(
    "contacts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("phone", String(32), nullable=False, unique=True),
    Column("wa_id", String(32)),
    Column("name", String(300)),
    Column("name_source", String(40)),  # profile (the provider's), api
    Column("opted_out_at", Float),
    Column("opt_out_reason", String(300)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("attributes", JSON),  # 0015: the CRM's own fields (PATCH /v1/contacts/{id})
)

# One lead per contact: new (first inbound) -> contacted (we wrote) -> replied (they
# answered after we wrote) -> qualified -> won | lost (set by people, not by traffic).
leads = Table(
    "leads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("contact_id", String(40), ForeignKey("contacts.id"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("owner_user_id", String(40), ForeignKey("users.id")),
    Column("first_message_at", Float),
    Column("last_message_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_leads_status", "status"),
)

# One thread per chat and channel: what an inbox UI lists.
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel_id", String(40), ForeignKey("channels.id"), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("contact_id", String(40), ForeignKey("contacts.id")),
    Column("lead_id", String(40), ForeignKey("leads.id")),
    Column("last_message_id", String(40)),
    Column("last_message_at", Float),
    Column("last_message_preview", String(200)),
    Column("last_message_direction", String(8)),
    Column("last_inbound_at", Float),
    Column("unread_count", Integer, nullable=False, server_default="0"),
    Column("service_window_until", Float),  # last inbound + 24 h
    Column("assigned_user_id", String(40), ForeignKey("users.id")),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("channel_id", "chat_id", name="uq_conversations_channel_chat"),
    Index("ix_conversations_last_message", "last_message_at"),
    Index("ix_conversations_chat", "chat_id"),
    Index("ix_conversations_contact", "contact_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # message.received, ...
    Column("conversation_id", String(40), ForeignKey("conversations.id")),
    Column("message_id", String(40)),
    Column("user_id", String(40), ForeignKey("users.id")),  # None: everyone who sees the chat
    Column("title", String(300), nullable=False),
    Column("body", Text),
    Column("created_at", Float, nullable=False),
    Column("read_at", Float),
    Index("ix_notifications_conversation", "conversation_id", "id"),
    Index("ix_notifications_user", "user_id", "id"),
    # Unread ones only (0010): the unread count /v1/notifications answers with every page
    # (from the index alone for admins and viewers), the unread filter (newest first, in
    # the index's order) and read-all touch the few unread rows, not every notification.
    Index(
        "ix_notifications_unread",
        "id",
        "user_id",
        sqlite_where=text("read_at IS NULL"),
        postgresql_where=text("read_at IS NULL"),
    ),
)

auto_reply_rules = Table(
    "auto_reply_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel_id", String(40), ForeignKey("channels.id")),  # None: every channel
    Column("name", String(200), nullable=False),
    Column("match_kind", String(20), nullable=False),  # keyword|regex|first_message|outside_hours
    Column("pattern", String(500)),
    Column("reply_text", Text, nullable=False),
    Column("business_hours", JSON),  # {"timezone", "days": [0..6], "start": "HH:MM", "end"}
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("cooldown_seconds", Integer, nullable=False, server_default="86400"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every auto-reply queued: the cooldown per rule and chat and the hourly cap per chat
# are read from here in the transaction that queues the next one.
auto_reply_log = Table(
    "auto_reply_log",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("rule_id", String(40), ForeignKey("auto_reply_rules.id"), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("message_id", String(40), nullable=False),
    Column("sent_at", Float, nullable=False),
    Index("ix_auto_reply_log_rule_chat", "rule_id", "chat_id", "sent_at"),
    Index("ix_auto_reply_log_chat", "chat_id", "sent_at"),
)

# -- search (0005) -------------------------------------------------------------------------

# One row per message: what full-text search indexes. Kept by triggers (the migration
# creates them), so every path that writes messages or renames chats is covered without
# knowing about search: ``body`` is the message's readable text and template name,
# ``chat_name`` the chat's name, rewritten for every message of a chat it renames.
# ``seq`` is the message's seq.
message_search = Table(
    "message_search",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("message_id", String(40), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text),
    Column("chat_name", String(300)),
    Index("ix_message_search_chat", "chat_id", "created_at"),
    Index("ix_message_search_created", "created_at"),
)

# -- campaigns and their funnels (0006) -----------------------------------------------------

# A bulk send of one or more templates to an audience, over one channel.
# scheduled -> running -> paused | cancelled | completed (failed when it cannot go on).
# ``templates`` lists {name, language, weight, parameters: [CSV column, ...]};
# ``reply_window_seconds`` is fixed at creation so the replied count never changes meaning.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("channel_id", String(40), ForeignKey("channels.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("templates", JSON, nullable=False),
    Column("audience_source", String(16), nullable=False),  # csv | contacts
    Column("reply_window_seconds", Float, nullable=False),
    Column("start_at", Float),  # None: waits for an explicit start
    Column("created_by", String(40)),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_campaigns_status", "status", "start_at"),
)

# One row per recipient: the unique (campaign, phone) and ``message_id`` (set in the
# transaction that inserts the message) make a second send to a recipient impossible.
# pending -> queued (message_id set) | skipped (skip_reason: opted_out, ...).
# ``replied_at`` is set by a trigger when the recipient writes back within the window.
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("campaign_id", String(40), ForeignKey("campaigns.id"), nullable=False),
    Column("phone", String(32), nullable=False),  # E.164
    Column("chat_id", String(120), nullable=False),
    Column("template_name", String(200), nullable=False),
    Column("language", String(16), nullable=False),
    Column("variables", JSON, nullable=False),  # CSV column -> value
    Column("line", Integer),  # CSV line number, for reports
    Column("status", String(16), nullable=False),
    Column("skip_reason", String(40)),
    Column("message_id", String(40), unique=True),
    Column("queued_at", Float),
    Column("replied_at", Float),
    Column("reply_message_id", String(40)),
    UniqueConstraint("campaign_id", "phone", name="uq_campaign_recipients_phone"),
    Index(
        "ix_campaign_recipients_pending",
        "campaign_id",
        "id",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# The funnel, one row per (campaign, template), kept by triggers (see migration 0006) in
# the transaction of every change they count: reading it is one primary-key lookup.
# queued: messages created; sent/delivered/read: messages whose status is that or
# later (a nested funnel); failed: messages failed; replied: recipients who wrote back.
campaign_stats = Table(
    "campaign_stats",
    metadata,
    Column("campaign_id", String(40), ForeignKey("campaigns.id"), primary_key=True),
    Column("template_name", String(200), primary_key=True),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("skipped_opted_out", Integer, nullable=False, server_default="0"),
    Column("skipped_other", Integer, nullable=False, server_default="0"),
    Column("queued", Integer, nullable=False, server_default="0"),
    Column("sent", Integer, nullable=False, server_default="0"),
    Column("delivered", Integer, nullable=False, server_default="0"),
    Column("read", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("replied", Integer, nullable=False, server_default="0"),
)

# Objects the migrations create for one backend only, which SQLAlchemy cannot declare:
# SQLite's FTS5 index over message_search (a virtual table and its shadow tables) and
# PostgreSQL's GIN index on the tsvector of body and chat name. The drift test skips them.
DIALECT_ONLY_OBJECTS = frozenset(
    {
        "message_search_fts",
        "message_search_fts_data",
        "message_search_fts_idx",
        "message_search_fts_docsize",
        "message_search_fts_config",
        "ix_message_search_fts",
    }
)

# -- replication (0007) ----------------------------------------------------------------------

# The replication log: one row per insert, update or delete of a replicated table,
# appended by triggers (store/changelog.py generates them) in the transaction that made
# the change, so a change is logged if and only if it committed. ``seq`` orders changes
# (on SQLite it is also commit order: one writer; on PostgreSQL the shippers read only
# below a horizon every older transaction has passed, see replication/horizon.py).
# ``data`` is the row after the change (before it, for a delete), without the outbox's
# internal columns; ``txid`` the PostgreSQL transaction id (NULL on SQLite).
# AUTOINCREMENT on SQLite: pruning may empty the table, and a reused seq would hide new
# changes from every cursor past it.
changes = Table(
    "changes",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("table_name", String(40), nullable=False),
    Column("row_key", String(300), nullable=False),
    Column("op", String(8), nullable=False),  # insert | update | delete
    Column("chat_id", String(120)),  # per-chat order for sinks that keep it
    Column("data", JSON, nullable=False),
    Column("txid", BigInteger),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

# One row per sink: how far it has shipped (every change with seq <= last_seq is
# delivered or dead-lettered), whether an operator paused it, and which process ships
# it (a lease, so one shipper per sink runs however many processes run workers).
sink_cursors = Table(
    "sink_cursors",
    metadata,
    Column("sink", String(100), primary_key=True),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("last_error", Text),
    Column("last_error_at", Float),
    Column("last_shipped_at", Float),
    Column("lease_owner", String(80)),
    Column("lease_until", Float),
    Column("updated_at", Float, nullable=False),
)

# Changes a sink refused (a 4xx, a mapping error, a row the agent database rejects) or
# that kept failing: kept with the reason until ``wahub replicate replay`` re-sends them.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("sink", String(100), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("table_name", String(40), nullable=False),
    Column("row_key", String(300), nullable=False),
    Column("op", String(8), nullable=False),
    Column("chat_id", String(120)),
    Column("data", JSON, nullable=False),
    Column("txid", BigInteger),
    Column("change_created_at", Float, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("replayed_at", Float),
    # A change parked twice (a shipper taking over from one that died) is kept once
    # (a backfill sends every row at one seq, hence the table and key).
    UniqueConstraint("sink", "seq", "table_name", "row_key", name="uq_dead_letters_change"),
)

# -- event subscriptions (0014) -----------------------------------------------------------

# A CRM's event webhook: where to POST, which event types, optionally which channels.
# ``secret`` is the Standard Webhooks secret sealed like channel credentials (it must be
# read to sign, so it cannot be hashed). ``failing_since``: the first failed attempt
# since the last success; a subscription failing for a day is paused (``paused_reason``).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("channel_ids", JSON),  # null: every channel
    Column("description", String(500)),
    Column("secret", JSON, nullable=False),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("paused_reason", Text),
    Column("paused_at", Float),
    Column("failing_since", Float),
    Column("last_success_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The subscriptions' outbox: one row per event per matching subscription, written before
# any attempt. ``state`` pending -> delivered | dead. Within a subscription, rows with the
# same ``ordering_key`` (the chat) go out in id order: only the oldest pending one of a
# key is claimable. ``webhook_id`` is the event's id, the same for every subscription and
# every attempt, so receivers deduplicate by it.
event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column(
        "subscription_id",
        String(40),
        ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("webhook_id", String(80), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("ordering_key", String(200), nullable=False),
    Column("channel_id", String(40)),
    Column("payload", JSON, nullable=False),
    Column("state", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(80)),
    Column("lease_until", Float),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("first_failure_at", Float),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    UniqueConstraint("subscription_id", "webhook_id", name="uq_event_deliveries_event"),
    sqlite_autoincrement=True,
)
Index(
    "ix_event_deliveries_pending_order",
    event_deliveries.c.subscription_id,
    event_deliveries.c.ordering_key,
    event_deliveries.c.id,
    sqlite_where=event_deliveries.c.state == "pending",
    postgresql_where=event_deliveries.c.state == "pending",
)
Index(
    "ix_event_deliveries_due",
    event_deliveries.c.next_attempt_at,
    sqlite_where=event_deliveries.c.state == "pending",
    postgresql_where=event_deliveries.c.state == "pending",
)
Index(
    "ix_event_deliveries_sub_created",
    event_deliveries.c.subscription_id,
    event_deliveries.c.created_at,
)

# The delivery log: one row per attempt (status code, latency, error).
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        BigInteger,
        ForeignKey("event_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("subscription_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("attempted_at", Float, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_delivery_attempts_sub", delivery_attempts.c.subscription_id, delivery_attempts.c.id)
Index("ix_delivery_attempts_delivery", delivery_attempts.c.delivery_id)

# -- media (0015) --------------------------------------------------------------------------

# One file in the media store (``wahub.media``), under its id: uploaded through
# POST /v1/media or received. A Cloud API send uploads it to the provider once and reuses
# the provider's id (``provider_media_id``, of ``provider_channel_id``) until it expires.
media = Table(
    "media",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("source", String(16), nullable=False),  # upload | inbound
    Column("mime_type", String(100), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("filename", String(255)),
    Column("uploader_user_id", String(40), ForeignKey("users.id")),
    Column("channel_id", String(40), ForeignKey("channels.id")),
    Column("chat_id", String(120)),
    Column("provider_media_id", String(200)),
    Column("provider_channel_id", String(40)),
    Column("provider_media_expires_at", Float),
    Column("created_at", Float, nullable=False),
    Index("ix_media_chat", "chat_id"),
)

# -- media downloads (0017) ----------------------------------------------------------------

# A received message's file still to be fetched from its provider (``source``: "cloudapi"
# for a Cloud API media id in ``ref``, "link" for a URL). Written with the message,
# deleted when the file is stored and linked (or given up on with the reason).
media_downloads = Table(
    "media_downloads",
    metadata,
    Column("message_id", String(40), primary_key=True),
    Column("channel_id", String(40), ForeignKey("channels.id"), nullable=False),
    Column("chat_id", String(120), nullable=False),
    Column("source", String(16), nullable=False),  # cloudapi | link
    Column("ref", Text, nullable=False),
    Column("mime_type", String(100)),
    Column("filename", String(255)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Index("ix_media_downloads_due", "next_attempt_at"),
)
