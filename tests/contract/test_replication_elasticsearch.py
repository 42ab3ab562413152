"""The Elasticsearch sink through the official client, against recorded responses.

Elasticsearch cannot run on our machines. The client runs unchanged down to its
transport; only the HTTP node is replaced by one that answers with recorded responses
of the documented APIs (``_bulk`` with per-item results, index creation) and keeps the
requests it got. That is the only fake in the replication tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar

from elastic_transport import ApiResponseMeta, BaseAsyncNode, HttpHeaders
from elastic_transport._node import NodeApiResponse
from elasticsearch import AsyncElasticsearch
from sqlalchemy import insert, update

from wahub.replication.config import ElasticsearchSinkConfig
from wahub.replication.service import Replication
from wahub.replication.sinks.elasticsearch import ElasticsearchSink
from wahub.store.changelog import read_changes_sync
from wahub.store.schema import chats

GROUP = "120363417563833505@g.us"
HEADERS = {
    "x-elastic-product": "Elasticsearch",
    "content-type": "application/vnd.elasticsearch+json;compatible-with=9",
}


def bulk_item(action: dict[str, Any], status: int, error: dict[str, Any] | None) -> dict[str, Any]:
    """One entry of a ``_bulk`` response's ``items``, as Elasticsearch documents it."""
    op, meta = next(iter(action.items()))
    result: dict[str, Any] = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
    if error is None:
        result |= {
            "_version": meta.get("version", 1),
            "result": "deleted" if op == "delete" else "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": 0,
            "_primary_term": 1,
        }
    else:
        result["error"] = error
    return {op: result}


MAPPING_ERROR = {
    "type": "document_parsing_exception",
    "reason": "[1:42] failed to parse field [status] of type [keyword]",
}
VERSION_CONFLICT = {
    "type": "version_conflict_engine_exception",
    "reason": "version conflict, current version [9] is higher or equal to the one provided",
}
TOO_MANY = {"type": "es_rejected_execution_exception", "reason": "rejected execution"}


class RecordedNode(BaseAsyncNode):
    """Answers like an Elasticsearch node would; ``script`` decides each bulk item."""

    requests: ClassVar[list[tuple[str, str, bytes]]] = []
    script: ClassVar[list[tuple[int, dict[str, Any] | None]]] = []

    async def perform_request(  # type: ignore[override]
        self, method: str, target: str, body: bytes | None = None, **_: Any
    ) -> NodeApiResponse:
        RecordedNode.requests.append((method, target, body or b""))
        if target.endswith("/_bulk") or target.startswith("/_bulk"):
            lines = [json.loads(line) for line in (body or b"").splitlines() if line.strip()]
            actions = [line for line in lines if next(iter(line)) in ("index", "delete")]
            items = []
            for action in actions:
                status, error = RecordedNode.script.pop(0) if RecordedNode.script else (201, None)
                items.append(bulk_item(action, status, error))
            errors = any("error" in next(iter(i.values())) for i in items)
            payload: dict[str, Any] = {"took": 3, "errors": errors, "items": items}
            return self._answer(200, payload)
        # PUT /<index>: already there (what a second start sees).
        return self._answer(
            400,
            {
                "error": {"type": "resource_already_exists_exception", "reason": "exists"},
                "status": 400,
            },
        )

    def _answer(self, status: int, payload: dict[str, Any]) -> NodeApiResponse:
        meta = ApiResponseMeta(
            status=status,
            http_version="1.1",
            headers=HttpHeaders(HEADERS),
            duration=0.001,
            node=self.config,
        )
        return NodeApiResponse(meta, json.dumps(payload).encode())

    async def close(self) -> None:
        return None


def es_sink(chat_names: dict[str, str | None]) -> ElasticsearchSink:
    config = ElasticsearchSinkConfig(
        name="search", kind="elasticsearch", url="http://es.test:9200", max_attempts=3
    )
    client = AsyncElasticsearch("http://es.test:9200", node_class=RecordedNode)

    async def names(ids: set[str]) -> dict[str, str | None]:
        return {i: chat_names.get(i) for i in ids}

    return ElasticsearchSink(config, names, client=client)


def bulk_lines() -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for method, target, body in RecordedNode.requests
        if "_bulk" in target
        for line in body.splitlines()
        if line.strip()
    ]


