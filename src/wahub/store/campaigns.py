"""Named queries for campaigns, their recipients and their funnels.

The counters in ``campaign_stats`` are written only by the triggers of migration 0006;
nothing here adds to them. ``recount_*`` computes the same numbers from the rows they
count, for ``wahub stats verify`` and the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import and_, bindparam, func, or_, select, text, update

from wahub.domain.campaigns import COUNTERS
from wahub.store.database import in_one_hop
from wahub.store.schema import campaign_recipients, campaign_stats, campaigns

# Bulk inserts go in slices: SQLite caps bound parameters per statement.
INSERT_SLICE = 2000


def insert_campaign_sync(
    conn: SyncConnection,
    campaign: dict[str, Any],
    template_names: Sequence[str],
    recipients: Sequence[dict[str, Any]],
) -> None:
    """Store a campaign, a zeroed counter row per template, then its recipients (whose
    triggers count ``total`` and skips), in the caller's transaction."""
    conn.execute(campaigns.insert(), campaign)
    conn.execute(
        campaign_stats.insert(),
        [{"campaign_id": campaign["id"], "template_name": name} for name in template_names],
    )
    for start in range(0, len(recipients), INSERT_SLICE):
        conn.execute(campaign_recipients.insert(), list(recipients[start : start + INSERT_SLICE]))


