"""The sandbox's web session engine over raw HTTP: what it refuses and how, and the
record tests count sends by (the engine's behaviour is in the web engine contract); and
what the sandbox engine does when its own loop fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wahub.domain.errors import RetryableProviderError
from wahub.providers.sandbox import Sandbox
from wahub.providers.web.sandbox_engine import SandboxWebEngine
from wahub.providers.web.session import (
    ConnectFailed,
    MessageReceived,
    QrCode,
    SessionEvent,
    WebOutbound,
)

# The start_sandbox fixture's type (tests/integration/conftest.py); not imported from
# there, since two conftest modules exist when several test folders run together.
StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body or {}}
    async with http.post(url, **kwargs) as response:
        return response.status, await response.json()


async def _link(http: aiohttp.ClientSession, url: str, session: str) -> tuple[str, str]:
    """Connect, scan, and return (connection, token)."""
    status, answer = await _post(http, f"{url}/web/{session}/connect")
    assert status == 200, answer
    assert answer["state"] == "pairing"
    status, _ = await _post(http, f"{url}/_sandbox/web/{session}/scan", {"code": answer["qr"]})
    assert status == 200
    async with http.get(
        f"{url}/web/{session}/events", params={"connection": answer["connection"]}
    ) as response:
        events = (await response.json())["events"]
    paired = next(event for event in events if event["type"] == "paired")
    return str(answer["connection"]), str(paired["token"])


async def test_bad_input_gets_the_error_envelope(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    _, url = await start_sandbox()
    status, answer = await _post(http, f"{url}/web/s1/connect", raw=b"{not json")
    assert status == 400
    assert answer["error"]["code"] == "invalid_request"
    status, answer = await _post(http, f"{url}/web/s1/connect", {"token": "forged"})
    assert (status, answer["error"]["code"]) == (401, "logged_out")
    status, answer = await _post(http, f"{url}/web/s1/connect")
    status, answer = await _post(
        http, f"{url}/web/s1/pair-phone", {"connection": answer["connection"], "phone": "12"}
    )
    assert (status, answer["error"]["code"]) == (422, "invalid_phone")
    assert answer["error"]["details"] == {"field": "phone"}


async def test_a_qr_that_rotated_away_cannot_be_scanned(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    _, url = await start_sandbox()
    await _post(http, f"{url}/web/s1/connect")
    status, answer = await _post(http, f"{url}/_sandbox/web/s1/scan", {"code": "2@old,s1,0"})
    assert (status, answer["error"]["code"]) == (400, "qr_expired")


async def test_scan_without_pairing_is_a_conflict(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    _, url = await start_sandbox()
    status, answer = await _post(http, f"{url}/_sandbox/web/s1/scan")
    assert (status, answer["error"]["code"]) == (409, "not_pairing")


async def test_sends_are_recorded_and_a_resend_counts_as_a_duplicate(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    sandbox, url = await start_sandbox()
    connection, _ = await _link(http, url, "s1")
    send = {
        "connection": connection,
        "to": "4917612345678@s.whatsapp.net",
        "kind": "text",
        "text": "hi",
        "tracking_id": "msg-1",
    }
    for _ in range(2):
        status, answer = await _post(http, f"{url}/web/s1/send", send)
        assert status == 200, answer
    records = [s for s in sandbox.sends if s.provider == "web"]
    assert [r.biz_opaque_callback_data for r in records] == ["msg-1", "msg-1"]
    async with http.get(f"{url}/_sandbox/web/stats") as response:
        stats = await response.json()
    assert (stats["sends"], stats["duplicates"]) == (2, 1)


async def test_a_send_goes_under_the_id_the_sender_chose_and_receipts_name_only_it(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    sandbox, url = await start_sandbox()
    connection, _ = await _link(http, url, "s1")
    send = {
        "connection": connection,
        "to": "4917612345678@s.whatsapp.net",
        "kind": "text",
        "text": "hi",
        "tracking_id": "msg-1",
        "id": "3EB0AABBCCDDEEFF0011",
    }
    status, answer = await _post(http, f"{url}/web/s1/send", send)
    assert (status, answer["id"]) == (200, "3EB0AABBCCDDEEFF0011")
    assert [s.wamid for s in sandbox.sends if s.provider == "web"] == ["3EB0AABBCCDDEEFF0011"]
    after, receipts = 0, []
    while not receipts:
        async with http.get(
            f"{url}/web/s1/events",
            params={"connection": connection, "after": str(after), "wait": "10"},
        ) as response:
            events = (await response.json())["events"]
        after = max([after, *(event["seq"] for event in events)])
        receipts = [event for event in events if event["type"] == "receipt"]
    receipt = receipts[0]
    assert receipt["ids"] == ["3EB0AABBCCDDEEFF0011"]
    assert "tracking_ids" not in receipt  # WhatsApp echoes nothing of ours

    status, answer = await _post(http, f"{url}/web/s1/send", {**send, "id": "3eb0-short"})
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert answer["error"]["details"] == {"field": "id", "id": "3eb0-short"}


async def test_a_send_on_a_closed_connection_is_refused_and_not_recorded(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    sandbox, url = await start_sandbox()
    connection, _ = await _link(http, url, "s1")
    await _post(http, f"{url}/_sandbox/web/s1/drop")
    status, answer = await _post(
        http,
        f"{url}/web/s1/send",
        {
            "connection": connection,
            "to": "4917612345678@s.whatsapp.net",
            "kind": "text",
            "text": "x",
        },
    )
    assert (status, answer["error"]["code"]) == (409, "not_connected")
    assert [s for s in sandbox.sends if s.provider == "web"] == []


async def test_a_media_send_without_media_is_refused(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    _, url = await start_sandbox()
    connection, _ = await _link(http, url, "s1")
    status, answer = await _post(
        http,
        f"{url}/web/s1/send",
        {"connection": connection, "to": "4917612345678@s.whatsapp.net", "kind": "image"},
    )
    assert (status, answer["error"]["details"]) == (400, {"field": "media_b64"})


async def test_logout_invalidates_the_device_token(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession
) -> None:
    _, url = await start_sandbox()
    _, token = await _link(http, url, "s1")
    status, answer = await _post(http, f"{url}/web/s1/connect", {"token": token})
    assert (status, answer["state"]) == (200, "connected")
    await _post(http, f"{url}/_sandbox/web/s1/logout")
    status, answer = await _post(http, f"{url}/web/s1/connect", {"token": token})
    assert (status, answer["error"]["code"]) == (401, "logged_out")


async def test_an_engine_loop_that_dies_does_not_leave_the_session_looking_connected(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, url = await start_sandbox()
    seen: list[SessionEvent] = []
    qr_shown = asyncio.Event()
    failed = asyncio.Event()

    def on_event(event: SessionEvent) -> None:
        seen.append(event)
        if isinstance(event, QrCode):
            qr_shown.set()
        if isinstance(event, ConnectFailed):
            failed.set()
        if isinstance(event, MessageReceived):
            raise RuntimeError("a bug in the session process")

    engine = SandboxWebEngine(url, tmp_path)
    session = engine.open("s1", on_event=on_event)
    await session.start()
    async with asyncio.timeout(10):
        await qr_shown.wait()
    qr = next(event for event in seen if isinstance(event, QrCode))
    await _post(http, f"{url}/_sandbox/web/s1/scan", {"code": qr.code})
    await _post(http, f"{url}/_sandbox/web/s1/inbound", {"from": "+4917612345678", "text": "x"})
    async with asyncio.timeout(10):
        await failed.wait()
    failure = next(event for event in seen if isinstance(event, ConnectFailed))
    assert "a bug in the session process" in failure.reason
    with pytest.raises(RetryableProviderError):
        await session.send(WebOutbound("t1", "4917612345678@s.whatsapp.net", "text", text="x"))
    await engine.close()


async def test_logging_out_while_pairing_ends_the_pairing(
    start_sandbox: StartSandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    _, url = await start_sandbox()
    qr_shown = asyncio.Event()
    engine = SandboxWebEngine(url, tmp_path)
    session = engine.open(
        "s1", on_event=lambda e: qr_shown.set() if isinstance(e, QrCode) else None
    )
    await session.start()
    async with asyncio.timeout(10):
        await qr_shown.wait()
    await session.logout()
    async with http.get(f"{url}/_sandbox/web/s1") as response:
        described = await response.json()
    assert (described["state"], described["qr"]) == ("unlinked", None)
    await engine.close()
