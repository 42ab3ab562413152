"""Campaigns: create from a CSV or the contacts, start/pause/resume/cancel, dispatch in
chunks through the outbox, and read funnels that triggers keep exact.

Never twice per recipient: each recipient is a row unique per (campaign, phone). The
dispatcher queues a chunk in one transaction that locks the campaign row (PostgreSQL:
two dispatchers of one campaign take turns; SQLite has one writer anyway), reads
recipients still ``pending``, inserts their messages with the idempotency key
``campaign:<id>:<phone>`` (unique in ``messages``) and marks them ``queued`` with the
message id, guarded by ``status = 'pending'``. A crash before the commit leaves them
pending (resumed by the next pass); after it, they are queued for good. Starting twice
only moves the state once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import select

from wahub.domain.actors import Actor, Role
from wahub.domain.campaigns import (
    AudienceReport,
    AudienceRow,
    CampaignStatus,
    RowError,
    TemplateSpec,
    assign_templates,
    parse_audience_csv,
    parse_templates,
    stats_view,
    transition,
)
from wahub.domain.errors import (
    NotFound,
    OptedOut,
    PermissionDenied,
    ValidationError,
)
from wahub.domain.ids import new_id
from wahub.domain.phones import PERSON_SUFFIX
from wahub.features.conversations import (
    Outbound,
    SendCheck,
    check_may_send_many_sync,
    record_outbound_many_sync,
)
from wahub.features.outbound import check_template, choose_channel, queued_message
from wahub.store import campaigns as q
from wahub.store import channels as channel_q
from wahub.store import messages as message_q
from wahub.store.database import Database
from wahub.store.schema import chats, contacts
from wahub.store.sql import insert_ignore

MAX_PAGE = 200
# Campaign traffic yields to one-to-one messages in the outbox (claims take higher
# priority first): a bulk send must not delay an agent's answer.
CAMPAIGN_PRIORITY = -1
# An A/B split is a handful of templates; the audience is as large as an upload may be.
MAX_TEMPLATES = 20
MAX_AUDIENCE_CHARS = 64 * 1024 * 1024


class CampaignCreate(BaseModel):
    """``POST /v1/campaigns``: a campaign and where its audience comes from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(
        default=None, max_length=64, description="Omit when there is one channel."
    )
    templates: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_TEMPLATES,
        description="[{name, language, weight, parameters: [CSV column, ...]}]; the audience "
        "is split across them by weight.",
    )
    audience: str = Field(
        default="csv",
        pattern="^(csv|contacts)$",
        description="csv: the uploaded file (or ``csv`` here); contacts: every contact, "
        "with ``name`` as a variable.",
    )
    csv: str | None = Field(
        default=None,
        max_length=MAX_AUDIENCE_CHARS,
        description="The audience CSV inline (JSON bodies).",
    )
    start_at: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Unix time to start by itself; omit to wait for start.",
    )
    reply_window_hours: float | None = Field(default=None, gt=0, le=24 * 90, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class Created:
    campaign: dict[str, Any]
    accepted: int
    rejected: list[RowError]


@dataclass(slots=True)
class ChunkResult:
    queued: int = 0
    skipped: int = 0
    state: str | None = None  # the campaign's state after the chunk, when it changed
    message_ids: list[str] = field(default_factory=list)


def _require_admin(actor: Actor) -> None:
    if actor.role != Role.ADMIN:
        raise PermissionDenied("only admins manage campaigns")


class Campaigns:
    def __init__(
        self,
        db: Database,
        *,
        default_region: str | None = None,
        reply_window_hours: float = 72.0,
        chunk_size: int = 500,
        max_backlog: int = 2000,
        on_started: Callable[[], None] | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.default_region = default_region
        self.reply_window_hours = reply_window_hours
        self.chunk_size = chunk_size
        self.max_backlog = max_backlog
        self._on_started = on_started or (lambda: None)
        self._on_enqueued = on_enqueued or (lambda: None)

    # -- create ---------------------------------------------------------------------

    async def create(
        self, actor: Actor, request: CampaignCreate, csv_text: str | None = None
    ) -> Created:
        """Store a campaign (``scheduled``) with its recipients. Rows of the CSV that
        cannot be used are returned in ``rejected`` with their line and reason; raises
        ValidationError when nothing is usable or a template is unknown to the channel."""
        _require_admin(actor)
        specs = parse_templates(request.templates)
        needed = [p for spec in specs for p in spec.parameters]
        if request.audience == "csv":
            text = csv_text if csv_text is not None else request.csv
            if text is None:
                raise ValidationError(
                    "audience: upload a CSV (multipart field 'audience', a text/csv body, "
                    "or 'csv' in the JSON body), or use audience 'contacts'",
                    details={"field": "audience"},
                )
            report: AudienceReport | None = parse_audience_csv(
                text, needed, default_region=self.default_region
            )
        else:
            report = None
        now = time.time()
        window = (request.reply_window_hours or self.reply_window_hours) * 3600.0
        campaign_id = new_id("cmp")

        def store(conn: SyncConnection) -> Created:
            channel = choose_channel(
                conn,
                asked=request.channel_id,
                listed=functools.partial(channel_q.list_channels_sync, conn),
            )
            self._check_templates(conn, channel["id"], specs)
            audience = report if report is not None else _contacts_audience(conn, needed)
            audience.refuse_if_empty()
            campaign = {
                "id": campaign_id,
                "name": request.name,
                "channel_id": channel["id"],
                "status": CampaignStatus.SCHEDULED.value,
                "templates": [s.as_json() for s in specs],
                "audience_source": request.audience,
                "reply_window_seconds": window,
                "start_at": request.start_at,
                "created_by": actor.user_id,
                "created_at": now,
                "updated_at": now,
            }
            q.insert_campaign_sync(
                conn,
                campaign,
                [s.name for s in specs],
                _recipient_rows(campaign_id, specs, audience.rows),
            )
            stored = q.get_campaign_sync(conn, campaign_id)
            assert stored is not None
            return Created(stored, len(audience.rows), audience.errors)

        created = await self.db.write(store)
        if request.start_at is not None:
            self._on_started()
        return created

    def _check_templates(
        self, conn: SyncConnection, channel_id: str, specs: list[TemplateSpec]
    ) -> None:
        """Every template must be one the channel knows, with as many body parameters as
        columns are mapped to it: refused before anything is queued."""
        for index, spec in enumerate(specs):
            check_template(
                conn,
                channel_id,
                name=spec.name,
                language=spec.language,
                body_parameters=len(spec.parameters),
                name_field=f"templates[{index}]",
                parameters_field=f"templates[{index}].parameters",
            )

    # -- read -------------------------------------------------------------------------

    async def get(self, campaign_id: str) -> dict[str, Any]:
        """The campaign with its funnel. Raises NotFound."""
        async with self.db.read() as conn:
            campaign = await q.get_campaign(conn, campaign_id)
            rows = await q.stats(conn, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return {**campaign, "stats": stats_view(campaign_id, rows)}

    async def list_campaigns(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.list_campaigns(conn, status=status, limit=min(limit, MAX_PAGE))

    async def stats(self, campaign_id: str) -> dict[str, Any]:
        """The funnel per template plus totals and rates: one primary-key range read of
        the counter rows, whatever the campaign's size or age. Raises NotFound."""
        rows, exists = await self.db.read_one(
            functools.partial(_stats_sync, campaign_id=campaign_id)
        )
        if not exists:
            raise NotFound(f"no campaign {campaign_id}")
        return stats_view(campaign_id, rows)

    async def verify(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        """Counters that differ from a recount of the rows they count (empty: exact)."""
        async with self.db.read() as conn:
            if campaign_id is not None and await q.count_campaigns(conn, campaign_id) == 0:
                raise NotFound(f"no campaign {campaign_id}")
            return await q.verify(conn, campaign_id)

    # -- state ------------------------------------------------------------------------

    async def act(self, actor: Actor, campaign_id: str, action: str) -> dict[str, Any]:
        """start | pause | resume | cancel. Repeating an action that already happened is
        a no-op; one the state forbids is ConflictError (409); starting with a template
        the channel no longer knows is ValidationError (422)."""
        _require_admin(actor)
        now = time.time()

        def apply(conn: SyncConnection) -> None:
            campaign = q.get_campaign_sync(conn, campaign_id, lock=True)
            if campaign is None:
                raise NotFound(f"no campaign {campaign_id}")
            target = transition(campaign["status"], action)
            if target is None:
                return
            if target == CampaignStatus.RUNNING:
                specs = parse_templates(campaign["templates"])
                self._check_templates(conn, campaign["channel_id"], specs)
            q.set_status_sync(
                conn, campaign_id, allowed=[campaign["status"]], status=target.value, now=now
            )

        await self.db.write(apply)
        if action in ("start", "resume"):
            self._on_started()
        return await self.get(campaign_id)

    # -- dispatch ---------------------------------------------------------------------

    async def dispatch_due(self, now: float | None = None) -> int:
        """Queue one chunk of every campaign that has recipients to queue now; returns
        how many recipients were settled (queued or skipped)."""
        now = time.time() if now is None else now
        async with self.db.read() as conn:
            ids = await q.due_campaign_ids(conn, now)
        settled = 0
        for campaign_id in ids:
            result = await self.dispatch_chunk(campaign_id, now)
            settled += result.queued + result.skipped
        return settled

    async def dispatch_chunk(self, campaign_id: str, now: float | None = None) -> ChunkResult:
        """Queue the next chunk of one campaign in one transaction (see the module)."""
        at = time.time() if now is None else now
        result = await self.db.write(lambda conn: self._dispatch_chunk_sync(conn, campaign_id, at))
        if result.queued:
            self._on_enqueued()
        return result

    def _dispatch_chunk_sync(
        self, conn: SyncConnection, campaign_id: str, now: float
    ) -> ChunkResult:
        result = ChunkResult()
        campaign = q.get_campaign_sync(conn, campaign_id, lock=True)
        if campaign is None:
            return result
        status = campaign["status"]
        if status == CampaignStatus.SCHEDULED and (campaign["start_at"] or now + 1) <= now:
            q.set_status_sync(
                conn, campaign_id, allowed=[status], status=CampaignStatus.RUNNING, now=now
            )
            status = result.state = CampaignStatus.RUNNING.value
        if status != CampaignStatus.RUNNING:
            return result
        channel = channel_q.get_channel_sync(conn, campaign["channel_id"])
        specs = {s.name: s for s in parse_templates(campaign["templates"])}
        if channel is None:
            return self._fail(conn, campaign_id, now, "its channel was removed", result)
        for spec in specs.values():
            if channel_q.get_template_sync(conn, channel["id"], spec.name, spec.language) is None:
                reason = f"template {spec.name!r} ({spec.language}) is no longer on the channel"
                return self._fail(conn, campaign_id, now, reason, result)
        backlog = sum(
            r["queued"] - r["sent"] - r["failed"] for r in q.stats_sync(conn, campaign_id)
        )
        room = min(self.chunk_size, self.max_backlog - backlog)
        recipients = q.pending_recipients_sync(conn, campaign_id, max(room, 1))
        if not recipients:
            q.set_status_sync(
                conn, campaign_id, allowed=[status], status=CampaignStatus.COMPLETED, now=now
            )
            result.state = CampaignStatus.COMPLETED.value
            return result
        if room <= 0:
            return result  # the outbox still holds a backlog of this campaign: wait
        refusals = check_may_send_many_sync(
            conn, [SendCheck(channel, r["chat_id"], True, now) for r in recipients]
        )
        marks: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for recipient, refusal in zip(recipients, refusals, strict=True):
            mark = {
                "r_id": recipient["id"],
                "r_status": "queued",
                "r_skip_reason": None,
                "r_message_id": None,
                "r_queued_at": None,
            }
            if refusal is not None:
                reason = "opted_out" if isinstance(refusal, OptedOut) else refusal.code
                mark.update(r_status="skipped", r_skip_reason=reason)
                result.skipped += 1
            else:
                message = _message_row(campaign, channel, specs, recipient, now)
                mark.update(r_message_id=message["id"], r_queued_at=now)
                rows.append(message)
            marks.append(mark)
        if rows:
            conn.execute(
                insert_ignore(conn, chats),
                [
                    {
                        "chat_id": chat_id,
                        "kind": "person",
                        "channel_id": channel["id"],
                        "created_at": now,
                    }
                    for chat_id in dict.fromkeys(r["chat_id"] for r in rows)
                ],
            )
            # The idempotency key is unique: were a recipient ever queued twice, this
            # insert would fail and roll the whole chunk back.
            message_q.insert_messages_sync(conn, rows)
            record_outbound_many_sync(
                conn,
                [
                    Outbound(r["channel_id"], r["chat_id"], r["id"], r["template_name"], None, now)
                    for r in rows
                ],
            )
        # The recipients were read locked (and the campaign row is locked), so they are
        # still pending: no other transaction can have queued them meanwhile.
        q.mark_recipients_sync(conn, marks)
        result.queued = len(rows)
        result.message_ids = [r["id"] for r in rows]
        return result

    def _fail(
        self, conn: SyncConnection, campaign_id: str, now: float, reason: str, result: ChunkResult
    ) -> ChunkResult:
        q.set_status_sync(
            conn,
            campaign_id,
            allowed=[CampaignStatus.RUNNING],
            status=CampaignStatus.FAILED,
            now=now,
            error=f"cannot go on: {reason}",
        )
        result.state = CampaignStatus.FAILED.value
        return result


def _recipient_rows(
    campaign_id: str, specs: list[TemplateSpec], rows: list[AudienceRow]
) -> list[dict[str, Any]]:
    chosen = assign_templates(specs, len(rows))
    return [
        {
            "campaign_id": campaign_id,
            "phone": row.phone,
            "chat_id": row.phone[1:] + PERSON_SUFFIX,
            "template_name": specs[index].name,
            "language": specs[index].language,
            "variables": row.variables,
            "line": row.line or None,
            "status": "pending",
        }
        for row, index in zip(rows, chosen, strict=True)
    ]


def _contacts_audience(conn: SyncConnection, needed: list[str]) -> AudienceReport:
    """Every contact, with ``name`` as a template variable; opted-out contacts are kept
    (the dispatcher skips and counts them)."""
    report = AudienceReport()
    for row in conn.execute(select(contacts.c.phone, contacts.c.name).order_by(contacts.c.phone)):
        variables = {"name": row.name or ""}
        empty = [c for c in needed if not variables.get(c)]
        if empty:
            report.errors.append(
                RowError(0, "missing_variables", f"{row.phone}: no {', '.join(empty)}")
            )
            continue
        report.rows.append(AudienceRow(0, str(row.phone), variables))
    return report


def _message_row(
    campaign: dict[str, Any],
    channel: dict[str, Any],
    specs: dict[str, TemplateSpec],
    recipient: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    spec = specs[recipient["template_name"]]
    return queued_message(
        channel_id=channel["id"],
        chat_id=recipient["chat_id"],
        content=spec.content(recipient["variables"]),
        now=now,
        priority=CAMPAIGN_PRIORITY,
        sender_user_id=campaign["created_by"],
        idempotency_key=f"campaign:{campaign['id']}:{recipient['phone']}",
        campaign_id=campaign["id"],
        template_name=spec.name,
    )


def _stats_sync(conn: SyncConnection, campaign_id: str) -> tuple[list[dict[str, Any]], bool]:
    # The funnel read: one hop (Database.read_one); the existence check only when empty.
    rows = q.stats_sync(conn, campaign_id)
    return rows, bool(rows) or q.count_campaigns_sync(conn, campaign_id) > 0