def get_campaign_sync(
    conn: SyncConnection, campaign_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    """One campaign; ``lock`` holds its row until commit (PostgreSQL), which is what
    makes two dispatchers of one campaign take turns."""
    stmt = select(campaigns).where(campaigns.c.id == campaign_id)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return None if row is None else dict(row._mapping)


def list_campaigns_sync(
    conn: SyncConnection, *, status: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = select(campaigns).order_by(campaigns.c.created_at.desc(), campaigns.c.id).limit(limit)
    if status is not None:
        stmt = stmt.where(campaigns.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def set_status_sync(
    conn: SyncConnection,
    campaign_id: str,
    *,
    allowed: Sequence[str],
    status: str,
    now: float,
    error: str | None = None,
) -> bool:
    """Move the campaign to ``status`` if it is in one of ``allowed``; False otherwise
    (another request or process moved it first)."""
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "running":
        values["started_at"] = func.coalesce(campaigns.c.started_at, now)
    if status in ("completed", "cancelled", "failed"):
        values["finished_at"] = now
    if error is not None:
        values["error"] = error
    result = conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, campaigns.c.status.in_(list(allowed)))
        .values(values)
    )
    return bool(result.rowcount)


def due_campaign_ids_sync(conn: SyncConnection, now: float) -> list[str]:
    """Campaigns with recipients to queue now: running ones, and scheduled ones whose
    start time has come."""
    stmt = (
        select(campaigns.c.id)
        .where(
            or_(
                campaigns.c.status == "running",
                and_(campaigns.c.status == "scheduled", campaigns.c.start_at <= now),
            )
        )
        .order_by(campaigns.c.created_at)
    )
    return [str(r.id) for r in conn.execute(stmt)]


def pending_recipients_sync(
    conn: SyncConnection, campaign_id: str, limit: int
) -> list[dict[str, Any]]:
    """The next ``limit`` recipients not queued yet, in upload order, locked until commit."""
    stmt = (
        select(campaign_recipients)
        .where(
            campaign_recipients.c.campaign_id == campaign_id,
            campaign_recipients.c.status == "pending",
        )
        .order_by(campaign_recipients.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in conn.execute(stmt)]


_MARK = (
    update(campaign_recipients)
    .where(
        campaign_recipients.c.id == bindparam("r_id"),
        campaign_recipients.c.status == "pending",
    )
    .values(
        status=bindparam("r_status"),
        skip_reason=bindparam("r_skip_reason"),
        message_id=bindparam("r_message_id"),
        queued_at=bindparam("r_queued_at"),
    )
)


def mark_recipients_sync(conn: SyncConnection, marks: Sequence[dict[str, Any]]) -> None:
    """Settle pending recipients (keys r_id, r_status, r_skip_reason, r_message_id,
    r_queued_at); only rows still pending change."""
    if marks:
        conn.execute(_MARK, list(marks))


def stats_sync(conn: SyncConnection, campaign_id: str) -> list[dict[str, Any]]:
    """The counter rows of one campaign, one per template: a primary-key range read."""
    stmt = (
        select(campaign_stats)
        .where(campaign_stats.c.campaign_id == campaign_id)
        .order_by(campaign_stats.c.template_name)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def stats_for_sync(conn: SyncConnection, campaign_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The counter rows of several campaigns (realtime pushes)."""
    if not campaign_ids:
        return []
    stmt = select(campaign_stats).where(campaign_stats.c.campaign_id.in_(list(campaign_ids)))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def all_stats_sync(conn: SyncConnection, campaign_id: str | None) -> list[dict[str, Any]]:
    stmt = select(campaign_stats)
    if campaign_id is not None:
        stmt = stmt.where(campaign_stats.c.campaign_id == campaign_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _flag(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


# The funnel from the messages themselves, in one query: what the counters must equal.
# ``replied`` asks, for each campaign message, whether an inbound message followed in
# its chat and channel within the campaign's window: the same condition the trigger
# evaluates when the inbound message arrives.
_RECOUNT_MESSAGES = f"""
SELECT m.campaign_id, m.template_name,
       COUNT(*) AS queued,
       {_flag("m.status IN ('sent','delivered','read')")} AS sent,
       {_flag("m.status IN ('delivered','read')")} AS delivered,
       {_flag("m.status = 'read'")} AS "read",
       {_flag("m.status = 'failed'")} AS failed,
       {
    _flag(
        "EXISTS (SELECT 1 FROM messages i WHERE i.chat_id = m.chat_id "
        "AND i.channel_id = m.channel_id AND i.direction = 'in' "
        "AND m.created_at <= i.created_at "
        "AND m.created_at >= i.created_at - c.reply_window_seconds)"
    )
} AS replied
FROM messages m JOIN campaigns c ON c.id = m.campaign_id
WHERE m.campaign_id IS NOT NULL {{where}}
GROUP BY m.campaign_id, m.template_name
"""

_RECOUNT_RECIPIENTS = f"""
SELECT r.campaign_id, r.template_name,
       COUNT(*) AS total,
       {_flag("r.status = 'skipped' AND r.skip_reason = 'opted_out'")} AS skipped_opted_out,
       {_flag("r.status = 'skipped' AND COALESCE(r.skip_reason, '') <> 'opted_out'")}
           AS skipped_other
FROM campaign_recipients r
WHERE 1 = 1 {{where}}
GROUP BY r.campaign_id, r.template_name
"""

Key = tuple[str, str]


def recount_messages_sync(
    conn: SyncConnection, campaign_id: str | None
) -> dict[Key, dict[str, int]]:
    """queued, sent, delivered, read, failed, replied per (campaign, template), counted
    from ``messages`` (and inbound messages for replied) in one query."""
    where = "AND m.campaign_id = :cid" if campaign_id is not None else ""
    rows = conn.execute(text(_RECOUNT_MESSAGES.format(where=where)), {"cid": campaign_id})
    return {
        (str(r.campaign_id), str(r.template_name)): {
            name: int(getattr(r, name) or 0)
            for name in ("queued", "sent", "delivered", "read", "failed", "replied")
        }
        for r in rows
    }


def recount_recipients_sync(
    conn: SyncConnection, campaign_id: str | None
) -> dict[Key, dict[str, int]]:
    """total and skips per (campaign, template), counted from ``campaign_recipients``."""
    where = "AND r.campaign_id = :cid" if campaign_id is not None else ""
    rows = conn.execute(text(_RECOUNT_RECIPIENTS.format(where=where)), {"cid": campaign_id})
    return {
        (str(r.campaign_id), str(r.template_name)): {
            name: int(getattr(r, name) or 0)
            for name in ("total", "skipped_opted_out", "skipped_other")
        }
        for r in rows
    }


def verify_sync(conn: SyncConnection, campaign_id: str | None) -> list[dict[str, Any]]:
    """Every counter that differs from its recount: (campaign, template, counter,
    stored, recounted). Empty when the funnels are exact. Reads one snapshot."""
    stored = {
        (str(r["campaign_id"]), str(r["template_name"])): r
        for r in all_stats_sync(conn, campaign_id)
    }
    recounted: dict[Key, dict[str, int]] = {}
    for part in (
        recount_messages_sync(conn, campaign_id),
        recount_recipients_sync(conn, campaign_id),
    ):
        for key, counts in part.items():
            recounted.setdefault(key, {}).update(counts)
    differences = []
    for key in sorted(set(stored) | set(recounted)):
        row, counts = stored.get(key), recounted.get(key, {})
        for name in COUNTERS:
            have = int(row[name]) if row is not None else None
            want = counts.get(name, 0)
            if have != want:
                differences.append(
                    {
                        "campaign_id": key[0],
                        "template_name": key[1],
                        "counter": name,
                        "stored": have,
                        "recounted": want,
                    }
                )
    return differences


def count_campaigns_sync(conn: SyncConnection, campaign_id: str | None) -> int:
    stmt = select(func.count()).select_from(campaigns)
    if campaign_id is not None:
        stmt = stmt.where(campaigns.c.id == campaign_id)
    return int(conn.execute(stmt).scalar_one())


# The async faces: each runs its whole body in one hop.
insert_campaign = in_one_hop(insert_campaign_sync)
get_campaign = in_one_hop(get_campaign_sync)
list_campaigns = in_one_hop(list_campaigns_sync)
set_status = in_one_hop(set_status_sync)
due_campaign_ids = in_one_hop(due_campaign_ids_sync)
stats = in_one_hop(stats_sync)
stats_for = in_one_hop(stats_for_sync)
verify = in_one_hop(verify_sync)
count_campaigns = in_one_hop(count_campaigns_sync)
