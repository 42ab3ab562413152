"""The event types a subscription may ask for (docs/events.md describes each)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
MESSAGE_FAILED = "message.failed"
CONVERSATION_UPDATED = "conversation.updated"
LEAD_UPDATED = "lead.updated"
CAMPAIGN_PROGRESS = "campaign.progress"
CAMPAIGN_COMPLETED = "campaign.completed"
CHANNEL_STATUS = "channel.status"
GROUP_SYNCED = "group.synced"
# Sent to the other subscriptions asking for it when one is paused automatically.
SUBSCRIPTION_PAUSED = "subscription.paused"
# Only ever sent by ``POST /v1/subscriptions/{id}/ping``.
PING = "ping"

EVENT_TYPES: tuple[str, ...] = (
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    MESSAGE_FAILED,
    CONVERSATION_UPDATED,
    LEAD_UPDATED,
    CAMPAIGN_PROGRESS,
    CAMPAIGN_COMPLETED,
    CHANNEL_STATUS,
    GROUP_SYNCED,
    SUBSCRIPTION_PAUSED,
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``webhook_id`` is the same for every subscriber and every attempt."""

    webhook_id: str
    type: str
    ordering_key: str
    channel_id: str | None
    data: dict[str, Any]
    occurred_at: float

    def payload(self) -> dict[str, Any]:
        """The JSON body (Standard Webhooks' recommended ``type``/``timestamp``/``data``)."""
        return {"type": self.type, "timestamp": iso(self.occurred_at), "data": self.data}


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def matches(subscription: dict[str, Any], event: Event) -> bool:
    """The subscription wants this type, and (for an event of a channel) this channel,
    and existed when the event happened."""
    if event.type not in subscription["event_types"]:
        return False
    if event.occurred_at < subscription["created_at"]:
        return False  # a change from before the subscription, read late
    channels = subscription["channel_ids"]
    return channels is None or event.channel_id is None or event.channel_id in channels


def delivery_rows(
    subscriptions: Iterable[dict[str, Any]], events: Iterable[Event], now: float
) -> list[dict[str, Any]]:
    """An ``event_deliveries`` row per event per subscription that wants it."""
    subs = list(subscriptions)
    rows: list[dict[str, Any]] = []
    for ev in events:
        body = ev.payload()
        for sub in subs:
            if matches(sub, ev):
                rows.append(
                    {
                        "subscription_id": sub["id"],
                        "webhook_id": ev.webhook_id,
                        "event_type": ev.type,
                        "ordering_key": ev.ordering_key,
                        "channel_id": ev.channel_id,
                        "payload": body,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    return rows
