"""The neonize engine's lifecycle with no network: dials fail with a reason instead of
hanging, ``stop`` returns, calls that need a connection are refused cleanly, and the Go
panic neonize has on an unconnected client is never reached through the engine."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from neonize.events import ConnectedEv

from neonize_feed import Feed, refusing_proxy
from wahub.domain.errors import (
    ConflictError,
    PermanentProviderError,
    RetryableProviderError,
    ValidationError,
)
from wahub.providers.web.neonize_engine import NeonizeEngine
from wahub.providers.web.session import Connected, ConnectFailed, SessionEvent, WebOutbound

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    fed = Feed(tmp_path)
    try:
        yield fed
    finally:
        await fed.close()


@pytest.fixture
def silent_proxy() -> Iterator[str]:
    """An HTTP proxy that accepts connections and never answers: a dial through it
    hangs the way one into a black-holed network does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


async def first_event(events: asyncio.Queue[SessionEvent]) -> SessionEvent:
    # A bound on the wait, not a timing assertion: a hang fails instead of blocking.
    return await asyncio.wait_for(events.get(), 120)


async def test_a_dial_that_cannot_connect_fails_with_the_reason_and_stop_returns(
    tmp_path: Path,
) -> None:
    # Through a proxy where nothing listens, so the dial fails the same way on a machine
    # with a network as on ours without one.
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()
    engine = NeonizeEngine(tmp_path / "sessions", dial_timeout_s=60, proxy=refusing_proxy())
    session = engine.open("ch_dial", on_event=events.put_nowait)

    await session.start()
    failed = await first_event(events)
    await asyncio.wait_for(session.stop(), 60)
    await engine.close()

    assert isinstance(failed, ConnectFailed), failed
    assert failed.reason.startswith("could not connect to WhatsApp: ")
    assert "connection refused" in failed.reason
    assert events.empty()


async def test_a_dial_nobody_answers_fails_after_the_dial_timeout(
    tmp_path: Path, silent_proxy: str
) -> None:
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()
    engine = NeonizeEngine(tmp_path / "sessions", dial_timeout_s=2, proxy=silent_proxy)
    session = engine.open("ch_silent", on_event=events.put_nowait)

    await session.start()
    failed = await first_event(events)
    await asyncio.wait_for(engine.close(), 60)

    assert failed == ConnectFailed(reason="WhatsApp did not answer within 2 s")


async def test_sends_while_not_connected_are_refused_as_retryable(feed: Feed) -> None:
    message = WebOutbound(
        tracking_id="msg_1", to="4915110000001@s.whatsapp.net", kind="text", text="hello"
    )

    with pytest.raises(RetryableProviderError, match="not connected"):
        await feed.session.send(message)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (WebOutbound(tracking_id="m", to="491511@s.whatsapp.net", kind="image"), "as bytes"),
        (WebOutbound(tracking_id="m", to="491511@s.whatsapp.net", kind="text"), "needs text"),
        (
            WebOutbound(tracking_id="m", to="491511@s.whatsapp.net", kind="sticker", media=b"x"),
            "cannot send",
        ),
        (
            WebOutbound(tracking_id="m", to="not an address", kind="text", text="x"),
            "not a WhatsApp address",
        ),
    ],
    ids=["media-not-bytes", "empty-text", "unknown-kind", "bad-address"],
)
async def test_a_message_that_cannot_be_built_is_refused_for_good_before_any_call(
    feed: Feed, message: WebOutbound, problem: str
) -> None:
    with pytest.raises(PermanentProviderError, match=problem):
        await feed.session.send(message)


async def test_a_pairing_code_needs_a_phone_and_a_session_showing_qr_codes(feed: Feed) -> None:
    with pytest.raises(ValidationError):
        await feed.session.pair_phone("not a phone")
    with pytest.raises(ConflictError, match="while the session shows QR codes"):
        await feed.session.pair_phone("+4915110000001")


async def test_groups_of_an_unconnected_session_are_refused(feed: Feed) -> None:
    with pytest.raises(RetryableProviderError, match="not connected"):
        await feed.session.list_groups()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "tests"), "PATH": "/usr/bin:/bin"},
    )


def test_get_pn_from_lid_on_an_unconnected_client_aborts_the_process(tmp_path: Path) -> None:
    """The hazard itself, so the next test proves something: neonize 0.5.2 panics in Go
    and the whole Python process dies with SIGABRT."""
    result = run_python(f"""
        from neonize.client import NewClient
        from neonize_feed import jid
        client = NewClient({str(tmp_path / "a.sqlite3")!r}, uuid="ch_panic")
        client.get_pn_from_lid(jid("76699677012110", "lid"))
        print("survived")
    """)

    assert result.returncode != 0
    assert "survived" not in result.stdout
    assert "panic:" in result.stderr


def test_the_engine_never_reaches_that_panic_on_an_unconnected_session(tmp_path: Path) -> None:
    """A LID-only message and a direct LID look-up on an unconnected session: the engine
    answers without asking Go, and the process lives."""
    result = run_python(f"""
        import asyncio
        from pathlib import Path
        from neonize.events import MessageEv
        from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
        from neonize_feed import Feed, jid

        async def main() -> None:
            feed = Feed(Path({str(tmp_path)!r}))
            lid = jid("76699677012110", "lid")
            source = MessageSource(Chat=lid, Sender=lid, IsFromMe=False, IsGroup=False)
            event = MessageEv(
                Info=MessageInfo(MessageSource=source, ID="X1", Timestamp=1),
                Message=Message(conversation="hi"),
            )
            [received] = await feed.collect(event, 1)
            print("received", received.sender_lid, received.message.sender_phone)
            print("phone", await feed.session.phone_for_lid("76699677012110@lid"))
            await feed.close()

        asyncio.run(main())
        print("survived")
    """)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "received 76699677012110@lid None",
        "phone None",
        "survived",
    ]


async def test_refusals_from_whatsmeow_are_retryable_and_name_the_reason(feed: Feed) -> None:
    """Connected as far as our events go, while the Go client has no connection (what
    a connection lost between the two looks like): neonize answers each call with an
    error instead of panicking, and the engine passes it on as retryable."""
    [connected] = await feed.collect(ConnectedEv(status=True), 1)
    text = WebOutbound(tracking_id="m", to="4915110000001@s.whatsapp.net", kind="text", text="x")
    image = WebOutbound(
        tracking_id="m", to="4915110000001@s.whatsapp.net", kind="image", media=b"\x89PNG"
    )

    assert connected == Connected(me_phone=None)
    with pytest.raises(RetryableProviderError, match=r"WhatsApp refused: .*client is nil"):
        await feed.session.send(text)
    with pytest.raises(RetryableProviderError, match=r"WhatsApp refused: .*client is nil"):
        await feed.session.send(image)
    with pytest.raises(RetryableProviderError, match=r"WhatsApp refused: .*client is nil"):
        await feed.session.list_groups()
