"""The web session port's contract, run over every engine that can run here.

Each engine comes with a harness that plays the phone and WhatsApp's servers for it
(scan a QR, drop the connection, write to us...). The sandbox engine's harness drives
the sandbox's control routes over HTTP; an engine added to ``ENGINES`` (neonize fed
with its own protobuf events) brings its own harness and meets the same tests.
Waiting for an event has a generous bound only so a broken engine fails instead of
hanging; nothing here asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from wahub.domain.errors import (
    ConflictError,
    PermanentProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.domain.ids import new_id
from wahub.domain.status import Status
from wahub.embedded import free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.providers.web.sandbox_engine import SandboxWebEngine
from wahub.providers.web.session import (
    Connected,
    ConnectFailed,
    Disconnected,
    GroupChanged,
    IdentityLinked,
    KeepAliveMissed,
    KeepAliveRestored,
    LoggedOut,
    MessageReceived,
    QrCode,
    ReceiptReceived,
    SessionEvent,
    StreamReplaced,
    TemporaryBan,
    WebOutbound,
    WebSession,
)

ENGINES = ["sandbox"]
EVENT_BOUND_S = 15.0
PHONE = "+4915123450001"
PEER = "+4917612345678"
PEER_JID = "4917612345678@s.whatsapp.net"

E = TypeVar("E", bound=SessionEvent)


@dataclass
class Recorder:
    """Collects a session's events in order; ``next`` waits for the next one of a type."""

    events: list[SessionEvent] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _read: dict[type[Any], int] = field(default_factory=dict)

    def __call__(self, event: SessionEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    async def next(self, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> E:
        """The first ``kind`` event (matching ``where``) after the last one returned."""
        async with asyncio.timeout(EVENT_BOUND_S):
            while True:
                seen = self._read.get(kind, 0)
                matches = self.of(kind)
                for index in range(seen, len(matches)):
                    if where(matches[index]):
                        self._read[kind] = index + 1
                        return matches[index]
                self._arrived.clear()
                await self._arrived.wait()


class SandboxHarness:
    """Plays the phone and WhatsApp against the sandbox's web engine."""

    def __init__(self, sandbox: Sandbox, url: str, state_dir: Path) -> None:
        self.sandbox = sandbox
        self.url = url
        self.state_dir = state_dir
        self._http = aiohttp.ClientSession()
        self.engines: list[SandboxWebEngine] = []

    def engine(self, url: str | None = None) -> SandboxWebEngine:
        """A fresh engine on the same credentials directory (a restarted process)."""
        engine = SandboxWebEngine(
            url or self.url,
            self.state_dir,
            request_timeout_s=2.0,
            poll_wait_s=1.0,
            keepalive_interval_s=0.05,
            stop_timeout_s=2.0,
        )
        self.engines.append(engine)
        return engine

    async def control(self, channel: str, action: str, body: Any = None) -> dict[str, Any]:
        async with self._http.post(
            f"{self.url}/_sandbox/web/{channel}/{action}", json=body or {}
        ) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            return answer

    async def scan(self, channel: str, qr: QrCode, phone: str | None = PHONE) -> None:
        await self.control(channel, "scan", {"code": qr.code, "phone": phone})

    async def enter_pairing_code(self, channel: str, code: str) -> None:
        await self.control(channel, "pairing-code", {"code": code})

    async def drop(self, channel: str) -> None:
        await self.control(channel, "drop")

    async def unlink(self, channel: str) -> None:
        await self.control(channel, "logout")

    async def replace_stream(self, channel: str) -> None:
        await self.control(channel, "replace")

    async def ban(self, channel: str, expires_in_s: float) -> None:
        await self.control(channel, "ban", {"expires_in_s": expires_in_s})

    async def answer_keepalives(self, channel: str, answer: bool) -> None:
        await self.control(channel, "keepalive", {"answer": answer})

    async def incoming(self, channel: str, **message: Any) -> str:
        return str((await self.control(channel, "inbound", message))["id"])

    async def group_change(self, channel: str, **change: Any) -> None:
        await self.control(channel, "group-change", change)

    async def identity(self, channel: str, lid: str, phone: str) -> None:
        await self.control(channel, "identity", {"lid": lid, "phone": phone})

    async def receipt(self, channel: str, status: str, ids: list[str], chat_id: str) -> None:
        await self.control(channel, "receipt", {"status": status, "ids": ids, "chat_id": chat_id})

    async def configure(self, **config: Any) -> None:
        async with self._http.post(f"{self.url}/_sandbox/config", json=config) as response:
            assert response.status == 200, await response.text()

    def sends(self, channel: str) -> list[dict[str, Any]]:
        return [
            {"id": s.wamid, "to": s.to, "type": s.type, "tracking_id": s.biz_opaque_callback_data}
            for s in self.sandbox.sends
            if s.provider == "web" and s.phone_number_id == channel
        ]

    def down_url(self) -> str:
        """An address where nothing listens."""
        return f"http://127.0.0.1:{free_port()}"

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()
        await self._http.close()


@pytest.fixture(params=ENGINES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SandboxHarness]:
    assert request.param == "sandbox"
    sandbox = Sandbox(SandboxConfig(web_qr_rotate_s=0.1, web_receipt_delay_ms=5))
    url = await sandbox.start(port=free_port())
    harness = SandboxHarness(sandbox, url, tmp_path / "web-state")
    yield harness
    await harness.close()
    await sandbox.stop()


@dataclass
class Live:
    session: WebSession
    events: Recorder


async def open_session(harness: SandboxHarness, channel: str = "ch1") -> Live:
    events = Recorder()
    session = harness.engine().open(channel, on_event=events)
    await session.start()
    return Live(session, events)


async def linked(harness: SandboxHarness, channel: str = "ch1") -> Live:
    live = await open_session(harness, channel)
    qr = await live.events.next(QrCode)
    await harness.scan(channel, qr)
    await live.events.next(Connected)
    return live


# -- pairing ------------------------------------------------------------------------------


async def test_qr_codes_rotate_while_nobody_scans(harness: SandboxHarness) -> None:
    live = await open_session(harness)
    first = await live.events.next(QrCode)
    second = await live.events.next(QrCode)
    assert first.code != second.code
    assert second.expires_in_s > 0
    await live.session.stop()


async def test_scan_connects_with_our_number_and_stores_private_credentials(
    harness: SandboxHarness,
) -> None:
    live = await open_session(harness)
    engine = harness.engines[-1]
    assert not await engine.has_credentials("ch1")
    await harness.scan("ch1", await live.events.next(QrCode))
    connected = await live.events.next(Connected)
    assert connected.me_phone == PHONE
    assert connected.me_lid is not None
    assert connected.me_lid.endswith("@lid")
    assert await engine.has_credentials("ch1")
    mode = stat.S_IMODE(engine.token_path("ch1").stat().st_mode)
    assert mode == 0o600, oct(mode)
    await live.session.stop()


async def test_a_stopped_session_resumes_without_a_qr(harness: SandboxHarness) -> None:
    first = await linked(harness)
    await first.session.stop()
    again = await open_session(harness)
    connected = await again.events.next(Connected)
    assert connected.me_phone == PHONE
    assert again.events.of(QrCode) == []
    await again.session.stop()


async def test_logout_deletes_credentials_and_the_next_start_pairs_again(
    harness: SandboxHarness,
) -> None:
    live = await linked(harness)
    engine = harness.engines[-1]
    await live.session.logout()
    assert not await engine.has_credentials("ch1")
    again = await open_session(harness)
    await again.events.next(QrCode)
    assert again.events.of(Connected) == []
    await again.session.stop()


async def test_phone_unlinking_us_reports_logged_out_and_forgets_credentials(
    harness: SandboxHarness,
) -> None:
    live = await linked(harness)
    await harness.unlink("ch1")
    await live.events.next(LoggedOut)
    assert not await harness.engines[-1].has_credentials("ch1")
    await live.session.stop()


async def test_pairing_code_links_the_number_that_asked(harness: SandboxHarness) -> None:
    live = await open_session(harness)
    await live.events.next(QrCode)
    code = await live.session.pair_phone("+49 176 1234 5678")
    await harness.enter_pairing_code("ch1", code)
    connected = await live.events.next(Connected)
    assert connected.me_phone == PEER
    with pytest.raises(ConflictError):
        await live.session.pair_phone(PEER)
    await live.session.stop()


async def test_pairing_code_for_an_unparsable_phone_is_a_validation_error(
    harness: SandboxHarness,
) -> None:
    live = await open_session(harness)
    await live.events.next(QrCode)
    with pytest.raises(ValidationError):
        await live.session.pair_phone("not a phone")
    await live.session.stop()


# -- sending ------------------------------------------------------------------------------


async def test_sends_to_a_person_and_a_group_arrive_and_get_receipts(
    harness: SandboxHarness,
) -> None:
    live = await linked(harness)
    groups = await live.session.list_groups()
    group = next(g for g in groups if g.we_are_member)
    tracking = [new_id("msg") for _ in range(4)]
    results = [
        await live.session.send(WebOutbound(tracking[i], PEER_JID, "text", text=f"hi {i}"))
        for i in range(3)
    ]
    results.append(
        await live.session.send(WebOutbound(tracking[3], group.chat_id, "text", text="all"))
    )
    ids = {result.provider_message_id for result in results}
    sent = harness.sends("ch1")
    assert [s["tracking_id"] for s in sent] == tracking
    assert {s["id"] for s in sent} == ids
    read: set[str] = set()
    while read != ids:
        receipt = await live.events.next(ReceiptReceived)
        read |= {s.provider_message_id for s in receipt.statuses if s.status is Status.READ}
    delivered = {
        s.provider_message_id
        for r in live.events.of(ReceiptReceived)
        for s in r.statuses
        if s.status is Status.DELIVERED
    }
    assert delivered == ids
    echoed = {
        s.provider_message_id: s.tracking_id
        for r in live.events.of(ReceiptReceived)
        for s in r.statuses
    }
    assert echoed == {r.provider_message_id: t for r, t in zip(results, tracking, strict=True)}
    await live.session.stop()


async def test_a_receipt_names_our_message_whose_send_result_was_never_recorded(
    harness: SandboxHarness,
) -> None:
    # The session process dies between handing the message over and storing the
    # answer: the receipt, which names WhatsApp's id only, must still say whose it is,
    # in the process that takes over, and a resend must go under the same id.
    await harness.configure(web_receipts=[])
    live = await linked(harness)
    ours = new_id("msg")
    await live.session.send(WebOutbound(ours, PEER_JID, "text", text="cut short"))
    await live.session.stop()  # the answer above is dropped, as by a SIGKILL
    [sent] = harness.sends("ch1")
    again = await open_session(harness)
    await again.events.next(Connected)
    await harness.receipt("ch1", "delivered", [sent["id"]], PEER_JID)
    receipt = await again.events.next(ReceiptReceived)
    assert [(s.provider_message_id, s.tracking_id) for s in receipt.statuses] == [
        (sent["id"], ours)
    ]
    resent = await again.session.send(WebOutbound(ours, PEER_JID, "text", text="cut short"))
    assert resent.provider_message_id == sent["id"]
    await again.session.stop()


async def test_one_receipt_naming_several_messages_reports_each(harness: SandboxHarness) -> None:
    live = await linked(harness)
    await harness.receipt("ch1", "read", ["3EB0AAA", "3EB0BBB"], PEER_JID)
    receipt = await live.events.next(
        ReceiptReceived, lambda r: {s.provider_message_id for s in r.statuses} >= {"3EB0AAA"}
    )
    assert [(s.provider_message_id, s.status) for s in receipt.statuses] == [
        ("3EB0AAA", Status.READ),
        ("3EB0BBB", Status.READ),
    ]
    await live.session.stop()


async def test_media_travels_as_bytes(harness: SandboxHarness) -> None:
    live = await linked(harness)
    await live.session.send(
        WebOutbound("m1", PEER_JID, "image", media=b"\x89PNG...", mimetype="image/png")
    )
    record = next(s for s in harness.sandbox.sends if s.provider == "web")
    assert record.body["media_size"] == len(b"\x89PNG...")
    await live.session.stop()


async def test_sending_while_not_connected_is_retryable(harness: SandboxHarness) -> None:
    live = await open_session(harness)
    await live.events.next(QrCode)
    with pytest.raises(RetryableProviderError):
        await live.session.send(WebOutbound("t1", PEER_JID, "text", text="too early"))
    await live.session.stop()
    assert harness.sends("ch1") == []


async def test_sending_to_a_group_we_are_not_in_is_permanent(harness: SandboxHarness) -> None:
    live = await linked(harness)
    with pytest.raises(PermanentProviderError):
        await live.session.send(WebOutbound("t1", "120363999999999999@g.us", "text", text="x"))
    await live.session.stop()


async def test_groups_list_members_by_phone_and_lid(harness: SandboxHarness) -> None:
    live = await linked(harness)
    groups = await live.session.list_groups()
    assert groups
    members = [p for g in groups for p in g.participants]
    assert any(p.phone == PHONE for p in members)
    assert any(p.phone is None and p.lid is not None for p in members)
    await live.session.stop()


# -- receiving ----------------------------------------------------------------------------


async def test_incoming_message_reply_and_reaction(harness: SandboxHarness) -> None:
    live = await linked(harness)
    first = await harness.incoming("ch1", kind="text", **{"from": PEER}, text="hello")
    await harness.incoming("ch1", kind="reply", **{"from": PEER}, text="me", reply_to=first)
    await harness.incoming("ch1", kind="reaction", **{"from": PEER}, text="👍", reaction_to=first)
    text = (await live.events.next(MessageReceived)).message
    reply = (await live.events.next(MessageReceived)).message
    reaction = (await live.events.next(MessageReceived)).message
    assert (text.provider_message_id, text.text, text.sender_phone) == (first, "hello", PEER)
    assert text.chat_id == PEER_JID
    assert reply.reply_to_provider_id == first
    assert (reaction.type, reaction.reaction_to_provider_id) == ("reaction", first)
    await live.session.stop()


async def test_group_change_is_reported_with_members(harness: SandboxHarness) -> None:
    live = await linked(harness)
    group = (await live.session.list_groups())[0]
    await harness.group_change(
        "ch1",
        chat_id=group.chat_id,
        name="Renamed",
        joined=[{"phone": PEER}],
        left=[{"phone": None, "lid": "76699677010001@lid"}],
    )
    change = await live.events.next(GroupChanged)
    assert (change.chat_id, change.name) == (group.chat_id, "Renamed")
    assert [p.phone for p in change.joined] == [PEER]
    assert [p.lid for p in change.left] == ["76699677010001@lid"]
    await live.session.stop()


async def test_a_sender_known_only_by_lid_then_linked_to_a_phone(harness: SandboxHarness) -> None:
    live = await linked(harness)
    lid = "12345678901234@lid"
    await harness.incoming("ch1", kind="text", from_lid=lid, text="who am I")
    hidden = await live.events.next(MessageReceived)
    assert hidden.message.sender_phone is None
    assert hidden.sender_lid == lid
    await harness.incoming("ch1", kind="text", **{"from": PEER}, from_lid=lid, text="me again")
    linked_identity = await live.events.next(IdentityLinked)
    assert (linked_identity.lid, linked_identity.phone) == (lid, PEER)
    shown = await live.events.next(MessageReceived)
    assert (shown.message.sender_phone, shown.sender_lid) == (PEER, lid)
    await harness.identity("ch1", "99999999999999@lid", "+4915199999999")
    learned = await live.events.next(IdentityLinked)
    assert (learned.lid, learned.phone) == ("99999999999999@lid", "+4915199999999")
    await live.session.stop()


# -- staying connected --------------------------------------------------------------------


async def test_a_dropped_connection_reconnects_and_loses_nothing(harness: SandboxHarness) -> None:
    live = await linked(harness)
    codes_shown = len(live.events.of(QrCode))
    await harness.drop("ch1")
    await live.events.next(Disconnected)
    await harness.incoming("ch1", kind="text", **{"from": PEER}, text="while you were away")
    await live.events.next(Connected)
    message = await live.events.next(MessageReceived)
    assert message.message.text == "while you were away"
    assert len(live.events.of(QrCode)) == codes_shown
    await live.session.stop()


async def test_a_restarted_process_gets_what_it_did_not_ack_and_nothing_twice(
    harness: SandboxHarness,
) -> None:
    live = await linked(harness)
    await harness.incoming("ch1", kind="text", **{"from": PEER}, text="one")
    await live.events.next(MessageReceived)
    await live.session.stop()
    await harness.incoming("ch1", kind="text", **{"from": PEER}, text="two")
    again = await open_session(harness)
    await again.events.next(Connected)
    message = await again.events.next(MessageReceived)
    assert message.message.text == "two"
    await harness.incoming("ch1", kind="text", **{"from": PEER}, text="three")
    await again.events.next(MessageReceived, lambda m: m.message.text == "three")
    assert [m.message.text for m in again.events.of(MessageReceived)] == ["two", "three"]
    await again.session.stop()


async def test_keepalives_missed_then_restored(harness: SandboxHarness) -> None:
    live = await linked(harness)
    await harness.answer_keepalives("ch1", False)
    await live.events.next(KeepAliveMissed)
    await harness.answer_keepalives("ch1", True)
    await live.events.next(KeepAliveRestored)
    assert len(live.events.of(KeepAliveMissed)) == 1
    await live.session.stop()


async def test_a_replaced_stream_is_reported_and_not_redialled(harness: SandboxHarness) -> None:
    live = await linked(harness)
    await harness.replace_stream("ch1")
    await live.events.next(StreamReplaced)
    with pytest.raises(RetryableProviderError):
        await live.session.send(WebOutbound("t1", PEER_JID, "text", text="x"))
    assert live.events.of(Disconnected) == []
    await live.session.stop()


async def test_a_temporary_ban_ends_the_session_until_it_expires(harness: SandboxHarness) -> None:
    live = await linked(harness)
    await harness.ban("ch1", 3600)
    ban = await live.events.next(TemporaryBan)
    assert ban.expires_in_s == 3600
    await live.session.stop()
    again = await open_session(harness)
    refused = await again.events.next(TemporaryBan)
    assert refused.expires_in_s is not None
    assert 0 < refused.expires_in_s <= 3600
    assert again.events.of(Connected) == []
    await again.session.stop()


async def test_a_sandbox_that_is_down_fails_with_a_reason(harness: SandboxHarness) -> None:
    events = Recorder()
    session = harness.engine(harness.down_url()).open("ch1", on_event=events)
    await session.start()
    failed = await events.next(ConnectFailed)
    assert "cannot reach" in failed.reason
    await session.stop()
