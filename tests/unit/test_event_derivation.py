"""Which events a logged change means (``derive_events``) and who gets them."""

from __future__ import annotations

from typing import Any

from wahub.domain.subscription_events import Event, delivery_rows, matches
from wahub.pipeline.event_fanout import Context, derive_events
from wahub.store.changelog import Change

OUT = {"m1": {"id": "m1", "channel_id": "ch_a", "chat_id": "c1", "direction": "out"}}


def change(table: str, op: str, data: dict[str, Any], chat: str | None = "c1") -> Change:
    return Change(
        seq=7, table=table, key="k", op=op, chat_id=chat, data=data, txid=None, created_at=10.0
    )


def kinds(c: Change, context: Context | None = None) -> list[str]:
    return [e.type for e in derive_events(c, context or Context(OUT, {}))]


def test_an_inbound_message_insert_is_message_received_and_an_outbound_one_nothing() -> None:
    assert kinds(change("messages", "insert", {"direction": "in", "channel_id": "a"})) == [
        "message.received"
    ]
    assert kinds(change("messages", "insert", {"direction": "out"})) == []
    assert kinds(change("messages", "update", {"direction": "in"})) == []


def test_a_status_of_an_outbound_message_is_message_status_and_failed_also_message_failed() -> None:
    assert kinds(change("message_events", "insert", {"message_id": "m1", "status": "sent"})) == [
        "message.status"
    ]
    assert kinds(change("message_events", "insert", {"message_id": "m1", "status": "failed"})) == [
        "message.status",
        "message.failed",
    ]
    assert kinds(change("message_events", "insert", {"message_id": "gone", "status": "sent"})) == []


def test_conversations_leads_and_group_syncs() -> None:
    assert kinds(change("conversations", "update", {"channel_id": "a"})) == ["conversation.updated"]
    assert kinds(change("leads", "update", {"id": "l1"}, chat=None)) == ["lead.updated"]
    group = {"kind": "group", "last_synced_at": 5.0}
    assert kinds(change("chats", "update", group)) == ["group.synced"]
    assert kinds(change("chats", "update", {**group, "kind": "person"})) == []
    assert kinds(change("leads", "delete", {"id": "l1"}, chat=None)) == []


def test_campaign_counters_are_progress_and_once_finished_completed_with_one_id() -> None:
    stats = {"campaign_id": "cp1", "template_name": "t", "sent": 3}
    running = Context(OUT, {"cp1": "running"})
    finished = Context(OUT, {"cp1": "completed"})

    assert kinds(change("campaign_stats", "update", stats, chat=None), running) == [
        "campaign.progress"
    ]
    first = derive_events(change("campaign_stats", "update", stats, chat=None), finished)
    later = derive_events(
        Change(9, "campaign_stats", "k", "update", None, stats, None, 11.0), finished
    )
    assert [e.type for e in first] == ["campaign.progress", "campaign.completed"]
    assert first[1].webhook_id == later[1].webhook_id, "stored once per subscription"


def test_the_channel_filter_types_and_creation_time_decide_who_gets_an_event() -> None:
    event = Event("evt_1", "message.received", "c1", "ch_a", {}, occurred_at=100.0)
    sub = {"id": "s", "event_types": ["message.received"], "channel_ids": None, "created_at": 50}

    assert matches(sub, event)
    assert matches({**sub, "channel_ids": ["ch_a"]}, event)
    assert not matches({**sub, "channel_ids": ["ch_b"]}, event)
    assert not matches({**sub, "event_types": ["lead.updated"]}, event)
    assert not matches({**sub, "created_at": 150}, event), "not before it existed"
    assert [r["subscription_id"] for r in delivery_rows([sub], [event], 100.0)] == ["s"]
