"""Outgoing webhooks: changes POSTed to a URL, signed, in order per chat.

Each request carries consecutive changes of one chat (``{"sink", "changes": [...]}``),
signed the Standard Webhooks way by ``wahub.signed_webhooks`` (the one signing and
answer-reading code, shared with event subscriptions), the key being the sink's secret
as bytes (receivers verify with ``whsec_`` + base64 of the secret):

    webhook-id: <sink>-<first seq>-<last seq>-<count>
    webhook-timestamp: 1767225600
    webhook-signature: v1,<base64>

and, for receivers written before those headers, with HMAC-SHA256 over
``timestamp + "." + body``:

    X-Wahub-Timestamp: 1767225600
    X-Wahub-Signature: sha256=<hex>

Chats are posted concurrently; within a chat, a request goes out only after the
previous one succeeded (2xx). A 4xx other than 408, 425 and 429 means the receiver refused
what it got: a request with several changes is resent change by change, and a change
refused on its own is rejected (a dead letter with the receiver's answer) while the chat
goes on. Timeouts, connection errors, redirects, 408, 425, 429 and 5xx are retried
later; the chat's later changes wait for it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson

from wahub.replication.config import WebhookSinkConfig
from wahub.replication.sinks.base import (
    DELIVERED,
    Outcomes,
    SinkUnavailable,
    rejected,
    retry,
)
from wahub.signed_webhooks import Outcome, legacy_signature, post_signed, standard_headers
from wahub.store.changelog import Change

TIMESTAMP_HEADER = "X-Wahub-Timestamp"
SIGNATURE_HEADER = "X-Wahub-Signature"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Wahub-Signature`` value for ``body`` sent at ``timestamp``."""
    return legacy_signature(secret, timestamp, body)


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300.0
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (a
    captured request cannot be replayed later)."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookSink:
    def __init__(self, config: WebhookSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self._secret = config.secret.get_secret_value().encode()
        # Standard Webhooks: the key is the secret's bytes; receivers verify with
        # ``whsec_`` + base64 of the secret.
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                connector=aiohttp.TCPConnector(limit=self.config.concurrency),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, changes: list[Change]) -> Outcomes:
        if self._session is None:
            raise SinkUnavailable("webhook sink not open")
        wanted = [c for c in changes if self.config.ships(c.table)]
        by_chat: dict[str, list[Change]] = {}
        for change in wanted:
            by_chat.setdefault(change.ordering_key, []).append(change)
        limit = asyncio.Semaphore(self.config.concurrency)
        outcomes: Outcomes = {}

        async def one_chat(chat_changes: list[Change]) -> None:
            async with limit:
                outcomes.update(await self._deliver_chat(chat_changes))

        async with asyncio.TaskGroup() as group:
            for chat_changes in by_chat.values():
                group.create_task(one_chat(chat_changes))
        return outcomes

    async def _deliver_chat(self, changes: list[Change]) -> Outcomes:
        outcomes: Outcomes = {}
        chunks = list(_chunks(changes, self.config.max_changes_per_request))
        for index, chunk in enumerate(chunks):
            try:
                await self._post(chunk)
            except _Refused as refused:
                if len(chunk) == 1:
                    outcomes[chunk[0].ident] = rejected(refused.reason)
                    continue
                # Find the change the receiver refuses: the others go through.
                for position, change in enumerate(chunk):
                    try:
                        await self._post([change])
                    except _Refused as alone:
                        outcomes[change.ident] = rejected(alone.reason)
                    except _Failed as failed:
                        _retry_rest(outcomes, chunk[position:], chunks[index + 1 :], failed.reason)
                        return outcomes
                    else:
                        outcomes[change.ident] = DELIVERED
            except _Failed as failed:
                _retry_rest(outcomes, chunk, chunks[index + 1 :], failed.reason)
                return outcomes
            else:
                for change in chunk:
                    outcomes[change.ident] = DELIVERED
        return outcomes

    async def _post(self, changes: list[Change]) -> None:
        assert self._session is not None
        body = orjson.dumps(payload(self.name, changes))
        now = int(time.time())
        timestamp = str(now)
        webhook_id = f"{self.name}-{changes[0].seq}-{changes[-1].seq}-{len(changes)}"
        headers = {
            **standard_headers(self._secret, webhook_id, now, body),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "X-Wahub-Sink": self.name,
        }
        attempt = await post_signed(self._session, self.config.url, body, headers)
        if attempt.outcome is Outcome.DELIVERED:
            return
        reason = attempt.reason or attempt.outcome.value
        if attempt.outcome in (Outcome.REFUSED, Outcome.GONE):
            raise _Refused(reason)
        raise _Failed(reason)


def _chunks(changes: list[Change], size: int) -> Iterator[list[Change]]:
    for start in range(0, len(changes), size):
        yield changes[start : start + size]


def _retry_rest(
    outcomes: Outcomes, chunk: list[Change], later: list[list[Change]], reason: str
) -> None:
    for change in chunk:
        outcomes[change.ident] = retry(reason)
    for rest in later:
        for change in rest:
            outcomes[change.ident] = retry(reason)


def payload(sink: str, changes: list[Change]) -> dict[str, Any]:
    """The JSON body a request carries (documented in docs/replication.md)."""
    return {"sink": sink, "changes": [c.as_json() for c in changes]}
