"""The dashboard's groups page (issue 17, point 7) over HTTP on every store backend: the
phone lookup with a number in any form, the sync status with failed groups named, a
group's members, and an agent kept to assigned groups."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import update

from ui_pages import sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import chats, group_members

if TYPE_CHECKING:
    from conftest import ContractEnv

GROUP = "120363000000000009@g.us"
OTHER = "120363000000000010@g.us"


@dataclass
class Groups:
    hub: Hub
    transport: httpx.ASGITransport

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as client:
            key = (await self.hub.access.create_key(user_name=user, role=role)).key
            assert (await sign_in_with_key(client, key)).status_code == 303
            yield client


@pytest.fixture
async def groups(env: ContractEnv, database_url: str) -> AsyncIterator[Groups]:
    """Account "<i>Acme</i>" with GROUP (members: +4915123456789 as admin) and OTHER,
    whose last sync failed; GROUP is assigned to agent ann."""
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    for chat_id, name in ((GROUP, "Acme team"), (OTHER, "Acme board")):
        await hub.channels.register_group(chat_id=chat_id, name=name, channel_id=env.channel_id)
    await hub.accounts.create(name="<i>Acme</i>", group_ids=[GROUP, OTHER])
    await hub.group_sync.drain()
    now = time.time()
    async with env.db.transaction() as conn:
        await conn.execute(
            group_members.insert().values(
                chat_id=GROUP, member_phone="+4915123456789", rank="admin", synced_at=now
            )
        )
        await conn.execute(
            update(chats)
            .where(chats.c.chat_id == GROUP)
            .values(sync_status="success", sync_error=None, last_synced_at=now)
        )
        await conn.execute(
            update(chats)
            .where(chats.c.chat_id == OTHER)
            .values(sync_status="failed", sync_error="provider said 404: not a participant")
        )
    await hub.access.add_member(group_name="support", user_name="ann")
    await hub.access.assign_chat(group_name="support", chat_id=GROUP)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Groups(hub, transport)
    finally:
        await hub.stop()


@pytest.mark.parametrize("typed", ["+49 151 23456789", "0049-151-234-56789", "4915123456789"])
async def test_the_lookup_finds_a_number_typed_in_any_form(groups: Groups, typed: str) -> None:
    async with groups.signed_in("viewer", "vic") as client:
        page = await client.get("/ui/groups", params={"phone": typed})

    assert page.status_code == 200
    results = page.text.split('id="lookup-results"', 1)[1].split("</table>", 1)[0]
    assert "&lt;i&gt;Acme&lt;/i&gt;" in results, "the account, its name as text"
    assert "Acme team" in results
    assert "admin" in results
    assert "+4915123456789: in 1 group of an account" in page.text


async def test_a_lookup_of_something_not_a_number_is_named_and_kept(groups: Groups) -> None:
    async with groups.signed_in("viewer", "vic") as client:
        page = await client.get("/ui/groups", params={"phone": "call me maybe"})

    assert page.status_code == 422
    assert 'id="phone-error"' in page.text
    assert 'value="call me maybe"' in page.text


async def test_the_sync_status_names_failed_groups_with_their_error(groups: Groups) -> None:
    async with groups.signed_in("viewer", "vic") as client:
        page = await client.get("/ui/groups")

    failed = page.text.split('id="failed-syncs"', 1)[1].split("</table>", 1)[0]
    assert "Acme board" in failed
    assert "provider said 404: not a participant" in failed


async def test_an_agent_sees_the_members_of_assigned_groups_only(groups: Groups) -> None:
    async with groups.signed_in("agent", "ann") as client:
        shown = await client.get(f"/ui/groups/{GROUP}")
        hidden = await client.get(f"/ui/groups/{OTHER}")

    assert shown.status_code == 200
    assert "+4915123456789" in shown.text
    assert hidden.status_code == 404
