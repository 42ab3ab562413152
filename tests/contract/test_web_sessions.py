"""WhatsApp Web sessions end to end, on both store backends: the API, the session process
(``wahub.sessions``) and the sandbox's web session engine over HTTP, with the hub's inbox
processor applying what the sessions receive.

The session process runs in the test's event loop with a database handle of its own (as
it would in its own process). Waiting has a generous bound only so a broken build fails
instead of hanging; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from random_secrets import APP_SECRET, VERIFY_TOKEN
from sealing import TEST_SECRET_KEY
from wahub.app import create_app
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.sessions.engines import Engines
from wahub.sessions.process import SessionProcess
from wahub.store.database import Database
from wahub.store.schema import channel_state_history, group_members, lid_links

BOUND_S = 30.0
PHONE = "+4915123450001"
PEER = "+4917612345678"
PEER_JID = "4917612345678@s.whatsapp.net"
GROUP = "120363000000000042@g.us"

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``probe`` until it gives a value (not None/False)."""
    try:
        async with asyncio.timeout(BOUND_S):
            while True:
                value = await probe()
                if value:
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


@dataclass
class Env:
    hub: Hub
    api: httpx.AsyncClient
    sandbox: Sandbox
    sandbox_url: str
    http: aiohttp.ClientSession
    settings: Settings
    processes: list[tuple[SessionProcess, asyncio.Task[None], Database]]

    async def start_session_process(self, owner: str | None = None) -> SessionProcess:
        db = Database(self.settings.database_url, sqlite_synchronous="OFF")
        process = SessionProcess(db, self.settings, engines=Engines(self.settings), owner=owner)
        task = asyncio.create_task(process.run())
        self.processes.append((process, task, db))
        return process

    async def stop_session_process(self, process: SessionProcess) -> None:
        for entry in list(self.processes):
            if entry[0] is process:
                process.stop()
                await entry[1]
                await entry[2].dispose()
                self.processes.remove(entry)

    async def control(self, channel_id: str, action: str, body: Any = None) -> dict[str, Any]:
        async with self.http.post(
            f"{self.sandbox_url}/_sandbox/web/{channel_id}/{action}", json=body or {}
        ) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            return answer

    async def create_channel(self, name: str = "phone", **extra: Any) -> dict[str, Any]:
        response = await self.api.post(
            "/v1/channels",
            json={"name": name, "kind": "web", "base_url": self.sandbox_url, **extra},
        )
        assert response.status_code == 201, response.text
        channel: dict[str, Any] = response.json()
        return channel

    async def session(self, channel_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/channels/{channel_id}/session")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def state_is(self, channel_id: str, state: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            view = await self.session(channel_id)
            return view if view["state"] == state else None

        return await eventually(probe, f"session {channel_id} {state}")

    async def link(self, name: str = "phone", phone: str = PHONE, **extra: Any) -> str:
        channel = await self.create_channel(name, **extra)
        await self.state_is(channel["id"], "scan_qr")
        qr = await self.api.get(f"/v1/channels/{channel['id']}/session/qr?format=raw")
        assert qr.status_code == 200, qr.text
        await self.control(channel["id"], "scan", {"code": qr.json()["code"], "phone": phone})
        await self.state_is(channel["id"], "working")
        return str(channel["id"])

    async def message(self, message_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture
async def env(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    sandbox = Sandbox(SandboxConfig(web_qr_rotate_s=5.0, web_receipt_delay_ms=5))
    sandbox_url = await sandbox.start(port=free_port())
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        cloudapi_app_secret=SecretStr(APP_SECRET),
        cloudapi_verify_token=SecretStr(VERIFY_TOKEN),
        secret_key=SecretStr(TEST_SECRET_KEY),
        session_state_dir=str(tmp_path / "sessions"),
        web_chat_jitter_seconds=0.0,
        web_chat_interval_seconds=0.0,
        web_rate_per_second=50.0,
    )
    hub = Hub.build(settings)
    await hub.start(workers=True)
    admin = await hub.access.create_key(user_name="admin", role="admin")
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    api = httpx.AsyncClient(
        transport=transport,
        base_url="http://wahub.test",
        headers={"Authorization": f"Bearer {admin.key}"},
    )
    http = aiohttp.ClientSession()
    environment = Env(hub, api, sandbox, sandbox_url, http, settings, [])
    await environment.start_session_process()
    try:
        yield environment
    finally:
        for process, _, _ in list(environment.processes):
            await environment.stop_session_process(process)
        await http.close()
        await api.aclose()
        await hub.stop()
        await sandbox.stop()


async def test_linking_by_scan_goes_through_qr_to_working_with_a_history_row_per_state(
    env: Env,
) -> None:
    channel_id = await env.link()
    view = await env.session(channel_id)
    assert view["me"]["phone"] == PHONE
    assert [h["state"] for h in reversed(view["history"])] == ["starting", "scan_qr", "working"]
    async with env.hub.db.read() as conn:
        rows = (
            await conn.execute(
                select(channel_state_history.c.state).where(
                    channel_state_history.c.channel_id == channel_id
                )
            )
        ).all()
    assert [r.state for r in rows] == ["starting", "scan_qr", "working"]


async def test_the_qr_is_a_png_or_the_raw_string_and_409_once_linked(env: Env) -> None:
    channel = await env.create_channel()
    await env.state_is(channel["id"], "scan_qr")
    png = await env.api.get(f"/v1/channels/{channel['id']}/session/qr")
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    raw = await env.api.get(f"/v1/channels/{channel['id']}/session/qr?format=raw")
    await env.control(channel["id"], "scan", {"code": raw.json()["code"], "phone": PHONE})
    await env.state_is(channel["id"], "working")
    linked = await env.api.get(f"/v1/channels/{channel['id']}/session/qr")
    assert linked.status_code == 409
    assert linked.json()["error"]["code"] == "session_linked"


async def test_a_pairing_code_for_an_unparsable_phone_is_422_and_a_good_one_links(
    env: Env,
) -> None:
    channel = await env.create_channel()
    await env.state_is(channel["id"], "scan_qr")
    bad = await env.api.post(
        f"/v1/channels/{channel['id']}/session/pairing-code", json={"phone": "not a phone"}
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["details"]["field"] == "phone"
    good = await env.api.post(
        f"/v1/channels/{channel['id']}/session/pairing-code", json={"phone": PHONE}
    )
    assert good.status_code == 200, good.text
    await env.control(channel["id"], "pairing-code", {"code": good.json()["code"]})
    view = await env.state_is(channel["id"], "working")
    assert view["me"]["phone"] == PHONE


async def test_sends_to_a_person_and_a_group_reach_read_through_receipts(env: Env) -> None:
    channel_id = await env.link()
    await env.control(
        channel_id,
        "group-change",
        {
            "chat_id": GROUP,
            "name": "Artists",
            "joined": [{"phone": PHONE, "rank": "admin"}, {"phone": PEER, "rank": "member"}],
        },
    )

    async def group_known() -> bool:
        response = await env.api.get("/v1/chats")
        return any(c["chat_id"] == GROUP for c in response.json()["data"])

    await eventually(group_known, "the group change reached the directory")
    ids = []
    for to in (PEER, GROUP):
        response = await env.api.post(
            "/v1/messages",
            json={"to": to, "channel_id": channel_id, "type": "text", "text": {"body": "hi"}},
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    for message_id in ids:

        async def read(message_id: str = message_id) -> bool:
            return (await env.message(message_id))["status"] == "read"

        await eventually(read, f"{message_id} read")
    sent_to = sorted(s.to for s in env.sandbox.sends if s.provider == "web")
    assert sent_to == sorted([PEER_JID, GROUP])


async def test_an_incoming_message_opens_a_conversation(env: Env) -> None:
    channel_id = await env.link()
    await env.control(
        channel_id, "inbound", {"from": PEER, "text": "hello there", "push_name": "Ana"}
    )

    async def conversation() -> dict[str, Any] | None:
        response = await env.api.get("/v1/conversations")
        found = [c for c in response.json()["data"] if c["chat_id"] == PEER_JID]
        return found[0] if found else None

    found = await eventually(conversation, "a conversation with the sender")
    assert found["unread_count"] == 1


async def test_a_lid_only_sender_is_stored_under_the_lid_and_merged_when_the_phone_is_learned(
    env: Env,
) -> None:
    channel_id = await env.link()
    lid = "76699677012110@lid"
    await env.control(channel_id, "inbound", {"from_lid": lid, "text": "who am I"})

    async def under_lid() -> dict[str, Any] | None:
        response = await env.api.get("/v1/conversations")
        found = [c for c in response.json()["data"] if c["chat_id"] == lid]
        return found[0] if found else None

    await eventually(under_lid, "the LID's conversation")
    await env.control(channel_id, "identity", {"lid": lid, "phone": PEER})

    async def merged() -> dict[str, Any] | None:
        response = await env.api.get("/v1/conversations")
        chats = {c["chat_id"]: c for c in response.json()["data"]}
        return chats.get(PEER_JID) if lid not in chats else None

    found = await eventually(merged, "the LID's conversation merged into the phone's")
    assert found["unread_count"] == 1
    async with env.hub.db.read() as conn:
        link = (await conn.execute(select(lid_links).where(lid_links.c.lid == lid))).first()
    assert link is not None
    assert link.phone == PEER


async def test_a_group_member_known_by_lid_gets_its_phone_when_learned(env: Env) -> None:
    channel_id = await env.link()
    lid = "76699677012111@lid"
    await env.control(
        channel_id,
        "group-change",
        {"chat_id": GROUP, "name": "G", "joined": [{"phone": PHONE}, {"lid": lid}]},
    )
    await env.control(channel_id, "identity", {"lid": lid, "phone": PEER})

    async def member() -> Any:
        async with env.hub.db.read() as conn:
            row = (
                await conn.execute(select(group_members).where(group_members.c.member_lid == lid))
            ).first()
        return row if row is not None and row.member_phone == PEER else None

    await eventually(member, "the LID member merged with its phone")


async def test_sending_through_a_session_that_is_not_working_is_409_naming_its_state(
    env: Env,
) -> None:
    channel = await env.create_channel()
    await env.state_is(channel["id"], "scan_qr")
    response = await env.api.post(
        "/v1/messages",
        json={"to": PEER, "channel_id": channel["id"], "type": "text", "text": {"body": "x"}},
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "session_not_working"
    assert error["details"]["state"] == "scan_qr"
    assert "scan_qr" in error["message"]


async def test_queued_messages_wait_while_the_session_is_stopped_then_go(env: Env) -> None:
    channel_id = await env.link()
    sender = env.processes[0][0].sender

    async def refreshed_twice() -> bool:
        # The sender re-reads its channels about every second: after two passes it has
        # seen whatever was committed before the first.
        start = sender.stats.refreshes
        while sender.stats.refreshes < start + 2:
            await asyncio.sleep(0.05)
        return True

    paused = await env.api.patch(f"/v1/channels/{channel_id}", json={"paused": True})
    assert paused.status_code == 200
    await eventually(refreshed_twice, "the sender saw the pause")
    response = await env.api.post(
        "/v1/messages",
        json={"to": PEER, "channel_id": channel_id, "type": "text", "text": {"body": "later"}},
    )
    assert response.status_code == 202
    message_id = response.json()["id"]
    assert (await env.api.post(f"/v1/channels/{channel_id}/session/stop")).status_code == 200
    await env.state_is(channel_id, "stopped")
    await env.api.patch(f"/v1/channels/{channel_id}", json={"paused": False})
    await eventually(refreshed_twice, "the sender saw the channel resumed")
    assert channel_id not in sender.channel_ids
    assert (await env.message(message_id))["status"] == "queued"
    assert (await env.api.post(f"/v1/channels/{channel_id}/session/start")).status_code == 200
    await env.state_is(channel_id, "working")

    async def sent() -> bool:
        return (await env.message(message_id))["status"] in ("sent", "delivered", "read")

    await eventually(sent, "the queued message went once the session worked")
    history = [h["state"] for h in (await env.session(channel_id))["history"]]
    assert "stopped" in history


async def test_a_send_beyond_the_daily_cap_is_refused_saying_when_it_resets(env: Env) -> None:
    channel_id = await env.link(daily_cap=1)
    body = {"to": PEER, "channel_id": channel_id, "type": "text", "text": {"body": "one"}}
    assert (await env.api.post("/v1/messages", json=body)).status_code == 202
    refused = await env.api.post("/v1/messages", json=body)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "daily_cap_reached"
    assert error["details"]["cap"] == 1
    assert error["details"]["resets_at"] % 86400 == 0


async def test_two_session_processes_never_open_the_same_channel(env: Env) -> None:
    second = await env.start_session_process(owner="second")
    first = env.processes[0][0]
    ids = [await env.link(f"phone{n}", phone=f"+491512345000{n}") for n in range(1, 4)]

    async def all_held() -> bool:
        return first.held_channels() | second.held_channels() == set(ids)

    await eventually(all_held, "every channel held")
    assert not first.held_channels() & second.held_channels()
    for channel_id in ids:
        view = await env.session(channel_id)
        assert view["held_by"] in (first.owner, second.owner)
        assert "failed" not in [h["state"] for h in view["history"]]


async def test_every_state_change_is_an_event_on_the_stream(env: Env) -> None:
    subscription = env.hub.realtime.subscribe(lambda event: True)
    try:
        channel_id = await env.link()
        seen: list[str] = []
        async with asyncio.timeout(BOUND_S):
            while seen[-1:] != ["working"]:
                event = await subscription.queue.get()
                if event["type"] == "channel.session" and event["channel_id"] == channel_id:
                    seen.append(event["state"])
    finally:
        env.hub.realtime.unsubscribe(subscription)
    assert seen == ["starting", "scan_qr", "working"]


async def test_channels_connect_shows_the_qr_and_waits_until_the_phone_is_linked(
    env: Env,
) -> None:
    channel = await env.create_channel()
    await env.api.post(f"/v1/channels/{channel['id']}/session/stop")
    await env.state_is(channel["id"], "stopped")
    connect = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wahub",
        "channels",
        "connect",
        channel["name"],
        "--database",
        env.settings.database_url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert connect.stdout is not None
    printed = ""
    async with asyncio.timeout(BOUND_S):
        while "Linked devices" not in printed:
            printed += (await connect.stdout.readline()).decode()
    qr = await env.api.get(f"/v1/channels/{channel['id']}/session/qr?format=raw")
    await env.control(channel["id"], "scan", {"code": qr.json()["code"], "phone": PHONE})
    async with asyncio.timeout(BOUND_S):
        out, _ = await connect.communicate()
    assert connect.returncode == 0
    printed += out.decode()
    assert "\u2580" in printed or "\u2588" in printed  # the QR, drawn in half blocks
    assert f"linked as {PHONE}" in printed


async def test_linking_fills_the_group_directory_and_lookup_from_the_phone(env: Env) -> None:
    channel = await env.create_channel()
    lid = "76699677012112@lid"
    async with env.http.post(
        f"{env.sandbox_url}/_sandbox/web/{channel['id']}/groups",
        json=[
            {
                "chat_id": GROUP,
                "name": "Clients",
                "participants": [
                    {"phone": PHONE, "rank": "admin"},
                    {"phone": PEER, "lid": lid, "rank": "member"},
                ],
            }
        ],
    ) as response:
        assert response.status == 200
    await env.state_is(channel["id"], "scan_qr")
    qr = await env.api.get(f"/v1/channels/{channel['id']}/session/qr?format=raw")
    await env.control(channel["id"], "scan", {"code": qr.json()["code"], "phone": PHONE})

    async def members() -> list[Any] | None:
        async with env.hub.db.read() as conn:
            rows = (
                await conn.execute(select(group_members).where(group_members.c.chat_id == GROUP))
            ).all()
        return rows if len(rows) == 2 else None

    rows = await eventually(members, "the phone's groups in the directory")
    assert {(r.member_phone, r.member_lid) for r in rows} == {(PHONE, None), (PEER, lid)}
    async with env.hub.db.read() as conn:
        link = (await conn.execute(select(lid_links).where(lid_links.c.lid == lid))).first()
    assert link is not None
    assert link.phone == PEER


async def test_a_missed_keepalive_turns_working_into_degraded_until_answered(env: Env) -> None:
    channel_id = await env.link()
    await env.control(channel_id, "keepalive", {"answer": False})
    degraded = await env.state_is(channel_id, "degraded")
    assert "keep-alive" in degraded["reason"]
    refused = await env.api.post(
        "/v1/messages",
        json={"to": PEER, "channel_id": channel_id, "type": "text", "text": {"body": "x"}},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["state"] == "degraded"
    await env.control(channel_id, "keepalive", {"answer": True})
    await env.state_is(channel_id, "working")


def device_tokens(directory: Path) -> list[Path]:
    return list(directory.glob("*.token"))


async def test_logout_unlinks_the_phone_and_a_start_pairs_anew(env: Env) -> None:
    channel_id = await env.link()
    assert device_tokens(Path(env.settings.session_state_dir or ""))
    response = await env.api.post(f"/v1/channels/{channel_id}/session/logout")
    assert response.status_code == 200
    view = await env.state_is(channel_id, "logged_out")
    assert view["me"] is None
    assert not device_tokens(Path(env.settings.session_state_dir or ""))
    await env.api.post(f"/v1/channels/{channel_id}/session/start")
    await env.state_is(channel_id, "scan_qr")


async def test_a_template_through_a_web_channel_is_422(env: Env) -> None:
    channel_id = await env.link()
    response = await env.api.post(
        "/v1/messages",
        json={
            "to": PEER,
            "channel_id": channel_id,
            "template": {"name": "hello", "language": {"code": "en_US"}},
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "type"
