"""Sink configuration: ``WAHUB_REPLICATION_SINKS``, a JSON list of sinks.

Why settings and not a table: a sink holds credentials (a database URL, a signing
secret, an Elasticsearch API key) that belong with the other secrets in the environment,
and every process must ship to the same sinks; the database keeps only what changes at
run time (cursors, pause, dead letters).

A bad entry never stops the hub: ``parse_sinks`` returns the good sinks and one readable
error per bad entry, which start-up logs and ``replicate status`` shows.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"


class SinkSettings(BaseModel):
    """What every sink has: a name, which tables, and how its shipper batches and
    retries (the ``Shipper`` needs only this)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    tables: list[str] | None = Field(
        default=None, description="Replicated tables to ship (default: every one)."
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_attempts: int = Field(
        default=8, ge=1, description="Failed deliveries of one change before it is dead-lettered."
    )
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=60.0, gt=0)

    def ships(self, table: str) -> bool:
        return self.tables is None or table in self.tables


class DatabaseSinkConfig(SinkSettings):
    """The agent database: a mirror of the replicated tables, kept by idempotent upserts."""

    kind: Literal["database"]
    url: SecretStr
    table_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_]{0,40}$")


class WebhookSinkConfig(SinkSettings):
    """Signed POSTs of changes, in order per chat."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    timeout_seconds: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=16, ge=1, le=256, description="Chats posted at once.")
    max_changes_per_request: int = Field(default=100, ge=1, le=10_000)


class ElasticsearchSinkConfig(SinkSettings):
    """Documents keyed by id with ``@timestamp``, via the official client's bulk helper."""

    kind: Literal["elasticsearch"]
    url: str = Field(pattern=r"^https?://")
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    indexes: dict[str, str] = Field(
        default_factory=lambda: {"messages": "whatsapp_messages", "chats": "whatsapp_chat_names"},
        description="Replicated table -> index. Tables not listed are not indexed.",
    )
    create_indexes: bool = Field(
        default=True, description="Create missing indexes with wahub's mappings at start."
    )
    timeout_seconds: float = Field(default=30.0, gt=0)

    def ships(self, table: str) -> bool:
        return table in self.indexes and super().ships(table)


SinkConfig = Annotated[
    DatabaseSinkConfig | WebhookSinkConfig | ElasticsearchSinkConfig,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)


def parse_sinks(raw: str) -> tuple[list[SinkConfig], list[str]]:
    """The sinks in ``raw`` (a JSON list) and an error line per entry that is not one."""
    text = raw.strip()
    if not text:
        return [], []
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [f"WAHUB_REPLICATION_SINKS is not JSON: {exc}"]
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return [], ["WAHUB_REPLICATION_SINKS must be a JSON list of sinks"]
    sinks: list[SinkConfig] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        label = _label(entry, index)
        try:
            sink = _ADAPTER.validate_python(entry)
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'sink'}: {e['msg']}" for e in exc.errors()
            )
            errors.append(f"sink {label}: {problems}")
            continue
        if sink.name in seen:
            errors.append(f"sink {label}: the name is used twice")
            continue
        seen.add(sink.name)
        sinks.append(sink)
    return sinks, errors


def _label(entry: Any, index: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        return repr(entry["name"])
    return f"#{index + 1}"
