"""The dashboard's channel pages (issue 17, point 3) over HTTP on every store backend:
the list with states, adding each kind (a bad field named, the token never sent back),
a web channel's pairing panel (the QR PNG while one is shown, then "working" with our
number), pause/resume and session actions by admins only, with CSRF."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import update

from ui_pages import csrf_of, sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import channels

if TYPE_CHECKING:
    from conftest import ContractEnv

SCRIPT = "<script>window.__pwned = 1</script>"


@dataclass
class Ui:
    hub: Hub
    env: ContractEnv
    transport: httpx.ASGITransport

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as client:
            key = (await self.hub.access.create_key(user_name=user, role=role)).key
            assert (await sign_in_with_key(client, key)).status_code == 303
            yield client

    async def set_session(self, channel_id: str, **values: Any) -> None:
        """Play the session process: write the state it would have written."""
        async with self.env.db.transaction() as conn:
            await conn.execute(update(channels).where(channels.c.id == channel_id).values(values))


@pytest.fixture
async def ui(env: ContractEnv, database_url: str) -> AsyncIterator[Ui]:
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Ui(hub, env, transport)
    finally:
        await hub.stop()


async def _add(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    page = await client.get("/ui/channels")
    return await client.post("/ui/channels", data={"csrf": csrf_of(page.text), **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "cloudapi", "access_token": "EAAG-token", "phone_number_id": "1234567"},
        {"kind": "whapi", "access_token": "whapi-token", "phone_number": "+4915123456789"},
        {"kind": "periskope", "access_token": "psk-key", "phone_number": "+4915123456789"},
        {"kind": "web"},
    ],
)
async def test_an_admin_adds_each_kind(ui: Ui, fields: dict[str, str]) -> None:
    async with ui.signed_in("admin", "root2") as client:
        added = await _add(client, name=SCRIPT, **fields)
        page = await client.get(added.headers["location"])
        listed = await client.get("/ui/channels")

    assert added.status_code == 303
    channel = next(c for c in await ui.hub.channels.list_all() if c["name"] == SCRIPT)
    assert channel["kind"] == fields["kind"]
    assert added.headers["location"] == f"/ui/channels/{channel['id']}"
    assert page.status_code == 200
    assert ("pairing-live" in page.text) == (fields["kind"] == "web")
    assert "<script>" not in listed.text
    assert "&lt;script&gt;" in listed.text


async def test_a_bad_field_is_named_and_the_token_not_sent_back(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        no_id = await _add(client, kind="cloudapi", name="shop", access_token="sekrit-token")
        no_token = await _add(client, kind="whapi", name="shop2", phone_number="+4915123456789")

    assert no_id.status_code == 422
    assert 'id="phone_number_id-error"' in no_id.text
    assert 'value="shop"' in no_id.text, "what was typed is kept"
    assert "sekrit-token" not in no_id.text
    assert no_token.status_code == 422
    assert 'id="access_token-error"' in no_token.text
    assert [c["name"] for c in await ui.hub.channels.list_all()] == ["main"]


async def test_the_pairing_panel_shows_the_qr_then_working_with_our_number(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        added = await _add(client, kind="web", name="phone")
        channel_id = added.headers["location"].rsplit("/", 1)[1]
        starting = await client.get(f"/ui/channels/{channel_id}/pairing")
        no_qr = await client.get(f"/ui/channels/{channel_id}/qr.png")
        await ui.set_session(
            channel_id, session_state="scan_qr", qr="2@first", qr_expires_at=time.time() + 60
        )
        first = await client.get(f"/ui/channels/{channel_id}/pairing")
        png = await client.get(f"/ui/channels/{channel_id}/qr.png")
        await ui.set_session(channel_id, qr="2@second")
        rotated = await client.get(f"/ui/channels/{channel_id}/pairing")
        await ui.set_session(
            channel_id,
            session_state="working",
            qr=None,
            me_phone="+4915199990000",
            last_keepalive_at=time.time(),
        )
        working = await client.get(f"/ui/channels/{channel_id}/pairing")
        listed = await client.get("/ui/channels")

    assert 'id="qr"' not in starting.text
    assert no_qr.status_code == 409
    assert 'id="session-state">scan_qr<' in first.text
    assert f'src="/ui/channels/{channel_id}/qr.png?v=' in first.text
    assert png.status_code == 200
    assert png.content.startswith(b"\x89PNG")
    version = first.text.split("qr.png?v=", 1)[1].split('"', 1)[0]
    assert f"qr.png?v={version}" not in rotated.text, "a new QR gets a new address"
    assert 'id="session-state">working<' in working.text
    assert 'id="our-number">+4915199990000<' in working.text
    assert 'id="qr"' not in working.text
    assert "+4915199990000" in listed.text


async def test_pause_resume_and_logout(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        added = await _add(client, kind="web", name="phone")
        channel_id = added.headers["location"].rsplit("/", 1)[1]
        page = await client.get(added.headers["location"])
        csrf = csrf_of(page.text)
        paused = await client.post(f"/ui/channels/{channel_id}/pause", data={"csrf": csrf})
        after_pause = (await ui.hub.channels.get(channel_id))["paused"]
        await client.post(f"/ui/channels/{channel_id}/resume", data={"csrf": csrf})
        after_resume = (await ui.hub.channels.get(channel_id))["paused"]
        await client.post(f"/ui/channels/{channel_id}/logout", data={"csrf": csrf})
        session = await ui.hub.web_sessions.status(channel_id)
        not_web = await client.post(f"/ui/channels/{ui.env.channel_id}/logout", data={"csrf": csrf})
        no_csrf = await client.post(f"/ui/channels/{channel_id}/pause")

    assert paused.status_code == 303
    assert (after_pause, after_resume) == (True, False)
    assert session["desired"] == "stopped"
    assert not_web.status_code == 404
    assert no_csrf.status_code == 403
    assert (await ui.hub.channels.get(channel_id))["paused"] is False


async def test_a_pairing_code_for_a_number_we_cannot_read_is_named_and_kept(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        added = await _add(client, kind="web", name="phone")
        page = await client.get(added.headers["location"])
        refused = await client.post(
            f"{added.headers['location']}/pairing-code",
            data={"csrf": csrf_of(page.text), "phone": "call me"},
        )

    assert refused.status_code == 422
    assert 'id="phone-error"' in refused.text
    assert 'value="call me"' in refused.text


@pytest.mark.parametrize("role", ["agent", "viewer"])
async def test_others_see_channels_but_change_nothing(ui: Ui, role: str) -> None:
    async with ui.signed_in(role, "someone") as client:
        listed = await client.get("/ui/channels")
        page = await client.get(f"/ui/channels/{ui.env.channel_id}")
        csrf = csrf_of(listed.text)
        paused = await client.post(f"/ui/channels/{ui.env.channel_id}/pause", data={"csrf": csrf})
        added = await client.post(
            "/ui/channels", data={"csrf": csrf, "kind": "web", "name": "mine"}
        )
        qr = await client.get(f"/ui/channels/{ui.env.channel_id}/qr.png")

    assert ui.env.channel_id in listed.text
    assert 'id="add-channel"' not in listed.text
    assert page.status_code == 200
    assert 'id="channel-actions"' not in page.text
    assert (paused.status_code, added.status_code, qr.status_code) == (403, 403, 403)
    assert (await ui.hub.channels.get(ui.env.channel_id))["paused"] is False
    assert [c["name"] for c in await ui.hub.channels.list_all()] == ["main"]