async def test_documents_are_keyed_by_id_versioned_by_seq_and_enriched(env: Any) -> None:
    RecordedNode.requests, RecordedNode.script = [], []
    now = 1767225600.25
    async with env.db.transaction() as conn:
        await conn.execute(
            insert(chats).values(
                chat_id=GROUP,
                kind="group",
                name="Marketing Team",
                name_updated_at=now,
                created_at=now,
            )
        )
    message = await env.insert_queued(GROUP, text="launch at 9")
    repl = Replication(env.db, sinks="[]")
    config = ElasticsearchSinkConfig(name="search", kind="elasticsearch", url="http://es:9200")
    sink = ElasticsearchSink(
        config,
        repl.chat_names,
        client=AsyncElasticsearch("http://es.test:9200", node_class=RecordedNode),
    )
    async with env.db.read() as conn:
        log = await conn.run_sync(lambda c: read_changes_sync(c, after=0, upto=None, limit=100))

    await sink.open()
    outcomes = await sink.deliver(log)

    assert outcomes
    assert all(d.outcome.value == "delivered" for d in outcomes.values())
    lines = bulk_lines()
    chat_action, chat_doc = lines[0], lines[1]
    assert chat_action["index"]["_index"] == "whatsapp_chat_names"
    assert chat_action["index"]["_id"] == GROUP
    assert chat_action["index"]["version_type"] == "external"
    assert chat_doc == {
        "chat_id": GROUP,
        "chat_name": "Marketing Team",
        "kind": "group",
        "@timestamp": "2026-01-01T00:00:00.250Z",
        "updated_at": "2026-01-01T00:00:00.250Z",
    }
    message_action, message_doc = lines[2], lines[3]
    assert message_action["index"]["_index"] == "whatsapp_messages"
    assert message_action["index"]["_id"] == message["id"]
    assert message_doc["chat_name"] == "Marketing Team", "messages carry their chat's name"
    assert message_doc["text"] == "launch at 9"
    assert "@timestamp" in message_doc
    created = [t for m, t, _ in RecordedNode.requests if m == "PUT" and "_bulk" not in t]
    assert sorted(created) == ["/whatsapp_chat_names", "/whatsapp_messages"]


async def test_a_partial_bulk_failure_dead_letters_only_the_refused_document(env: Any) -> None:
    RecordedNode.requests = []
    async with env.db.transaction() as conn:
        for i in range(4):
            await conn.execute(
                insert(chats).values(
                    chat_id=f"12036300000000{i}@g.us", kind="group", name=f"G{i}", created_at=1.0
                )
            )
    # Item 2 is refused by the mapping, item 3 conflicts with a newer version (already
    # indexed), item 4 is throttled once and then indexed.
    RecordedNode.script = [
        (201, None),
        (400, MAPPING_ERROR),
        (409, VERSION_CONFLICT),
        (429, TOO_MANY),
        (201, None),
    ]
    sink = es_sink({})
    repl = Replication(
        env.db,
        sinks=json.dumps(
            [
                {
                    "name": "search",
                    "kind": "elasticsearch",
                    "url": "http://es.test:9200",
                    "backoff_base_seconds": 0.01,
                    "backoff_max_seconds": 0.02,
                }
            ]
        ),
        poll_interval=0.02,
        sink_factory=lambda config: sink,
    )
    await repl.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            status = (await repl.status())["sinks"][0]
            if status["pending"] == 0:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        letters = await repl.dead_letters("search")
    finally:
        await repl.stop()

    assert [(d["row_key"], d["error"]) for d in letters] == [
        (
            "120363000000001@g.us",
            "400 document_parsing_exception: [1:42] failed to parse field "
            "[status] of type [keyword]",
        )
    ]
    ids = [line["index"]["_id"] for line in bulk_lines() if "index" in line]
    assert ids.count("120363000000003@g.us") == 2, "the throttled document is sent again"
    assert ids.count("120363000000002@g.us") == 1, "a version conflict means already newer"


async def test_a_renamed_chat_updates_its_name_document(env: Any) -> None:
    RecordedNode.requests, RecordedNode.script = [], []
    async with env.db.transaction() as conn:
        await conn.execute(insert(chats).values(chat_id=GROUP, kind="group", created_at=1.0))
        await conn.execute(
            update(chats)
            .where(chats.c.chat_id == GROUP)
            .values(name="Support", name_updated_at=2.0)
        )
    async with env.db.read() as conn:
        log = await conn.run_sync(lambda c: read_changes_sync(c, after=0, upto=None, limit=100))
    await es_sink({}).deliver(log)

    docs = [line for line in bulk_lines() if "chat_id" in line]
    assert docs[-1]["chat_name"] == "Support"
    versions = [line["index"]["version"] for line in bulk_lines() if "index" in line]
    assert versions == sorted(versions), "later changes carry higher versions"
