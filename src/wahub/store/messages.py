"""Named queries for the outbox: the ``messages`` table is the queue and the log.

Every function takes an open connection and runs inside the caller's transaction, so a
status change, its event and (later) its counters commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select

from wahub.domain.status import Status, advance
from wahub.store.database import in_one_hop
from wahub.store.notify import EVENTS, OUTBOX, notify_sync
from wahub.store.schema import channels, message_events, messages, parked_statuses
from wahub.store.sql import insert_ignore, one_of

ACTIVE = ("queued", "sending", "uncertain")


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A message moved to ``status``: what realtime subscribers and counters hear about."""

    message_id: str
    chat_id: str
    channel_id: str
    sender_user_id: str | None
    status: str
    previous: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    message_id: str
    status: str
    source: str
    attempt: int = 0
    provider_timestamp: int = 0
    error_code: str | None = None
    detail: str | None = None


def _event_row(event: EventRecord, now: float) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "status": event.status,
        "source": event.source,
        "attempt": event.attempt,
        "provider_timestamp": event.provider_timestamp,
        "error_code": event.error_code,
        "detail": event.detail,
        "recorded_at": now,
    }


def record_events_sync(conn: SyncConnection, events: Sequence[EventRecord], now: float) -> None:
    """Append status history; an event already recorded (same webhook twice) is skipped.

    On PostgreSQL this also wakes other processes at commit: realtime subscribers for
    any event, send workers unless every event is a claim (``sending`` frees nothing).
    """
    if events:
        conn.execute(insert_ignore(conn, message_events), [_event_row(e, now) for e in events])
        if any(e.status != Status.SENDING for e in events):
            notify_sync(conn, OUTBOX, EVENTS)
        else:
            notify_sync(conn, EVENTS)


def insert_message_sync(conn: SyncConnection, row: dict[str, Any]) -> dict[str, Any]:
    """Insert a new outbound message and its ``queued`` event; returns the stored row."""
    stored = (conn.execute(messages.insert().returning(*messages.c), row)).one()
    record_events_sync(conn, [EventRecord(row["id"], Status.QUEUED, "api")], row["created_at"])
    return dict(stored._mapping)


