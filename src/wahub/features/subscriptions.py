"""Event subscriptions as the API and the CLI manage them: create (the secret is shown
once), list, get, update, pause and resume, delete, ping, the delivery log, dead letters
and replay. Delivering is ``wahub.pipeline.event_deliveries``; deriving events from the
change log is ``wahub.pipeline.event_fanout``."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import NotFound, ValidationError
from wahub.domain.ids import new_id
from wahub.domain.subscription_events import EVENT_TYPES, PING, Event
from wahub.pipeline.event_deliveries import DeliveryPolicy, new_session, open_secret
from wahub.signed_webhooks import Outcome, new_secret, post_signed, secret_key, standard_headers
from wahub.store import subscriptions as q
from wahub.store.database import Database

MAX_URL_LENGTH = 2000
# Cloud metadata services and other link-local hosts: a subscription must not make the
# hub fetch them (server-side request forgery).
FORBIDDEN_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)
RESOLVE_TIMEOUT_SECONDS = 2.0


def forbidden_address(host: str) -> bool:
    """True for a literal link-local address (IPv4, IPv6, or IPv4-mapped IPv6)."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in FORBIDDEN_NETWORKS)


async def check_url(url: str) -> str:
    """The URL, or ``ValidationError`` (422) saying why it cannot be a subscription's:
    not http(s), no host, or a host that is or resolves to a link-local address. A
    host that does not resolve is accepted (deliveries retry until it does)."""
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"url: longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"url: not a valid URL ({exc})", details={"url": url}) from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("url: must start with http:// or https://", details={"url": url})
    host = parts.hostname
    if not host:
        raise ValidationError("url: has no host", details={"url": url})
    if forbidden_address(host):
        raise ValidationError(
            "url: points at a link-local (metadata) address", details={"host": host}
        )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, ValueError, UnicodeError):
        return url  # unresolvable now: deliveries retry until it resolves
    for info in infos:
        if forbidden_address(str(info[4][0])):
            raise ValidationError(
                "url: its host resolves to a link-local (metadata) address",
                details={"host": host, "address": str(info[4][0])},
            )
    return url


