"""Settings, read from the environment (prefix ``WAHUB_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wahub.domain.inbound import DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS


class Settings(BaseSettings):
    """Every knob wahub reads. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="WAHUB_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///wahub.db",
        description="sqlite:///path.db (default) or postgresql://user:pass@host/db",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="NORMAL survives process crashes; FULL also survives power loss (slower).",
    )
    host: str = Field(default="127.0.0.1", description="Interface `serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `serve` listens on.")
    public_url: str | None = Field(
        default=None, description="URL providers reach this hub at (for sandbox webhooks)."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(
        default=False, description="One JSON object per log line (for log collectors)."
    )
    max_request_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body the API reads (413 beyond, refused before "
        "it is read whole); campaign uploads have WAHUB_MAX_UPLOAD_BYTES.",
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest body of POST /v1/campaigns (the audience CSV), 413 beyond.",
    )

    # Media (uploads, received files): a directory by default, S3 when a bucket is set.
    media_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest file POST /v1/media takes (413 beyond) and inbound media "
        "downloads keep.",
    )
    media_download_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Time budget of one inbound media download (the provider's media "
        "URL lookup and the file), from start to the last byte; past it the try fails "
        "and is retried.",
    )
    media_download_retry_base_seconds: float = Field(
        default=5.0,
        gt=0,
        description="First wait before retrying a failed inbound media download; it "
        "doubles with each failure up to WAHUB_MEDIA_DOWNLOAD_RETRY_CAP_SECONDS.",
    )
    media_download_retry_cap_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait between two tries of an inbound media download.",
    )
    media_download_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Tries of an inbound media download before the message is marked "
        "with the reason (the message itself is always kept).",
    )
    media_dir: Path | None = Field(
        default=None,
        description="Directory of the media store. Default: beside the SQLite database "
        "(<database>.media), else ./wahub-media. Ignored when WAHUB_MEDIA_S3_BUCKET is set.",
    )
    media_s3_bucket: str | None = Field(
        default=None,
        description="Keep media in this S3-compatible bucket instead of a directory "
        "(needed when several hosts run serve/worker).",
    )
    media_s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3-compatible endpoint (MinIO, Ceph, R2, ...). Default: AWS S3.",
    )
    media_s3_region: str | None = Field(default=None, description="The bucket's region.")
    media_s3_access_key_id: str | None = Field(
        default=None, description="S3 access key id. Default: boto3's usual lookup."
    )
    media_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key. Default: boto3's usual lookup."
    )
    media_s3_prefix: str = Field(
        default="", max_length=200, description="Prefix of every object key (e.g. wahub/)."
    )

    # Cloud API webhooks: one Meta app signs every number's webhooks with its app secret.
    # No defaults: a secret written in our source would let anyone forge deliveries. Unset
    # = that receiver answers 503; a known placeholder refuses to start (webhook_secrets).
    cloudapi_app_secret: SecretStr | None = Field(
        default=None,
        description="The Meta app's secret: Cloud API webhooks must carry its "
        "X-Hub-Signature-256. Unset: that receiver answers 503.",
    )
    cloudapi_verify_token: SecretStr | None = Field(
        default=None,
        description="The token Meta's webhook handshake (GET) must present; you enter it "
        "at Meta. Unset: the handshake answers 503.",
    )
    max_webhook_bytes: int = Field(
        default=3 * 1024 * 1024 + 64 * 1024,
        gt=0,
        description="Largest webhook body accepted (413 beyond); Meta sends up to 3 MB.",
    )
    # WHAPI signs nothing: this secret of ours goes in the webhook URL set at WHAPI
    # (`/v1/webhooks/whapi?secret=...`) or an `X-Wahub-Secret` header. Periskope signs
    # with the Signing Key from its webhook settings. Unset = that receiver answers 503
    # (the provider retries) rather than accept unauthenticated messages.
    whapi_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Our secret in the WHAPI webhook URL (?secret=) or X-Wahub-Secret header.",
    )
    periskope_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Periskope's webhook Signing Key (checks x-periskope-signature).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, that seal the channels' provider "
        "tokens at rest: the first seals, all open (rotation: put the new key first, run "
        "`wahub keys rotate-secret`, then drop the old one). Required with PostgreSQL; on "
        "SQLite the default is a key file beside the database (wahub.db.key, mode 0600).",
    )
    ui_session_hours: float = Field(
        default=12.0,
        gt=0,
        description="How long a dashboard (/ui) sign-in lasts; its cookie is signed with a "
        "secret derived from WAHUB_SECRET_KEY (or the key file), so rotating that key "
        "signs everyone out.",
    )

    bootstrap_admin_key: SecretStr | None = Field(
        default=None,
        description="At the start of serve or worker, when no admin API key exists, store "
        "this one (its hash) for user admin: the first key of a container install. At "
        "least 32 characters, e.g. `openssl rand -hex 32`. Once stored (or revoked) it "
        "is never stored again.",
    )

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _bootstrap_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < 32:
            raise ValueError(
                "WAHUB_BOOTSTRAP_ADMIN_KEY must be at least 32 characters (it is checked "
                "by a fast hash, so it must not be guessable): e.g. `openssl rand -hex 32`"
            )
        return SecretStr(value.get_secret_value().strip())

    # Workers.
    run_workers: bool = Field(default=True, description="Run the pipeline inside `serve`.")
    worker_concurrency: int = Field(
        default=64, ge=1, le=4096, description="Sends in flight at once per worker process."
    )
    worker_max_channels: int | None = Field(
        default=None,
        ge=1,
        description="Most channels one worker leases at a time, to spread channels over "
        "several workers (default: every free channel).",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a claimed message stays claimed by a worker that stops "
        "renewing it (a dead worker's messages are taken back after this).",
    )
    channel_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a channel stays with a worker that stops renewing its lease.",
    )
    stalled_queue_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Health turns degraded when a channel has queued messages and no "
        "worker has held the channel for longer than this.",
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Sends of one message before a retryable error fails it."
    )
    provider_timeout_seconds: float = Field(
        default=15.0, gt=0, description="A send with no answer by then is `uncertain`."
    )
    # WhatsApp Web sessions (channels of kind web, held by `wahub sessions`).
    run_sessions: bool = Field(
        default=True,
        description="`serve` starts the session process (`wahub sessions`) as a child and "
        "restarts it if it dies (`serve --no-sessions` skips it).",
    )
    sessions_max_channels: int = Field(
        default=50,
        ge=1,
        description="Most web channels (linked phones) one session process holds.",
    )
    session_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a phone stays with a session process that stops renewing "
        "its lease; another session process resumes it after this.",
    )
    session_keepalive_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A working session with no keep-alive answered for this long is "
        "shown as degraded until one is.",
    )
    session_state_dir: str | None = Field(
        default=None,
        description="Where sessions keep their credentials (default: a `sessions` "
        "directory beside the SQLite database, or the working directory).",
    )
    web_rate_per_second: float = Field(
        default=0.5,
        gt=0,
        description="Default send rate of a new web channel (messages per second).",
    )
    web_chat_interval_seconds: float = Field(
        default=4.0,
        ge=0,
        description="Default spacing between two messages to one chat on a new web channel.",
    )
    web_chat_jitter_seconds: float = Field(
        default=3.0,
        ge=0,
        description="Default random extra spacing (0..this) per message to one chat on a "
        "new web channel, so the rhythm does not look automated.",
    )
    web_new_number_daily_cap: int = Field(
        default=200,
        ge=1,
        description="Messages a day a web channel may send while its number was linked "
        "less than a week ago (per channel `daily_cap` overrides); beyond it sends are "
        "refused with daily_cap_reached until midnight UTC.",
    )
    web_media_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest media file the session process downloads for a web send; a "
        "larger one fails the message with media_too_large.",
    )
    web_media_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long the session process waits for a media download.",
    )
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay; doubles per attempt, with jitter."
    )
    backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest retry delay (Retry-After may ask for more)."
    )
    uncertain_grace_seconds: float = Field(
        default=120.0,
        description="How long a status webhook may take to settle an uncertain send; "
        "after it, providers that echo our id (Cloud API) resend, others apply the policy.",
    )
    uncertain_policy: Literal["resend", "fail"] = Field(
        default="fail",
        description="After the grace period, on providers that echo nothing (WHAPI): "
        "resend (risk a duplicate) or fail (risk a loss).",
    )
    default_region: str | None = Field(
        default=None,
        description="ISO region (e.g. DE) that reads national numbers (0151 ...); unset, a "
        "number without a country code is refused.",
    )

    # Group directories (members of accounts' groups, lookup by phone).
    group_sync_cron: str = Field(
        default="0 3 * * *",
        description="When every account's groups are synced (cron, UTC; once per slot "
        "however many processes run). Empty: never.",
    )
    group_sync_rate_per_second: float = Field(
        default=2.0, gt=0, description="Group fetches per second per channel."
    )
    group_sync_burst: float = Field(
        default=5.0, ge=1, description="Group fetches a channel may make at once before pacing."
    )
    group_sync_max_attempts: int = Field(
        default=5, ge=1, description="Fetches of one group before a throttled sync gives up."
    )
    group_sync_max_retry_wait_seconds: float = Field(
        default=120.0, ge=0, description="A longer Retry-After fails the group instead."
    )
    group_sync_concurrency: int = Field(
        default=4, ge=1, le=64, description="Groups fetched at once during a sync."
    )
    group_stale_hours: float = Field(
        default=24.0, gt=0, description="Groups not synced for this long are reported stale."
    )

    @field_validator("group_sync_cron")
    @classmethod
    def _cron_expression(cls, value: str) -> str:
        from croniter import croniter

        if value.strip() and not croniter.is_valid(value.strip()):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 3 * * *')")
        return value.strip()

    # Chat names (the chats table as a cache of the providers' chat directories).
    cache_on_startup: bool = Field(
        default=False,
        description="Fetch every chat name from the providers in the background after "
        "start (seed 002's CACHE_ON_STARTUP); health checks answer meanwhile.",
    )
    chat_name_negative_ttl_seconds: float = Field(
        default=60.0,
        ge=0,
        description="After a failed or empty chat-name lookup, do not ask the provider "
        "about that chat again for this long (longer if it sent Retry-After).",
    )

    # Inbound messages.
    opt_out_keywords: str = Field(
        default=",".join(DEFAULT_OPT_OUT_KEYWORDS),
        description="Comma-separated; a message that is exactly one of them (any case or "
        "accents) opts its sender out, and sends to them are refused.",
    )
    opt_in_keywords: str = Field(
        default=",".join(DEFAULT_OPT_IN_KEYWORDS),
        description="Comma-separated; a message that is exactly one of them opts an "
        "opted-out sender back in.",
    )
    auto_reply_max_per_chat_per_hour: int = Field(
        default=3, ge=0, description="Auto-replies per chat per hour across all rules."
    )

    # Campaigns.
    campaign_reply_window_hours: float = Field(
        default=72.0,
        gt=0,
        description="An inbound message this long after a campaign message counts as a "
        "reply in the campaign's funnel (fixed per campaign when it is created).",
    )
    campaign_chunk_size: int = Field(
        default=500, ge=1, le=10_000, description="Recipients queued per dispatch transaction."
    )
    campaign_max_backlog: int = Field(
        default=2000,
        ge=1,
        description="A campaign queues more recipients only while fewer of its messages "
        "than this wait in the outbox, so pause and cancel take effect within one backlog "
        "and other traffic is not buried.",
    )

    # Replication (the changes log shipped to sinks; see docs/replication.md).
    replication_sinks: str = Field(
        default="",
        description='JSON list of sinks, e.g. [{"name": "agent", "kind": "database", '
        '"url": "postgresql://..."}]; kinds database, webhook, elasticsearch. A bad entry '
        "is reported at start and in status, never stops the hub.",
    )
    replication_lag_threshold_seconds: float = Field(
        default=5.0, gt=0, description="Health turns degraded when a sink lags more."
    )
    replication_retention_hours: float = Field(
        default=72.0,
        gt=0,
        description="Changes older than this are pruned once every sink has shipped them.",
    )
    replication_poll_interval_seconds: float = Field(
        default=0.1, gt=0, description="How often an idle shipper looks for new changes."
    )
    replication_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a sink stays with the process shipping it if it stops renewing.",
    )

    # Event subscriptions (a CRM's signed webhooks; see docs/events.md).
    subscription_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A subscriber that has not answered a delivery within this is retried.",
    )
    subscription_retry_hours: float = Field(
        default=24.0,
        gt=0,
        description="A delivery failing for this long (with backoff) becomes a dead letter.",
    )
    subscription_pause_after_hours: float = Field(
        default=24.0,
        gt=0,
        description="A subscription with no successful delivery for this long is paused "
        "(a subscription.paused event; resume it once the receiver is fixed).",
    )
    subscription_backoff_max_seconds: float = Field(
        default=600.0, gt=0, description="The longest wait between two tries of a delivery."
    )