def insert_messages_sync(
    conn: SyncConnection, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert new outbound messages and their ``queued`` events with one statement each
    (multi-row INSERT); returns the stored rows in the order given."""
    if not rows:
        return []
    stmt = messages.insert().returning(*messages.c, sort_by_parameter_order=True)
    stored = [dict(r._mapping) for r in conn.execute(stmt, list(rows))]
    # One statement for all the events too, each with its own message's time.
    conn.execute(
        insert_ignore(conn, message_events),
        [_event_row(EventRecord(r["id"], Status.QUEUED, "api"), r["created_at"]) for r in rows],
    )
    notify_sync(conn, OUTBOX, EVENTS)
    return stored


def get_message_sync(conn: SyncConnection, message_id: str) -> dict[str, Any] | None:
    row = (conn.execute(select(messages).where(messages.c.id == message_id))).first()
    return None if row is None else dict(row._mapping)


def get_by_idempotency_key_sync(conn: SyncConnection, key: str) -> dict[str, Any] | None:
    stmt = select(messages).where(messages.c.idempotency_key == key)
    row = (conn.execute(stmt)).first()
    return None if row is None else dict(row._mapping)


def list_events_sync(conn: SyncConnection, message_id: str) -> list[dict[str, Any]]:
    stmt = (
        select(message_events)
        .where(message_events.c.message_id == message_id)
        .order_by(message_events.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def list_messages_sync(
    conn: SyncConnection,
    *,
    chat_ids: Sequence[str] | None,
    status: str | None,
    after_seq: int | None,
    limit: int,
    visible_chat_ids: Sequence[str] | None = None,
    visible_sender: str | None = None,
    channel_ids: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Newest first, ``after_seq`` is the cursor (messages older than it).

    ``visible_chat_ids``/``visible_sender`` restrict what an agent sees: messages to chats
    assigned to their groups, or that they sent themselves; ``channel_ids`` what a key
    limited to channels sees.
    """
    stmt = select(messages).order_by(messages.c.seq.desc()).limit(limit)
    if channel_ids is not None:
        stmt = stmt.where(messages.c.channel_id.in_(sorted(channel_ids)))
    if chat_ids is not None:
        stmt = stmt.where(messages.c.chat_id.in_(chat_ids))
    if status is not None:
        stmt = stmt.where(messages.c.status == status)
    if after_seq is not None:
        stmt = stmt.where(messages.c.seq < after_seq)
    if visible_chat_ids is not None or visible_sender is not None:
        stmt = stmt.where(
            or_(
                messages.c.chat_id.in_(visible_chat_ids or []),
                messages.c.sender_user_id == visible_sender,
            )
        )
    return [dict(r._mapping) for r in conn.execute(stmt)]


_CLAIM: dict[str, Any] = {}


def _claim_statement(dialect: str) -> Any:
    """The claim, built once per dialect with parameters (b_channels, b_now, b_owner,
    b_lease_until, b_limit): workers claim after every batch of results, and building
    this statement anew each time cost more Python than running it.

    It only takes the lease: the status stays ``queued`` until ``start_sends_sync``. A
    claimed message waits for pacing (the channel's rate, the pair limit) before its
    request goes out, and a worker killed meanwhile has provably sent nothing: its lease
    simply lapses and the message, never having left ``queued``, keeps its place as its
    chat's head (DESIGN.md invariant 4). Only lease columns change, which the change log
    ignores, so a claim logs nothing.
    """
    stmt = _CLAIM.get(dialect)
    if stmt is not None:
        return stmt
    now = bindparam("b_now", type_=Float)
    if dialect == "postgresql":
        channels = bindparam("b_channels", type_=postgresql.ARRAY(String))
        on_channels = messages.c.channel_id == any_(channels)
    else:
        on_channels = messages.c.channel_id.in_(bindparam("b_channels", expanding=True))
    heads = (
        select(messages.c.ordering_key, func.min(messages.c.seq).label("head_seq"))
        .where(messages.c.status.in_(ACTIVE), on_channels)
        .group_by(messages.c.channel_id, messages.c.ordering_key)
        .subquery()
    )
    due = (
        select(messages.c.seq)
        .join(heads, messages.c.seq == heads.c.head_seq)
        .where(
            messages.c.status == "queued",
            messages.c.next_attempt_at <= now,
            # Claimed by a worker that is still pacing it (or died doing so: the lease lapses).
            or_(messages.c.lease_until.is_(None), messages.c.lease_until < now),
        )
        .order_by(messages.c.priority.desc(), messages.c.seq)
        .limit(bindparam("b_limit", type_=Integer))
    )
    if dialect == "postgresql":
        # Lock the due rows in a CTE, evaluated exactly once. As a plain IN (subquery),
        # PostgreSQL may evaluate the LIMIT ... FOR UPDATE SKIP LOCKED subquery more than
        # once and claim more rows than asked (seen in the contract tests).
        locked = due.with_for_update(skip_locked=True, of=messages).cte("due")
        target = messages.c.seq.in_(select(locked.c.seq))
    else:
        # SQLite has one writer at a time: the subquery sees a stable database.
        target = messages.c.seq.in_(due.scalar_subquery())
    stmt = (
        update(messages)
        .where(target, messages.c.status == "queued")
        .values(
            lease_owner=bindparam("b_owner", type_=String),
            lease_until=bindparam("b_lease_until", type_=Float),
        )
        .returning(*messages.c)
    )
    _CLAIM[dialect] = stmt
    return stmt


def claim_due_messages_sync(
    conn: SyncConnection,
    *,
    channel_ids: Sequence[str],
    owner: str,
    now: float,
    lease_seconds: float,
    limit: int,
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` messages that may be sent now, at most one per ordering key.

    A message is claimable when it is the oldest active message of its ordering key (so a
    chat's messages go out in order, and a message waiting for a retry holds the chat),
    it is due, and no live lease holds it. Claiming leases it and nothing else: it stays
    ``queued`` with its attempts uncounted until ``start_sends_sync`` says its request is
    about to leave. The rows are returned in sequence order, as they are now.
    """
    if not channel_ids or limit <= 0:
        return []
    stmt = _claim_statement(conn.dialect.name)
    params = {
        "b_channels": list(channel_ids),
        "b_now": now,
        "b_owner": owner,
        "b_lease_until": now + lease_seconds,
        "b_limit": limit,
    }
    rows = [dict(r._mapping) for r in conn.execute(stmt, params)]
    rows.sort(key=lambda r: r["seq"])
    return rows


_START: dict[str, Any] = {}


def _start_statement(dialect: str) -> Any:
    """``start_sends_sync``'s UPDATE, built once per dialect (see ``_claim_statement``)."""
    stmt = _START.get(dialect)
    if stmt is not None:
        return stmt
    if dialect == "postgresql":
        ids = bindparam("b_ids", type_=postgresql.ARRAY(String))
        target = messages.c.id == any_(ids)
    else:
        target = messages.c.id.in_(bindparam("b_ids", expanding=True))
    now = bindparam("b_now", type_=Float)
    stmt = (
        update(messages)
        .where(
            target,
            messages.c.status == "queued",
            messages.c.lease_owner == bindparam("b_owner", type_=String),
        )
        .values(
            status="sending",
            lease_until=bindparam("b_lease_until", type_=Float),
            attempts=messages.c.attempts + 1,
            sending_at=now,
            updated_at=now,
        )
        .returning(messages.c.id, messages.c.attempts)
    )
    _START[dialect] = stmt
    return stmt


def start_sends_sync(
    conn: SyncConnection,
    message_ids: Sequence[str],
    *,
    owner: str,
    now: float,
    lease_seconds: float,
) -> dict[str, int]:
    """Record that the requests for these claimed messages are about to leave: each moves
    to ``sending``, counts an attempt and gets a fresh lease, in one UPDATE for the batch
    (plus its events). Returns ``{message id: attempt number}`` for the messages that are
    still ``owner``'s claims; a message missing from it (another worker took it after
    ``owner``'s lease lapsed) must not be sent.

    Commit this before the first byte goes out: from then on a crash leaves the message
    to ``expire_leases_sync`` (``uncertain``), before it the message is still ``queued``.
    """
    if not message_ids:
        return {}
    params = {
        "b_ids": list(message_ids),
        "b_owner": owner,
        "b_now": now,
        "b_lease_until": now + lease_seconds,
    }
    started = {
        r.id: int(r.attempts) for r in conn.execute(_start_statement(conn.dialect.name), params)
    }
    record_events_sync(
        conn,
        [EventRecord(m, Status.SENDING, "worker", attempt) for m, attempt in started.items()],
        now,
    )
    return started


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What happened to one claimed message; ``kind`` is sent|retry|failed|uncertain."""

    message_id: str
    attempt: int
    kind: str
    provider_message_id: str | None = None
    wa_id: str | None = None
    next_attempt_at: float | None = None
    error_code: str | None = None
    error_title: str | None = None
    error_detail: str | None = None


def _locked(stmt: Select[Any]) -> Select[Any]:
    """Read messages to compute their next status, locking them until we commit.

    The new status is computed in Python from the one read, so on PostgreSQL two
    processes writing the same message at once (a worker recording ``sent``, an inbox
    processor applying ``delivered``) must not both decide from the same old status:
    the later commit would move the message backwards. ``FOR UPDATE`` makes the second
    one wait and read the first one's result; taking the locks in id order keeps two
    such batches from deadlocking. SQLite has one writer at a time and ignores it.
    """
    return stmt.order_by(messages.c.id).with_for_update(of=messages)


# A success: the lease is released, the provider id and the first send time are only
# filled in (never overwritten), the status is the one computed from the locked row.
_RECORD_SENT = (
    update(messages)
    .where(messages.c.id == bindparam("b_id"))
    .values(
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_now"),
        provider_message_id=func.coalesce(messages.c.provider_message_id, bindparam("b_pid")),
        wa_id=bindparam("b_wa_id"),
        status=bindparam("b_status"),
        sent_at=func.coalesce(messages.c.sent_at, bindparam("b_now")),
    )
)


def record_outcomes_sync(
    conn: SyncConnection, outcomes: Sequence[SendOutcome], *, owner: str, now: float
) -> list[StatusChange]:
    """Write the results of send attempts made by ``owner``.

    Only rows still leased by ``owner`` (``queued`` while claimed, ``sending`` once
    started) are touched for retry, defer, failure and uncertain: if our lease lapsed and
    the message moved on meanwhile, the reconciler or another worker owns the truth.
    A success is always recorded (the provider id is a fact), but never moves the status
    backwards if a webhook got there first.
    """
    ids = [o.message_id for o in outcomes]
    before = {
        r.id: r
        for r in conn.execute(
            _locked(
                select(
                    messages.c.id,
                    messages.c.status,
                    messages.c.chat_id,
                    messages.c.channel_id,
                    messages.c.sender_user_id,
                ).where(one_of(conn, messages.c.id, ids))
            )
        )
    }
    changes: list[StatusChange] = []
    events: list[EventRecord] = []
    sent_pids: list[str] = []
    sent: list[dict[str, Any]] = []
    released = {"lease_owner": None, "lease_until": None, "updated_at": now}
    for o in outcomes:
        row = before.get(o.message_id)
        if row is None:
            continue
        error = {
            "error_code": o.error_code,
            "error_title": o.error_title,
            "error_detail": o.error_detail,
        }
        if o.kind == "sent":
            new_status = advance(Status(row.status), Status.SENT).value
            sent.append(
                {
                    "b_id": o.message_id,
                    "b_status": new_status,
                    "b_pid": o.provider_message_id,
                    "b_wa_id": o.wa_id,
                    "b_now": now,
                }
            )
            if o.provider_message_id is not None:
                sent_pids.append(o.provider_message_id)
            events.append(EventRecord(o.message_id, Status.SENT, "worker", o.attempt))
        else:
            values: dict[str, Any]
            if o.kind == "retry":
                new_status, source = "queued", "retry"
                values = {
                    **released,
                    **error,
                    "status": new_status,
                    "next_attempt_at": o.next_attempt_at,
                }
            elif o.kind == "defer":
                # Paced before its request started: no attempt was counted.
                new_status, source = "queued", "pacing"
                values = {**released, "status": new_status, "next_attempt_at": o.next_attempt_at}
            elif o.kind == "failed":
                new_status, source = "failed", "worker"
                values = {**released, **error, "status": new_status, "failed_at": now}
            elif o.kind == "uncertain":
                new_status, source = "uncertain", "worker"
                values = {**released, **error, "status": new_status, "uncertain_at": now}
            else:
                raise ValueError(f"unknown outcome kind {o.kind!r}")
            mine = and_(
                messages.c.id == o.message_id,
                messages.c.status.in_(("queued", "sending")),
                messages.c.lease_owner == owner,
            )
            result = conn.execute(update(messages).where(mine).values(values))
            if not result.rowcount:
                continue
            if o.kind != "defer":
                events.append(
                    EventRecord(
                        o.message_id,
                        Status(new_status),
                        source,
                        o.attempt,
                        0,
                        o.error_code,
                        o.error_title,
                    )
                )
        if new_status != row.status:
            changes.append(
                StatusChange(
                    o.message_id,
                    row.chat_id,
                    row.channel_id,
                    row.sender_user_id,
                    new_status,
                    row.status,
                )
            )
    if sent:
        # Successes are most of a batch: one statement for all of them (executemany).
        conn.execute(_RECORD_SENT, sent)
    record_events_sync(conn, events, now)
    if sent_pids:
        # The provider ids just recorded may have statuses waiting under them (a webhook
        # faster than our send result that carried no id of ours).
        changes.extend(apply_parked_for_sync(conn, sent_pids, now))
    return changes


@dataclass(frozen=True, slots=True)
class ObservedStatus:
    """A provider status report, already parsed (see ``providers.base.StatusUpdate``)."""

    provider_message_id: str
    status: Status
    timestamp: int
    tracking_id: str | None = None
    error_code: str | None = None
    error_title: str | None = None


_STATUS_TIME_COLUMN = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "read": "read_at",
    "failed": "failed_at",
}


_changed = bindparam("b_changed") == 1
# The update apply_statuses runs for every touched message. A status change releases the
# lease (a webhook settled a message that was in flight); timestamps and the provider id
# are only ever filled in, never overwritten; a failure's error replaces the stored one.
_APPLY_STATUS = (
    update(messages)
    .where(messages.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        updated_at=case((_changed, bindparam("b_now")), else_=messages.c.updated_at),
        lease_owner=case((_changed, null()), else_=messages.c.lease_owner),
        lease_until=case((_changed, null()), else_=messages.c.lease_until),
        provider_message_id=func.coalesce(messages.c.provider_message_id, bindparam("b_pid")),
        error_code=func.coalesce(bindparam("b_error_code"), messages.c.error_code),
        error_title=func.coalesce(bindparam("b_error_title"), messages.c.error_title),
        sent_at=func.coalesce(messages.c.sent_at, bindparam("b_sent_at")),
        delivered_at=func.coalesce(messages.c.delivered_at, bindparam("b_delivered_at")),
        read_at=func.coalesce(messages.c.read_at, bindparam("b_read_at")),
        failed_at=func.coalesce(messages.c.failed_at, bindparam("b_failed_at")),
    )
)


def apply_statuses_sync(
    conn: SyncConnection, observed: Sequence[ObservedStatus], now: float
) -> list[StatusChange]:
    """Apply provider statuses forward-only; park those for provider ids we do not know.

    Matching prefers our own id echoed by the provider (``tracking_id``), which works
    even before our send result was recorded; otherwise the provider message id.
    """
    if not observed:
        return []
    tracking = {o.tracking_id for o in observed if o.tracking_id}
    provider_ids = {o.provider_message_id for o in observed}
    cols = (
        messages.c.id,
        messages.c.status,
        messages.c.provider_message_id,
        messages.c.chat_id,
        messages.c.channel_id,
        messages.c.sender_user_id,
        messages.c.lease_owner,
        *(messages.c[column] for column in _STATUS_TIME_COLUMN.values()),
    )
    # Only our outbound messages have a delivery status; an inbound one never matches.
    rows = list(
        conn.execute(
            _locked(
                select(*cols).where(
                    or_(
                        one_of(conn, messages.c.id, tracking),
                        one_of(conn, messages.c.provider_message_id, provider_ids),
                    ),
                    messages.c.direction == "out",
                )
            )
        )
    )
    by_id = {r.id: r for r in rows}
    by_provider = {r.provider_message_id: r for r in rows if r.provider_message_id}
    state: dict[str, str] = {r.id: r.status for r in rows}
    learned_provider_id: dict[str, str] = {}
    times: dict[str, dict[str, float]] = {}
    errors: dict[str, tuple[str | None, str | None]] = {}
    events: list[EventRecord] = []
    parked: list[dict[str, Any]] = []
    for o in observed:
        row = by_id.get(o.tracking_id or "") or by_provider.get(o.provider_message_id)
        if row is None:
            parked.append(
                {
                    "provider_message_id": o.provider_message_id,
                    "status": o.status.value,
                    "provider_timestamp": o.timestamp,
                    "error_code": o.error_code,
                    "detail": o.error_title,
                    "parked_at": now,
                }
            )
            continue
        if row.provider_message_id is None:
            learned_provider_id[row.id] = o.provider_message_id
        events.append(
            EventRecord(row.id, o.status, "webhook", 0, o.timestamp, o.error_code, o.error_title)
        )
        new = advance(Status(state[row.id]), o.status).value
        column = _STATUS_TIME_COLUMN.get(o.status.value)
        if column is not None:
            times.setdefault(row.id, {}).setdefault(column, float(o.timestamp))
        if o.status == Status.FAILED and new == "failed":
            errors[row.id] = (o.error_code, o.error_title)
        state[row.id] = new
    changes: list[StatusChange] = []
    updates: list[dict[str, Any]] = []
    for message_id, new_status in state.items():
        row = by_id[message_id]
        changed = new_status != row.status
        if changed:
            changes.append(
                StatusChange(
                    message_id,
                    row.chat_id,
                    row.channel_id,
                    row.sender_user_id,
                    new_status,
                    row.status,
                )
            )
        # A time already stored is kept (the update would only COALESCE it back), so a
        # status that changes nothing, like the ``sent`` webhook after our own send
        # result, costs no UPDATE: each one is a new row version and index entries.
        stamps = {
            column: at
            for column, at in times.get(message_id, {}).items()
            if getattr(row, column) is None
        }
        if not (changed or message_id in learned_provider_id or message_id in errors or stamps):
            continue
        error_code, error_title = errors.get(message_id, (None, None))
        updates.append(
            {
                "b_id": message_id,
                "b_status": new_status,
                "b_changed": 1 if changed else 0,
                "b_now": now,
                "b_pid": learned_provider_id.get(message_id),
                "b_error_code": error_code,
                "b_error_title": error_title,
                **{f"b_{column}": stamps.get(column) for column in _STATUS_TIME_COLUMN.values()},
            }
        )
    if updates:
        # One statement for the whole batch (executemany): far cheaper than one each.
        conn.execute(_APPLY_STATUS, updates)
    record_events_sync(conn, events, now)
    if parked:
        conn.execute(parked_statuses.insert(), parked)
    if learned_provider_id:
        # The provider id we just learned may have statuses waiting under it.
        changes.extend(apply_parked_for_sync(conn, learned_provider_id.values(), now))
    return changes


def apply_parked_sync(
    conn: SyncConnection, message_ids: Iterable[str], now: float
) -> list[StatusChange]:
    """Apply statuses parked for the provider ids these messages just received."""
    rows = list(
        conn.execute(
            select(messages.c.id, messages.c.provider_message_id).where(
                one_of(conn, messages.c.id, message_ids),
                messages.c.provider_message_id.is_not(None),
            )
        )
    )
    return apply_parked_for_sync(conn, [r.provider_message_id for r in rows], now)


def apply_parked_for_sync(
    conn: SyncConnection, provider_ids: Iterable[str], now: float
) -> list[StatusChange]:
    """Apply statuses parked under these provider ids (ones our messages now carry)."""
    provider_ids = list(provider_ids)
    if not provider_ids:
        return []
    parked = list(
        conn.execute(
            select(parked_statuses)
            .where(one_of(conn, parked_statuses.c.provider_message_id, provider_ids))
            .order_by(parked_statuses.c.id)
        )
    )
    if not parked:
        return []
    conn.execute(
        parked_statuses.delete().where(one_of(conn, parked_statuses.c.id, [p.id for p in parked]))
    )
    return apply_statuses_sync(
        conn,
        [
            ObservedStatus(
                p.provider_message_id,
                Status(p.status),
                p.provider_timestamp,
                None,
                p.error_code,
                p.detail,
            )
            for p in parked
        ],
        now,
    )


def expire_leases_sync(conn: SyncConnection, now: float) -> list[StatusChange]:
    """Messages whose sender vanished mid-send become ``uncertain``: maybe sent, maybe not.

    Only ``sending`` ones: their request had started (``start_sends_sync``). A claim that
    lapses before its request started is still ``queued`` and needs nothing here.
    """
    rows = list(
        conn.execute(
            update(messages)
            .where(messages.c.status == "sending", messages.c.lease_until < now)
            .values(
                status="uncertain",
                uncertain_at=now,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            .returning(
                messages.c.id,
                messages.c.chat_id,
                messages.c.channel_id,
                messages.c.sender_user_id,
                messages.c.attempts,
            )
        )
    )
    record_events_sync(
        conn,
        [
            EventRecord(r.id, Status.UNCERTAIN, "lease", r.attempts, 0, "lease_expired")
            for r in rows
        ],
        now,
    )
    return [
        StatusChange(r.id, r.chat_id, r.channel_id, r.sender_user_id, "uncertain", "sending")
        for r in rows
    ]


def settle_uncertain_sync(
    conn: SyncConnection,
    *,
    now: float,
    grace_seconds: float,
    policy: str,
    max_attempts: int,
    echoes: Callable[[str, str], bool],
) -> list[StatusChange]:
    """Uncertain messages no status settled within the grace period: resend or fail.

    On channels for which ``echoes(kind, base_url)`` is true the provider's statuses
    name our message (Cloud API's ``biz_opaque_callback_data``, the sandbox, a web
    session sending under ids derived from ours), so silence
    for the whole grace period means the request never became a message: it is resent,
    whatever ``policy`` says. Elsewhere (WHAPI echoes nothing) silence proves nothing,
    and ``policy`` decides: ``resend`` (risking a duplicate) or ``fail`` (risking a
    loss), the failure's ``error_detail`` saying why. A message out of attempts fails.
    """
    rows = list(
        conn.execute(
            select(
                messages.c.id,
                messages.c.chat_id,
                messages.c.channel_id,
                messages.c.sender_user_id,
                messages.c.attempts,
                channels.c.kind,
                channels.c.base_url,
            )
            .join(channels, channels.c.id == messages.c.channel_id)
            .where(messages.c.status == "uncertain", messages.c.uncertain_at < now - grace_seconds)
        )
    )
    changes: list[StatusChange] = []
    events: list[EventRecord] = []
    silence = f"no status from the provider within {grace_seconds:g} s of an interrupted send"
    for r in rows:
        echoed = echoes(r.kind, r.base_url)
        title: str | None
        detail: str | None
        if r.attempts >= max_attempts:
            title = f"{silence}, after {r.attempts} attempts"
            detail = None
        elif echoed or policy == "resend":
            title = detail = None
        else:
            title = f"{silence}; not resent to avoid a duplicate (policy: fail)"
            detail = (
                f"{r.kind} statuses do not carry our message id, so silence does not prove "
                "that the message was not sent; WAHUB_UNCERTAIN_POLICY=fail fails it rather "
                "than risk sending it twice (resend would risk the duplicate instead)"
            )
        values: dict[str, Any]
        if title is None:
            values = {"status": "queued", "next_attempt_at": now}
            new = Status.QUEUED
        else:
            values = {
                "status": "failed",
                "failed_at": now,
                "error_code": "uncertain_timeout",
                "error_title": title,
                "error_detail": detail,
            }
            new = Status.FAILED
        values["updated_at"] = now
        conn.execute(
            update(messages)
            .where(messages.c.id == r.id, messages.c.status == "uncertain")
            .values(values)
        )
        events.append(EventRecord(r.id, new, "reconcile", r.attempts, 0, values.get("error_code")))
        changes.append(
            StatusChange(r.id, r.chat_id, r.channel_id, r.sender_user_id, new.value, "uncertain")
        )
    record_events_sync(conn, events, now)
    return changes


def fail_queued_of_channel_sync(
    conn: SyncConnection, channel_id: str, *, now: float, code: str, title: str
) -> list[StatusChange]:
    """Fail every ``queued`` outbound message of the channel with ``code``: they were
    never handed to the provider, so "failed, not sent" is exact for each."""
    rows = list(
        conn.execute(
            update(messages)
            .where(messages.c.channel_id == channel_id, messages.c.status == "queued")
            .values(
                status="failed",
                failed_at=now,
                error_code=code,
                error_title=title,
                updated_at=now,
            )
            .returning(
                messages.c.id,
                messages.c.chat_id,
                messages.c.sender_user_id,
                messages.c.attempts,
            )
        )
    )
    record_events_sync(
        conn, [EventRecord(r.id, Status.FAILED, "operator", r.attempts, 0, code) for r in rows], now
    )
    return [
        StatusChange(r.id, r.chat_id, channel_id, r.sender_user_id, "failed", "queued")
        for r in rows
    ]


def requeue_failed_sync(conn: SyncConnection, message_id: str, now: float) -> bool:
    """Operator retry of a failed message: back to ``queued`` with a fresh attempt budget."""
    result = conn.execute(
        update(messages)
        .where(
            messages.c.id == message_id,
            messages.c.status == "failed",
            messages.c.delivered_at.is_(None),
        )
        .values(
            status="queued",
            attempts=0,
            next_attempt_at=now,
            error_code=None,
            error_title=None,
            error_detail=None,
            failed_at=None,
            updated_at=now,
        )
    )
    if result.rowcount:
        record_events_sync(conn, [EventRecord(message_id, Status.QUEUED, "operator")], now)
    return bool(result.rowcount)


def count_by_status_sync(conn: SyncConnection) -> dict[str, int]:
    stmt = select(messages.c.status, func.count().label("n")).group_by(messages.c.status)
    return {str(row.status): int(row.n) for row in conn.execute(stmt)}


def statuses_by_id_sync(conn: SyncConnection) -> dict[str, str]:
    """Every outbound message's status (demo and benchmark reconciliation against the
    sandbox, which never saw the inbound ones)."""
    stmt = select(messages.c.id, messages.c.status).where(messages.c.direction == "out")
    return {r.id: r.status for r in conn.execute(stmt)}


def count_failures_by_code_sync(conn: SyncConnection) -> dict[str, tuple[int, str | None]]:
    """Failed outbound messages by error code (the provider's, or ours such as
    ``uncertain_timeout``; ``unknown`` for a failure that recorded none): how many, and
    one of their readable titles."""
    stmt = (
        select(
            messages.c.error_code,
            func.count().label("n"),
            func.max(messages.c.error_title).label("title"),
        )
        .where(messages.c.status == "failed", messages.c.direction == "out")
        .group_by(messages.c.error_code)
    )
    return {str(row.error_code or "unknown"): (int(row.n), row.title) for row in conn.execute(stmt)}


# The async faces the rest of wahub calls: each runs its whole body in one hop.
record_events = in_one_hop(record_events_sync)
insert_message = in_one_hop(insert_message_sync)
get_message = in_one_hop(get_message_sync)
get_by_idempotency_key = in_one_hop(get_by_idempotency_key_sync)
list_events = in_one_hop(list_events_sync)
list_messages = in_one_hop(list_messages_sync)
claim_due_messages = in_one_hop(claim_due_messages_sync)
record_outcomes = in_one_hop(record_outcomes_sync)
apply_statuses = in_one_hop(apply_statuses_sync)
apply_parked = in_one_hop(apply_parked_sync)
expire_leases = in_one_hop(expire_leases_sync)
settle_uncertain = in_one_hop(settle_uncertain_sync)
start_sends = in_one_hop(start_sends_sync)
requeue_failed = in_one_hop(requeue_failed_sync)
fail_queued_of_channel = in_one_hop(fail_queued_of_channel_sync)
count_by_status = in_one_hop(count_by_status_sync)
statuses_by_id = in_one_hop(statuses_by_id_sync)
count_failures_by_code = in_one_hop(count_failures_by_code_sync)
