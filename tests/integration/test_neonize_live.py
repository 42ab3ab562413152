"""The neonize engine against real WhatsApp, with a real phone: opt-in, skipped unless
``WAHUB_LIVE_WEB_PHONE`` is set (our machines cannot reach WhatsApp). See
docs/web-sessions-real-phone.md for the whole checklist.

    WAHUB_LIVE_WEB_PHONE=+4915123456789 \\
    WAHUB_LIVE_WEB_GROUP=120363025246125486@g.us \\
    .venv/bin/pytest -s tests/integration/test_neonize_live.py

``WAHUB_LIVE_WEB_PHONE`` receives the test messages (a second phone of yours, not the
one being linked); ``WAHUB_LIVE_WEB_GROUP`` (optional) is a group the linked number is in;
``WAHUB_LIVE_WEB_STORE`` (optional) keeps the credentials between runs (default: a
temporary directory, so every run links anew). Scan the QR printed in the terminal
(hence ``-s``) within three minutes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import segno

from wahub.domain.phones import canonical_chat_id
from wahub.providers.web.neonize_engine import NeonizeEngine
from wahub.providers.web.session import (
    Connected,
    QrCode,
    ReceiptReceived,
    SessionEvent,
    WebOutbound,
)

PHONE = os.environ.get("WAHUB_LIVE_WEB_PHONE")
GROUP = os.environ.get("WAHUB_LIVE_WEB_GROUP")
STORE = os.environ.get("WAHUB_LIVE_WEB_STORE")

pytestmark = pytest.mark.skipif(
    not PHONE, reason="live WhatsApp test: set WAHUB_LIVE_WEB_PHONE to run it with a real phone"
)


QR_SHOWN: list[str] = []


async def until(events: asyncio.Queue[SessionEvent], kind: type, seconds: float) -> SessionEvent:
    """The next event of ``kind``, showing (and counting) QR codes met on the way."""
    async with asyncio.timeout(seconds):
        while True:
            event = await events.get()
            if isinstance(event, QrCode):
                QR_SHOWN.append(event.code)
                segno.make_qr(event.code).terminal(compact=True)
                print(f"scan within {event.expires_in_s:g} s", flush=True)
            if isinstance(event, kind):
                return event


async def test_link_send_receive_receipts_and_resume_without_a_new_qr(tmp_path: Path) -> None:
    assert PHONE is not None
    engine = NeonizeEngine(STORE or tmp_path / "sessions")
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()
    session = engine.open("live", on_event=events.put_nowait)

    await session.start()
    connected = await until(events, Connected, 180)
    assert isinstance(connected, Connected)
    assert connected.me_phone, connected
    print(f"linked as {connected.me_phone} ({connected.push_name})", flush=True)

    to = canonical_chat_id(PHONE)
    sent = await session.send(
        WebOutbound(tracking_id="live_1", to=to, kind="text", text="wahub live test: hello")
    )
    assert sent.provider_message_id
    receipt = await until(events, ReceiptReceived, 120)
    assert isinstance(receipt, ReceiptReceived)
    assert sent.provider_message_id in {s.provider_message_id for s in receipt.statuses}

    if GROUP:
        groups = await session.list_groups()
        assert GROUP in {group.chat_id for group in groups}
        in_group = await session.send(
            WebOutbound(tracking_id="live_2", to=GROUP, kind="text", text="wahub live test")
        )
        assert in_group.provider_message_id

    await session.stop()
    assert await engine.has_credentials("live")

    # A restart resumes from the stored credentials: Connected again, and no QR.
    QR_SHOWN.clear()
    resumed = engine.open("live", on_event=events.put_nowait)
    await resumed.start()
    again = await until(events, Connected, 60)
    assert isinstance(again, Connected)
    assert QR_SHOWN == []
    await resumed.stop()
    await engine.close()
