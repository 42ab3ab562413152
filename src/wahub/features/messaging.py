"""Sending and reading messages: the use cases behind ``/v1/messages``.

``send`` validates everything a client can get wrong (phone, chat, channel, template,
permission) before it stores anything, stores the message and its ``queued`` event in
one transaction, and only then returns: the caller answers ``202`` after the commit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection as SyncConnection
from sqlalchemy.exc import IntegrityError

from wahub.domain.actors import Actor
from wahub.domain.content import SendRequest
from wahub.domain.errors import (
    ConflictError,
    NotFound,
    PermissionDenied,
    ValidationError,
    WahubError,
)
from wahub.domain.ids import MAX_SQL_INT, is_message_id
from wahub.domain.phones import canonical_chat_id, is_group_chat
from wahub.features.access import AccessControl
from wahub.features.channels import public_channel
from wahub.features.conversations import (
    Outbound,
    SendCheck,
    check_may_send_many_sync,
    record_outbound_many_sync,
)
from wahub.features.outbound import (
    check_template,
    choose_channel,
    default_channel,
    queued_message,
)
from wahub.features.web_sessions import check_web_send_sync
from wahub.store import channels as channel_q
from wahub.store import messages as q
from wahub.store.batching import WriteBatcher
from wahub.store.database import Database

MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Accepted:
    message: dict[str, Any]
    created: bool  # False when an idempotent retry returned the earlier message


def request_hash(request: SendRequest) -> str:
    return hashlib.sha256(
        orjson.dumps(request.canonical(), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class _NewMessage:
    """One send waiting to be checked and stored (see ``Messaging._store_batch_sync``)."""

    actor: Actor
    request: SendRequest
    chat_id: str
    scoped_key: str | None
    digest: str
    now: float


_PLACEHOLDER = Accepted({}, created=False)  # replaced once the batch's rows are inserted


def _check_reply_to(conn: SyncConnection, reply_to: str, channel_id: str, chat_id: str) -> None:
    """A ``reply_to`` naming one of our message ids must name a message of the same chat
    and channel (WhatsApp quotes only within a conversation) that has been sent or may
    still be. Raises ValidationError naming the field.

    A reply to a message of ours still queued (a CRM answering its own just-queued
    message) is accepted and held, not refused: both share the chat's ordering key, so
    the reply is claimed only once the quoted message has left the queue with its
    provider id (or failed, which then fails the reply saying so). A provider's message
    id is passed on as given: it may name a message wahub never stored (sent before
    wahub, or from another device), and only the provider can judge it.
    """
    if not is_message_id(reply_to):
        return
    quoted = q.get_message_sync(conn, reply_to)
    details = {"field": "reply_to", "value": reply_to}
    if quoted is None:
        raise ValidationError(f"reply_to: no message {reply_to}", details=details)
    if quoted["chat_id"] != chat_id or quoted["channel_id"] != channel_id:
        raise ValidationError(
            f"reply_to: message {reply_to} is not in this chat on this channel; a reply "
            "can only quote a message of its own conversation",
            details=details,
        )
    if quoted["provider_message_id"] is None and quoted["status"] not in q.ACTIVE:
        raise ValidationError(
            f"reply_to: message {reply_to} was never sent ({quoted['status']}), so there "
            "is nothing to quote",
            details=details,
        )


class Messaging:
    def __init__(
        self,
        db: Database,
        access: AccessControl,
        *,
        default_region: str | None = None,
        on_enqueued: Callable[[], None] | None = None,
        web_daily_cap: int = 200,
        web_keepalive_timeout_s: float = 10.0,
    ) -> None:
        self.db = db
        self.web_daily_cap = web_daily_cap
        self.web_keepalive_timeout_s = web_keepalive_timeout_s
        self.access = access
        self.default_region = default_region
        self._on_enqueued = on_enqueued or (lambda: None)
        # Chat rows are never deleted: once this process created one, skip the insert.
        self._known_chats: set[str] = set()
        # Channels are few and rarely change; re-reading them for every send costs the
        # single SQLite writer more than the message itself. A second of staleness only
        # delays when a newly added channel becomes the default.
        self._channels_cache: tuple[float, list[dict[str, Any]]] = (0.0, [])
        # The channel a send without channel_id goes to when several exist, in this
        # process only (``serve --sandbox`` sets its sandbox channel); None: the only
        # channel, else channel_id is required.
        self.default_channel_id: str | None = None
        # Sends arriving together are checked and stored in one transaction, with one
        # multi-row INSERT for their messages (a transaction each cost more round trips
        # to the database than the work).
        self._batcher: WriteBatcher[_NewMessage, Accepted | WahubError] = WriteBatcher(
            db, self._store_batch_sync
        )

    async def send(
        self, actor: Actor, request: SendRequest, *, idempotency_key: str | None = None
    ) -> Accepted:
        """Store one outbound message. Raises ValidationError, NotFound, PermissionDenied,
        ConflictError (idempotency key reused with another body)."""
        chat_id = canonical_chat_id(request.to, default_region=self.default_region, field="to")
        scoped_key = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 200:
                raise ValidationError(
                    "Idempotency-Key must be 1 to 200 characters",
                    details={"field": "Idempotency-Key"},
                )
            scoped_key = f"{actor.user_id}:{idempotency_key}"
        digest = request_hash(request)
        if scoped_key is not None:
            # A retry of an accepted request gets its message back, even if the sender
            # has since lost the right to send there: it was accepted when it was asked.
            async with self.db.read() as conn:
                existing = await q.get_by_idempotency_key(conn, scoped_key)
            if existing is not None:
                return self._replay(existing, digest)
        await self.access.check_can_send(actor, chat_id)
        try:
            return await self._store(actor, request, chat_id, scoped_key, digest)
        except IntegrityError:
            # A concurrent request with the same key won the race: answer like a retry.
            if scoped_key is None:
                raise
            async with self.db.read() as conn:
                existing = await q.get_by_idempotency_key(conn, scoped_key)
            if existing is None:
                raise
            return self._replay(existing, digest)

    def _replay(self, existing: dict[str, Any], digest: str) -> Accepted:
        if existing["request_hash"] != digest:
            raise ConflictError(
                "this Idempotency-Key was already used with a different request body",
                details={"message_id": existing["id"]},
            )
        return Accepted(existing, created=False)

    async def _store(
        self,
        actor: Actor,
        request: SendRequest,
        chat_id: str,
        scoped_key: str | None,
        digest: str,
    ) -> Accepted:
        outcome = await self._batcher.submit(
            _NewMessage(actor, request, chat_id, scoped_key, digest, time.time())
        )
        if isinstance(outcome, WahubError):
            raise outcome
        if outcome.created:
            # Only now: had the transaction rolled back, the chat row would not exist.
            if len(self._known_chats) > 100_000:
                self._known_chats.clear()
            self._known_chats.add(chat_id)
            self._on_enqueued()
        return outcome

    def _store_batch_sync(
        self, conn: SyncConnection, batch: Sequence[_NewMessage]
    ) -> list[Accepted | WahubError]:
        """Check each message, then store all that passed together, in the caller's
        transaction, with a few set-wise statements for the whole batch (one multi-row
        INSERT for the messages, one for their events, ...), not a few per message.

        A message its checks refuse gets its error back and writes nothing; the checks
        only read. An error while writing fails the whole batch (the batcher then
        writes each message on its own).
        """
        outcomes: list[Accepted | WahubError] = []
        passed: list[tuple[int, _NewMessage, dict[str, Any], dict[str, Any]]] = []
        for item in batch:
            try:
                checked = self._check_sync(conn, item)
            except WahubError as exc:
                outcomes.append(exc)
                continue
            if isinstance(checked, Accepted):
                outcomes.append(checked)
                continue
            outcomes.append(_PLACEHOLDER)
            passed.append((len(outcomes) - 1, item, *checked))
        refusals = check_may_send_many_sync(
            conn,
            [
                SendCheck(channel, item.chat_id, item.request.template is not None, item.now)
                for _, item, channel, _ in passed
            ],
        )
        accepted: list[tuple[int, _NewMessage, dict[str, Any]]] = []
        for (index, item, _, row), refusal in zip(passed, refusals, strict=True):
            if refusal is not None:
                outcomes[index] = refusal
            else:
                accepted.append((index, item, row))
        new_chats: dict[str, dict[str, Any]] = {}
        for _, item, row in accepted:
            if not is_group_chat(item.chat_id) and item.chat_id not in self._known_chats:
                new_chats.setdefault(
                    item.chat_id,
                    {
                        "chat_id": item.chat_id,
                        "kind": "person",
                        "channel_id": row["channel_id"],
                        "created_at": item.now,
                    },
                )
        for chat in new_chats.values():
            channel_q.ensure_chat_sync(conn, chat)
        stored = q.insert_messages_sync(conn, [row for _, _, row in accepted])
        record_outbound_many_sync(
            conn,
            [
                Outbound(
                    row["channel_id"],
                    item.chat_id,
                    row["id"],
                    item.request.template.name if item.request.template else item.request.type,
                    row["text"],
                    item.now,
                )
                for _, item, row in accepted
            ],
        )
        for (index, _, _), stored_row in zip(accepted, stored, strict=True):
            outcomes[index] = Accepted(stored_row, created=True)
        return outcomes

    def _check_sync(
        self, conn: SyncConnection, item: _NewMessage
    ) -> Accepted | tuple[dict[str, Any], dict[str, Any]]:
        """The checks of one message that are its own (reads only): the earlier message
        when the idempotency key was used before, else its channel and the row to
        insert. Raises WahubError. Opt-out and the service window are checked for the
        whole batch at once (``check_may_send_many_sync``)."""
        request, chat_id, now = item.request, item.chat_id, item.now
        if item.scoped_key is not None:
            existing = q.get_by_idempotency_key_sync(conn, item.scoped_key)
            if existing is not None:
                return self._replay(existing, item.digest)
        chat = channel_q.get_chat_sync(conn, chat_id) if is_group_chat(chat_id) else None
        channel = choose_channel(
            conn,
            asked=request.channel_id,
            listed=lambda: self._channels(conn),
            chat_channel_id=chat["channel_id"] if chat else None,
            chat_id=chat_id,
            default=self.default_channel_id,
        )
        if is_group_chat(chat_id):
            if chat is None:
                raise ValidationError(
                    f"to: unknown group {chat_id}; register it (POST /v1/chats) first",
                    details={"field": "to", "value": chat_id},
                )
            if chat["readonly"]:
                raise ValidationError(
                    f"to: our number is not a participant of group {chat_id}, so WhatsApp "
                    "will not accept messages to it",
                    details={"field": "to", "value": chat_id},
                )
        if channel["kind"] == "web":
            check_web_send_sync(
                conn,
                channel,
                message_type="template" if request.template is not None else request.type,
                now=now,
                default_daily_cap=self.web_daily_cap,
                keepalive_timeout_s=self.web_keepalive_timeout_s,
            )
        if (template := request.template) is not None:
            check_template(
                conn,
                channel["id"],
                name=template.name,
                language=template.language.code,
                body_parameters=template.body_parameter_count(),
                name_field="template.name",
                parameters_field="template.components",
            )
        if request.reply_to is not None:
            _check_reply_to(conn, request.reply_to, channel["id"], chat_id)
        return channel, queued_message(
            channel_id=channel["id"],
            chat_id=chat_id,
            content=request.content(),
            now=now,
            priority=request.priority,
            sender_user_id=item.actor.user_id,
            idempotency_key=item.scoped_key,
            request_hash=item.digest,
            reply_to=request.reply_to,
            template_name=template.name if template else None,
        )

    async def default_channel(self) -> dict[str, Any] | None:
        """The channel a send without ``channel_id`` goes to (a group's send still goes to
        the group's own channel): ``default_channel_id`` while that channel exists, else
        the only channel; None when such a send is refused (no channel, or several)."""

        def fresh(conn: SyncConnection) -> dict[str, Any] | None:
            # Not the send path's cache: a channel added a moment ago must count here.
            channels = channel_q.list_channels_sync(conn)
            return default_channel(conn, lambda: channels, self.default_channel_id)

        channel = await self.db.read_one(fresh)
        return None if channel is None else public_channel(channel)

    def _channels(self, conn: SyncConnection) -> list[dict[str, Any]]:
        fetched_at, channels = self._channels_cache
        if time.monotonic() - fetched_at > 1.0 or not channels:
            channels = channel_q.list_channels_sync(conn)
            self._channels_cache = (time.monotonic(), channels)
        return channels

    async def get(
        self, actor: Actor, message_id: str, *, with_history: bool = True
    ) -> dict[str, Any]:
        """One message with its status history. NotFound also when the actor may not see it."""
        async with self.db.read() as conn:
            row = await q.get_message(conn, message_id)
            events = await q.list_events(conn, message_id) if with_history and row else []
        if row is None or not await self._may_see(actor, row):
            raise NotFound(f"no message {message_id}")
        if with_history:
            row["history"] = events
        return row

    async def _may_see(self, actor: Actor, row: dict[str, Any]) -> bool:
        if actor.sees_everything or row["sender_user_id"] == actor.user_id:
            return True
        visible = await self.access.visible_chat_ids(actor)
        return visible is not None and row["chat_id"] in visible

    async def list_page(
        self,
        actor: Actor,
        *,
        chat: str | None,
        status: str | None,
        cursor: int | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of messages, newest first, and the cursor of the next page (None at the end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        if cursor is not None and not 1 <= cursor <= MAX_SQL_INT:
            raise ValidationError(
                "cursor: not a cursor returned by this API (use next_cursor as given)",
                details={"field": "cursor"},
            )
        chat_ids = None
        if chat is not None:
            chat_ids = [canonical_chat_id(chat, default_region=self.default_region, field="chat")]
        visible = await self.access.visible_chat_ids(actor)
        async with self.db.read() as conn:
            rows = await q.list_messages(
                conn,
                chat_ids=chat_ids,
                status=status,
                after_seq=cursor,
                limit=limit + 1,
                visible_chat_ids=visible,
                visible_sender=None if visible is None else actor.user_id,
            )
        next_cursor = rows[limit - 1]["seq"] if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def retry(self, actor: Actor, message_id: str) -> dict[str, Any]:
        """Queue a failed message again. ConflictError unless it is failed (and undelivered)."""
        if not actor.can_write:
            raise PermissionDenied("viewer keys are read-only")
        row = await self.get(actor, message_id, with_history=False)
        await self.access.check_can_send(actor, row["chat_id"])
        async with self.db.transaction() as conn:
            requeued = await q.requeue_failed(conn, message_id, time.time())
        if not requeued:
            raise ConflictError(
                f"message {message_id} is {row['status']}: only failed messages can be retried",
                details={"status": row["status"]},
            )
        self._on_enqueued()
        return await self.get(actor, message_id)
