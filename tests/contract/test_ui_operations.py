"""The dashboard's operations page (issue 17, point 8) over HTTP on every store backend:
API keys created (shown once) and revoked by admins only, with CSRF."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from ui_pages import csrf_of, sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.domain.errors import AuthenticationFailed
from wahub.runtime import Hub

if TYPE_CHECKING:
    from conftest import ContractEnv

KEY = re.compile(r'<code class="secret">(wh_[^<]+)</code>')


@dataclass
class Ops:
    hub: Hub
    transport: httpx.ASGITransport

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as client:
            key = (await self.hub.access.create_key(user_name=user, role=role)).key
            assert (await sign_in_with_key(client, key)).status_code == 303
            yield client


@pytest.fixture
async def ops(env: ContractEnv, database_url: str) -> AsyncIterator[Ops]:
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Ops(hub, transport)
    finally:
        await hub.stop()


async def test_an_admin_creates_a_key_shown_once_then_revokes_it(ops: Ops) -> None:
    async with ops.signed_in("admin", "root2") as client:
        page = await client.get("/ui/operations")
        created = await client.post(
            "/ui/operations/keys",
            data={"csrf": csrf_of(page.text), "user": "<b>new</b> agent", "role": "agent"},
        )
        found = KEY.search(created.text)
        assert found is not None, created.text
        key = found.group(1)
        actor = await ops.hub.access.authenticate(key)
        later = await client.get("/ui/operations")
        revoked = await client.post(
            f"/ui/operations/keys/{actor.key_id}/revoke", data={"csrf": csrf_of(later.text)}
        )

    assert created.status_code == 200
    assert (actor.user_name, actor.role.value) == ("<b>new</b> agent", "agent")
    assert "&lt;b&gt;new&lt;/b&gt; agent" in created.text
    assert key not in later.text, "shown once: never again"
    assert f"wh_{key.split('_')[1]}_" in later.text, "the list shows the prefix"
    assert revoked.status_code == 303
    with pytest.raises(AuthenticationFailed):
        await ops.hub.access.authenticate(key)


async def test_a_bad_field_is_named_and_kept(ops: Ops) -> None:
    async with ops.signed_in("admin", "root2") as client:
        page = await client.get("/ui/operations")
        refused = await client.post(
            "/ui/operations/keys", data={"csrf": csrf_of(page.text), "user": "", "role": "agent"}
        )

    assert refused.status_code == 422
    assert 'id="user-error"' in refused.text
    assert KEY.search(refused.text) is None


async def test_creating_a_key_needs_the_csrf_token(ops: Ops) -> None:
    async with ops.signed_in("admin", "root2") as client:
        refused = await client.post("/ui/operations/keys", data={"user": "x", "role": "admin"})

    assert refused.status_code == 403
    assert [k for k in await ops.hub.access.list_keys() if k["user_name"] == "x"] == []


@pytest.mark.parametrize("role", ["agent", "viewer"])
async def test_only_admins_reach_operations(ops: Ops, role: str) -> None:
    async with ops.signed_in(role, "someone") as client:
        overview = await client.get("/ui")
        page = await client.get("/ui/operations")
        forced = await client.post(
            "/ui/operations/keys",
            data={"csrf": csrf_of(overview.text), "user": "me", "role": "admin"},
        )

    assert 'href="/ui/operations"' not in overview.text
    assert page.status_code == 403
    assert forced.status_code == 403
    assert [k for k in await ops.hub.access.list_keys() if k["user_name"] == "me"] == []
