"""The event types a subscription may ask for (docs/events.md describes each)."""

from __future__ import annotations

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
