"""The Elasticsearch sink: one document per row, keyed by the row's id, with ``@timestamp``.

- ``messages`` (default index ``whatsapp_messages``): the message row, its ``chat_name``
  (read from the chats table when the change ships) and ``@timestamp`` (sent time).
- ``chats`` (default index ``whatsapp_chat_names``): the document seed 002's webhook
  kept, ``{chat_id, chat_name, @timestamp, updated_at}`` (``chat_id`` keyword,
  ``chat_name`` text), plus the chat's kind.
- any other replicated table mapped in ``indexes``: the row and ``@timestamp``.

Writes go through the official client's bulk helper (``async_streaming_bulk``), one
action per change. Every action carries the change's seq as an external version, so
Elasticsearch itself keeps the newest: a replayed or late change comes back 409
(version conflict), which means "already newer" and counts as delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from wahub.replication.config import ElasticsearchSinkConfig
from wahub.replication.sinks.base import (
    DELIVERED,
    Delivery,
    Outcomes,
    SinkUnavailable,
    rejected,
    retry,
)
from wahub.store.changelog import Change

ChatNames = Callable[[set[str]], Awaitable[dict[str, str | None]]]

# Unix times are doubles: Elasticsearch would map them as 32-bit floats (to the minute).
_DYNAMIC_DOUBLES = [{"doubles": {"match_mapping_type": "double", "mapping": {"type": "double"}}}]

MAPPINGS: dict[str, dict[str, Any]] = {
    "chats": {
        "dynamic_templates": _DYNAMIC_DOUBLES,
        "properties": {
            "chat_id": {"type": "keyword"},
            "chat_name": {"type": "text"},
            "kind": {"type": "keyword"},
            "@timestamp": {"type": "date"},
            "updated_at": {"type": "date"},
        },
    },
    "messages": {
        "dynamic_templates": _DYNAMIC_DOUBLES,
        "properties": {
            "id": {"type": "keyword"},
            "chat_id": {"type": "keyword"},
            "chat_name": {"type": "text"},
            "channel_id": {"type": "keyword"},
            "direction": {"type": "keyword"},
            "type": {"type": "keyword"},
            "status": {"type": "keyword"},
            "text": {"type": "text"},
            "template_name": {"type": "keyword"},
            # Shapes differ per message type: kept in _source, not indexed (one type's
            # field must not refuse another type's document).
            "content": {"type": "object", "enabled": False},
            "@timestamp": {"type": "date"},
        },
    },
}
DEFAULT_MAPPING: dict[str, Any] = {
    "dynamic_templates": _DYNAMIC_DOUBLES,
    "properties": {"@timestamp": {"type": "date"}},
}


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(float(epoch), tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _doc_id(change: Change) -> str:
    return change.key


def document(change: Change, chat_names: dict[str, str | None]) -> dict[str, Any]:
    """The document a change writes (not for deletes)."""
    row = change.data
    if change.table == "chats":
        stamp = iso(row.get("name_updated_at") or row.get("created_at"))
        return {
            "chat_id": row.get("chat_id"),
            "chat_name": row.get("name"),
            "kind": row.get("kind"),
            "@timestamp": stamp,
            "updated_at": stamp,
        }
    doc = dict(row)
    if change.table == "messages":
        doc["chat_name"] = chat_names.get(str(row.get("chat_id")))
    when = row.get("created_at") or row.get("recorded_at") or change.created_at
    doc["@timestamp"] = iso(float(when))
    return doc


class ElasticsearchSink:
    def __init__(
        self,
        config: ElasticsearchSinkConfig,
        chat_names: ChatNames,
        *,
        client: AsyncElasticsearch | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self._chat_names = chat_names
        self._client = client
        self._owns_client = client is None

    def _build_client(self) -> AsyncElasticsearch:
        auth: dict[str, Any] = {}
        if self.config.api_key is not None:
            auth["api_key"] = self.config.api_key.get_secret_value()
        elif self.config.username is not None and self.config.password is not None:
            auth["basic_auth"] = (self.config.username, self.config.password.get_secret_value())
        return AsyncElasticsearch(
            self.config.url, request_timeout=self.config.timeout_seconds, **auth
        )

    @property
    def client(self) -> AsyncElasticsearch:
        if self._client is None:
            self._client = self._build_client()
        return self._client

    async def open(self) -> None:
        if not self.config.create_indexes:
            return
        for table, index in self.config.indexes.items():
            try:
                await self.client.options(ignore_status=400).indices.create(
                    index=index, mappings=MAPPINGS.get(table, DEFAULT_MAPPING)
                )
            except (ApiError, TransportError) as exc:
                raise SinkUnavailable(f"elasticsearch: creating index {index}: {exc}") from exc

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
            self._client = None

    async def deliver(self, changes: list[Change]) -> Outcomes:
        wanted = [c for c in changes if self.config.ships(c.table)]
        if not wanted:
            return {}
        chats = {str(c.data.get("chat_id")) for c in wanted if c.table == "messages"}
        names = await self._chat_names(chats) if chats else {}
        actions = [self._action(c, names) for c in wanted]
        outcomes: Outcomes = {}
        results = async_streaming_bulk(
            self.client,
            actions,
            chunk_size=self.config.batch_size,
            max_retries=0,
            raise_on_error=False,
            raise_on_exception=True,
        )
        position = 0
        try:
            async for ok, item in results:
                change = wanted[position]
                position += 1
                outcomes[change.ident] = DELIVERED if ok else _item_outcome(item)
        except ApiError as exc:
            # The bulk request as a whole was answered with an error (auth, 429, 5xx):
            # nothing in it is this change's fault.
            raise SinkUnavailable(f"elasticsearch: {exc}") from exc
        except TransportError as exc:
            raise SinkUnavailable(f"elasticsearch unreachable: {exc}") from exc
        return outcomes

    def _action(self, change: Change, names: dict[str, str | None]) -> dict[str, Any]:
        action: dict[str, Any] = {
            "_index": self.config.indexes[change.table],
            "_id": _doc_id(change),
            "version": change.seq,
            "version_type": "external",
        }
        if change.op == "delete":
            action["_op_type"] = "delete"
        else:
            action["_op_type"] = "index"
            action["_source"] = document(change, names)
        return action


def _item_outcome(item: dict[str, Any]) -> Delivery:
    (op_type, result), *_ = item.items()
    status = int(result.get("status", 500))
    error = result.get("error") or {}
    kind = error.get("type", "") if isinstance(error, dict) else str(error)
    if status == 409 and "version_conflict" in kind:
        return DELIVERED  # the index already holds this version or a newer one
    if status == 404 and op_type == "delete":
        return DELIVERED  # nothing to delete is what a delete wants
    reason = f"{status} {kind}: {error.get('reason', '') if isinstance(error, dict) else ''}"
    if status == 429 or status >= 500:
        return retry(reason.strip(": "))
    return rejected(reason.strip(": "))