def check_event_types(types: Sequence[str]) -> list[str]:
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown or not types:
        raise ValidationError(
            "event_types: " + (f"unknown {unknown}" if unknown else "give at least one"),
            details={"allowed": list(EVENT_TYPES)},
        )
    return sorted(set(types), key=EVENT_TYPES.index)


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: never the secret."""
    return {k: v for k, v in row.items() if k != "secret"}


class Subscriptions:
    def __init__(
        self,
        db: Database,
        cipher: CredentialCipher,
        policy: DeliveryPolicy | None = None,
        *,
        on_due: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.policy = policy or DeliveryPolicy()
        self.on_due = on_due

    def _wake(self) -> None:
        if self.on_due is not None:
            self.on_due()

    async def create(
        self,
        *,
        url: str,
        event_types: Sequence[str],
        channel_ids: Sequence[str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create; the returned row carries ``secret`` (the only time it is shown)."""
        url = await check_url(url)
        types = check_event_types(event_types)
        secret = new_secret()
        now = time.time()
        subscription_id = new_id("sub")
        row: dict[str, Any] = {
            "id": subscription_id,
            "url": url,
            "event_types": types,
            "channel_ids": None if channel_ids is None else sorted(set(channel_ids)),
            "description": description,
            "secret": self.cipher.seal({"secret": secret}),
            "paused": False,
            "created_at": now,
            "updated_at": now,
        }
        await self.db.write(lambda c: q.insert_subscription_sync(c, row))
        created = await self.get(subscription_id)
        return {**created, "secret": secret}

    async def get(self, subscription_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await conn.run_sync(lambda c: q.get_subscription_sync(c, subscription_id))
        if row is None:
            raise NotFound(f"no subscription {subscription_id!r}")
        return public(row)

    async def all(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.run_sync(q.list_subscriptions_sync)
            counts = await conn.run_sync(q.delivery_counts_sync)
        empty = dict.fromkeys(q.STATES, 0)
        return [{**public(r), "deliveries": counts.get(r["id"], empty)} for r in rows]

    async def update(self, subscription_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change url, event_types, channel_ids or description (only those given)."""
        values: dict[str, Any] = {}
        if "url" in changes:
            values["url"] = await check_url(changes["url"])
        if "event_types" in changes:
            values["event_types"] = check_event_types(changes["event_types"])
        if "channel_ids" in changes:
            ids = changes["channel_ids"]
            values["channel_ids"] = None if ids is None else sorted(set(ids))
        if "description" in changes:
            values["description"] = changes["description"]
        await self.get(subscription_id)
        if values:
            values["updated_at"] = time.time()
            await self.db.write(lambda c: q.update_subscription_sync(c, subscription_id, values))
        return await self.get(subscription_id)

    async def set_paused(self, subscription_id: str, paused: bool) -> dict[str, Any]:
        await self.get(subscription_id)
        now = time.time()
        if paused:
            await self.db.write(
                lambda c: q.pause_subscription_sync(c, subscription_id, reason=None, now=now)
            )
        else:
            await self.db.write(lambda c: q.resume_subscription_sync(c, subscription_id, now=now))
            self._wake()
        return await self.get(subscription_id)

    async def delete(self, subscription_id: str) -> None:
        if not await self.db.write(lambda c: q.delete_subscription_sync(c, subscription_id)):
            raise NotFound(f"no subscription {subscription_id!r}")

    async def deliveries(
        self,
        subscription_id: str,
        *,
        state: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The subscription's deliveries, newest first (``state="dead"``: dead letters)."""
        await self.get(subscription_id)
        async with self.db.read() as conn:
            return await conn.run_sync(
                lambda c: q.list_deliveries_sync(
                    c, subscription_id, state=state, before_id=before_id, limit=limit
                )
            )

    async def attempts(
        self, subscription_id: str, *, delivery_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The delivery log (status code, latency, error per attempt), newest first."""
        await self.get(subscription_id)
        async with self.db.read() as conn:
            return await conn.run_sync(
                lambda c: q.list_attempts_sync(
                    c, subscription_id, delivery_id=delivery_id, limit=limit
                )
            )

    async def replay(
        self,
        subscription_id: str,
        *,
        delivery_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """Send again one delivery, or the delivered and dead ones created in
        ``[since, until)``; returns how many were queued again."""
        await self.get(subscription_id)
        if delivery_id is None and since is None:
            raise ValidationError("replay: give a delivery_id or a time range (since)")
        if since is not None and until is not None and until <= since:
            raise ValidationError("replay: until must be after since")
        now = time.time()
        count = await self.db.write(
            lambda c: q.replay_sync(
                c, subscription_id, delivery_id=delivery_id, since=since, until=until, now=now
            )
        )
        if delivery_id is not None and count == 0:
            raise NotFound(f"no delivery {delivery_id} in subscription {subscription_id!r}")
        self._wake()
        return count

    async def ping(self, subscription_id: str) -> dict[str, Any]:
        """POST a signed ``ping`` event now and report the answer (never stored; a 410
        pauses the subscription as a delivery's would)."""
        async with self.db.read() as conn:
            row = await conn.run_sync(lambda c: q.get_subscription_sync(c, subscription_id))
        if row is None:
            raise NotFound(f"no subscription {subscription_id!r}")
        now = time.time()
        event = Event(
            webhook_id=new_id("evt"),
            type=PING,
            ordering_key="ping",
            channel_id=None,
            data={"subscription_id": subscription_id},
            occurred_at=now,
        )
        key = secret_key(open_secret(self.cipher, row["secret"], subscription_id))
        body = orjson.dumps(event.payload())
        headers = standard_headers(key, event.webhook_id, int(now), body)
        async with new_session(self.policy) as session:
            attempt = await post_signed(session, row["url"], body, headers)
        if attempt.outcome is Outcome.GONE:
            reason = f"the receiver answered 410 Gone: {attempt.reason}"
            await self.db.write(
                lambda c: q.pause_subscription_sync(c, subscription_id, reason=reason, now=now)
            )
        return {
            "webhook_id": event.webhook_id,
            "ok": attempt.outcome is Outcome.DELIVERED,
            "outcome": attempt.outcome.value,
            "status_code": attempt.status_code,
            "latency_ms": attempt.latency_ms,
            "error": attempt.reason,
        }
