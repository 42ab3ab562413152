"""Session events as inbox rows (providers/web/events.py), the session state machine
(sessions/process.py ``transition``), the event journal, and the truth of ``working``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from wahub.config import Settings
from wahub.domain.errors import StoreUnavailable, ValidationError
from wahub.domain.status import Status
from wahub.features.web_sessions import effective_daily_cap, effective_state
from wahub.pipeline.parsers import parse_stored_delivery
from wahub.providers.base import GroupParticipant, InboundMessage, StatusUpdate
from wahub.providers.web.events import encode
from wahub.providers.web.session import (
    Connected,
    ConnectFailed,
    GroupChanged,
    IdentityLinked,
    KeepAliveMissed,
    LoggedOut,
    MessageReceived,
    QrCode,
    ReceiptReceived,
    SessionState,
    StreamReplaced,
)
from wahub.providers.web.spec import WHATSAPP_WEB_URL
from wahub.sessions.engines import Engines
from wahub.sessions.process import transition
from wahub.sessions.spool import BURST, EventSpool

LID = "76699677012110@lid"


def inbound(**extra: object) -> InboundMessage:
    values: dict[str, object] = {
        "provider": "web",
        "provider_message_id": "3EB0A1",
        "chat_id": "4917612345678@s.whatsapp.net",
        "timestamp": 1_700_000_000,
        "type": "text",
        "content": {"text": "hi"},
        "sender_phone": "+4917612345678",
        "sender_name": "Ana",
        "text": "hi",
        "channel_ref": "ch_1",
    }
    values.update(extra)
    return InboundMessage(**values)  # type: ignore[arg-type]


def test_a_message_round_trips_through_the_inbox_body_with_its_lid_link() -> None:
    key, body = encode("ch_1", MessageReceived(inbound(), sender_lid=LID))
    parsed = parse_stored_delivery("web", body)
    assert key.startswith("web:msg:")
    assert len(key) <= 64
    (message,) = parsed.messages
    assert message.provider_message_id == "3EB0A1"
    assert message.channel_ref == "ch_1"
    assert message.sender_phone == "+4917612345678"
    assert [(i.lid, i.phone) for i in parsed.identities] == [(LID, "+4917612345678")]


def test_the_same_message_reported_twice_has_one_dedupe_key_per_channel() -> None:
    first, _ = encode("ch_1", MessageReceived(inbound()))
    again, _ = encode("ch_1", MessageReceived(inbound()))
    other_channel, _ = encode("ch_2", MessageReceived(inbound()))
    assert first == again
    assert first != other_channel


def test_one_receipt_naming_several_ids_becomes_one_status_each() -> None:
    statuses = tuple(
        StatusUpdate(provider_message_id=i, status=Status.READ, timestamp=5) for i in ("a", "b")
    )
    _, body = encode("ch_1", ReceiptReceived(statuses))
    parsed = parse_stored_delivery("web", body)
    assert [(s.provider_message_id, s.status) for s in parsed.statuses] == [
        ("a", Status.READ),
        ("b", Status.READ),
    ]


def test_group_changes_and_identities_survive_the_inbox() -> None:
    change = GroupChanged(
        chat_id="120363000000000042@g.us",
        timestamp=7,
        name="Artists",
        joined=(GroupParticipant(phone=None, lid=LID, rank="member"),),
    )
    _, body = encode("ch_1", change)
    (parsed,) = parse_stored_delivery("web", body).group_changes
    assert parsed.channel_ref == "ch_1"
    assert parsed.name == "Artists"
    assert parsed.joined[0].lid == LID
    _, body = encode("ch_1", IdentityLinked(lid=LID, phone="+4917612345678"))
    assert parse_stored_delivery("web", body).identities[0].phone == "+4917612345678"


def test_a_body_that_is_no_session_event_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="not a web session event"):
        parse_stored_delivery("web", b'{"type": "message"}')


def test_states_follow_the_events() -> None:
    assert transition(QrCode("2@abc", 20.0), 100.0)[0] == SessionState.SCAN_QR
    assert transition(QrCode("2@abc", 20.0), 100.0)[2]["qr_expires_at"] == 120.0
    state, _, values = transition(Connected("+4915123450001", push_name="Shop"), 100.0)
    assert state == SessionState.WORKING
    assert values["me_phone"] == "+4915123450001"
    assert transition(KeepAliveMissed(), 1.0)[0] == SessionState.DEGRADED
    assert transition(LoggedOut("unlinked on the phone"), 1.0)[:2] == (
        SessionState.LOGGED_OUT,
        "unlinked on the phone",
    )
    state, reason, _ = transition(StreamReplaced(), 1.0)
    assert state == SessionState.FAILED
    assert reason is not None
    assert "another client" in reason
    assert transition(ConnectFailed("no route to host"), 1.0)[1] == "no route to host"


def test_working_with_no_keepalive_for_longer_than_the_timeout_reads_as_degraded() -> None:
    row = {"session_state": "working", "session_reason": None, "last_keepalive_at": 100.0}
    assert effective_state(row, now=110.0, keepalive_timeout_s=20.0) == ("working", None)
    state, reason = effective_state(row, now=130.0, keepalive_timeout_s=20.0)
    assert state == "degraded"
    assert reason is not None
    assert "wahub sessions" in reason


def test_the_daily_cap_holds_for_a_week_after_linking_unless_the_channel_sets_its_own() -> None:
    week = 7 * 24 * 3600
    assert effective_daily_cap({"linked_at": 0.0}, 200, now=week - 1) == 200
    assert effective_daily_cap({"linked_at": 0.0}, 200, now=week + 1) is None
    assert effective_daily_cap({"linked_at": 0.0, "daily_cap": 50}, 200, now=week + 1) == 50


def journals(directory: Path) -> list[Path]:
    return list(directory.glob("events.*"))


async def test_events_journaled_by_a_process_that_died_are_stored_by_the_next(
    tmp_path: Path,
) -> None:
    dead = EventSpool(tmp_path)
    dead.append("web:msg:1", b"one")
    dead.append("web:msg:2", b"two")
    # The process dies without draining: its journal carries a pid no longer running.
    os.rename(tmp_path / f"events.{os.getpid()}.jsonl", tmp_path / "events.999999999.jsonl")
    stored: list[tuple[str, bytes]] = []

    async def store(entries: Sequence[tuple[str, bytes]]) -> None:
        stored.extend(entries)

    assert await EventSpool(tmp_path).drain(store) == 2
    assert stored == [("web:msg:1", b"one"), ("web:msg:2", b"two")]
    assert not journals(tmp_path)


async def test_a_drain_stores_a_burst_of_events_in_one_call_each_burst(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    for index in range(BURST + 3):
        spool.append(f"web:receipt:{index}", b"r")
    calls: list[list[str]] = []

    async def store(entries: Sequence[tuple[str, bytes]]) -> None:
        calls.append([key for key, _ in entries])

    assert await spool.drain(store) == BURST + 3
    assert [len(keys) for keys in calls] == [BURST, 3]
    assert [key for keys in calls for key in keys] == [
        f"web:receipt:{index}" for index in range(BURST + 3)
    ]
    spool.close()


async def test_a_burst_that_fails_is_stored_again_by_the_next_drain(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append("web:receipt:1", b"r")

    async def refuse(entries: Sequence[tuple[str, bytes]]) -> None:
        raise StoreUnavailable("the database is away")

    with pytest.raises(StoreUnavailable):
        await spool.drain(refuse)
    stored: list[tuple[str, bytes]] = []

    async def store(entries: Sequence[tuple[str, bytes]]) -> None:
        stored.extend(entries)

    assert await spool.drain(store) == 1
    assert stored == [("web:receipt:1", b"r")]
    spool.close()


async def test_a_channel_at_whatsapp_gets_neonize_and_any_other_url_the_sandbox_engine(
    tmp_path: Path,
) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        session_state_dir=str(tmp_path / "sessions"),
    )
    engines = Engines(settings)
    try:
        real = engines.for_channel({"base_url": WHATSAPP_WEB_URL})
        sandbox = engines.for_channel({"base_url": "http://127.0.0.1:9/"})
        assert (real.name, sandbox.name) == ("neonize", "sandbox")
        assert engines.for_channel({"base_url": "http://127.0.0.1:9"}) is sandbox
    finally:
        await engines.close()
