"""The dashboard's campaign pages (issue 17, point 6) over HTTP on every store backend:
create from a CSV upload with the per-line report before anything is sent, the funnel
drawn as SVG and served as a live fragment, start/pause/resume/cancel by admins only,
with CSRF, and values from the CSV shown as text."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from ui_pages import csrf_of, sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import messages

if TYPE_CHECKING:
    from conftest import ContractEnv

TEMPLATES = orjson.dumps(
    [{"name": "promo_a", "language": "en", "parameters": ["first_name"]}]
).decode()
SCRIPT = "<script>window.__pwned = 1</script>"
CREATED = re.compile(r'/ui/campaigns/(cmp_[A-Za-z0-9_-]+)/start"')


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

    def audience(self, *extra: str) -> bytes:
        lines = ["phone,first_name", f"{self.env.phone(1)},{SCRIPT}", f"{self.env.phone(2)},Bo"]
        return ("\n".join([*lines, *extra]) + "\n").encode()

    async def queued(self) -> int:
        async with self.env.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(messages))).scalar())


@pytest.fixture
async def ui(env: ContractEnv, database_url: str) -> AsyncIterator[Ui]:
    settings = Settings(
        _env_file=None, database_url=database_url, run_workers=False, max_upload_bytes=4096
    )
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    await hub.channels.add_template(
        env.channel_id, name="promo_a", language="en", body_parameters=1, category="marketing"
    )
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        yield Ui(hub, env, transport)
    finally:
        await hub.stop()


async def _create(
    client: httpx.AsyncClient,
    audience: bytes,
    *,
    filename: str = "people.csv",
    content_type: str = "text/csv",
    templates: str = TEMPLATES,
    start_at: str = "",
) -> httpx.Response:
    page = await client.get("/ui/campaigns")
    return await client.post(
        "/ui/campaigns",
        data={
            "csrf": csrf_of(page.text),
            "name": f"spring {SCRIPT}",
            "templates": templates,
            "start_at": start_at,
        },
        files={"audience": (filename, audience, content_type)},
    )


async def test_an_upload_shows_the_line_report_and_sends_nothing(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        created = await _create(client, ui.audience("not a phone,Cy", f"{ui.env.phone(2)},Again"))

    assert created.status_code == 201, created.text
    report = created.text.split('id="upload-report"', 1)[1].split("</div>", 1)[0]
    assert "2 recipients accepted, 2 lines rejected" in report
    lines = report.split('id="rejected-lines"', 1)[1]
    assert re.search(r">4</td><td>bad_phone<", lines), lines
    assert re.search(r">5</td><td>duplicate<", lines), lines
    assert await ui.queued() == 0, "nothing is sent before Start"
    assert "<script>" not in created.text
    assert "spring &lt;script&gt;" in created.text


async def test_start_then_the_funnel_fragment_shows_the_counts(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        created = await _create(client, ui.audience())
        found = CREATED.search(created.text)
        assert found is not None, created.text
        campaign_id = found.group(1)
        started = await client.post(
            f"/ui/campaigns/{campaign_id}/start", data={"csrf": csrf_of(created.text)}
        )
        await ui.hub.campaigns.dispatch_chunk(campaign_id)
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        fragment = await client.get(f"/ui/campaigns/{campaign_id}/funnel")

    assert started.status_code == 303
    assert 'id="campaign-status">running<' in page.text
    assert "/pause" in page.text
    assert "/start" not in page.text
    assert fragment.status_code == 200
    assert '<div class="funnel" id="funnel"' in fragment.text
    assert 'data-stage="total" data-count="2"' in fragment.text
    assert 'data-stage="queued" data-count="2"' in fragment.text
    assert 'data-stage="sent" data-count="0"' in fragment.text
    # The total's bar is the longest (420 px); queued is all of it.
    assert fragment.text.count('width="420.0"') == 2
    assert "<svg" in fragment.text
    assert 'id="funnel-live"' in page.text


@pytest.mark.parametrize(
    ("filename", "content_type", "body", "status", "reason"),
    [
        ("photo.png", "image/png", b"\x89PNG\r\n", 422, "is not a CSV file"),
        ("people.csv", "text/csv", b"phone\n\xff\xfe\n", 400, "not UTF-8"),
        ("people.csv", "text/csv", b"phone\n" + b"+4915100000000\n" * 400, 413, "over 4096"),
    ],
)
async def test_an_upload_that_is_not_usable_csv_is_refused_with_the_reason(
    ui: Ui, filename: str, content_type: str, body: bytes, status: int, reason: str
) -> None:
    async with ui.signed_in("admin", "root2") as client:
        refused = await _create(client, body, filename=filename, content_type=content_type)

    assert refused.status_code == status, refused.text
    error = refused.text.split('id="audience-error">', 1)[1].split("</p>", 1)[0]
    assert reason in error
    assert "spring &lt;script&gt;" in refused.text, "what was typed is kept"
    assert await ui.hub.campaigns.list_campaigns() == []


async def test_bad_templates_are_named_beside_their_field(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        not_json = await _create(client, ui.audience(), templates="promo_a please")
        unknown = await _create(
            client, ui.audience(), templates='[{"name": "nope", "language": "en"}]'
        )

    assert not_json.status_code == 422
    assert "not valid JSON" in not_json.text.split('id="templates-error">', 1)[1]
    assert unknown.status_code == 422
    assert "not approved" in unknown.text.split('id="templates-error">', 1)[1]
    assert await ui.hub.campaigns.list_campaigns() == []


async def test_a_start_time_schedules_it_and_a_bad_one_is_named(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        bad = await _create(client, ui.audience(), start_at="next tuesday")
        past = await _create(client, ui.audience(), start_at="2020-01-01T09:00")
        scheduled = await _create(client, ui.audience(), start_at="2999-12-24T09:00")

    assert bad.status_code == 422
    assert "not a time" in bad.text.split('id="start_at-error">', 1)[1]
    assert 'value="next tuesday"' in bad.text
    assert past.status_code == 422
    assert "has passed" in past.text.split('id="start_at-error">', 1)[1]
    assert scheduled.status_code == 201
    assert 'id="starts-at">Starts by itself at 2999-12-24 09:00 UTC' in scheduled.text
    [campaign] = await ui.hub.campaigns.list_campaigns()
    assert campaign["start_at"] == datetime(2999, 12, 24, 9, 0, tzinfo=UTC).timestamp()
    assert await ui.queued() == 0


async def test_creating_needs_the_csrf_token(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        refused = await client.post(
            "/ui/campaigns",
            data={"name": "x", "templates": TEMPLATES},
            files={"audience": ("a.csv", ui.audience(), "text/csv")},
        )

    assert refused.status_code == 403
    assert await ui.hub.campaigns.list_campaigns() == []


@pytest.mark.parametrize("role", ["agent", "viewer"])
async def test_others_read_campaigns_but_change_nothing(ui: Ui, role: str) -> None:
    async with ui.signed_in("admin", "root2") as admin:
        created = await _create(admin, ui.audience())
        found = CREATED.search(created.text)
        assert found is not None
        campaign_id = found.group(1)
    async with ui.signed_in(role, "someone") as client:
        listed = await client.get("/ui/campaigns")
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        start = await client.post(
            f"/ui/campaigns/{campaign_id}/start", data={"csrf": csrf_of(listed.text)}
        )
        create = await _create(client, ui.audience())

    assert campaign_id in listed.text
    assert 'id="create-campaign"' not in listed.text
    assert page.status_code == 200
    assert 'id="campaign-actions"' not in page.text
    assert start.status_code == 403
    assert create.status_code == 403
    assert [c["status"] for c in await ui.hub.campaigns.list_campaigns()] == ["scheduled"]


async def test_an_action_the_state_forbids_is_refused(ui: Ui) -> None:
    async with ui.signed_in("admin", "root2") as client:
        created = await _create(client, ui.audience())
        found = CREATED.search(created.text)
        assert found is not None
        campaign_id = found.group(1)
        csrf = csrf_of(created.text)
        cancelled = await client.post(f"/ui/campaigns/{campaign_id}/cancel", data={"csrf": csrf})
        resumed = await client.post(f"/ui/campaigns/{campaign_id}/resume", data={"csrf": csrf})
        unknown = await client.post(f"/ui/campaigns/{campaign_id}/explode", data={"csrf": csrf})

    assert cancelled.status_code == 303
    assert resumed.status_code == 409
    assert "cannot resume" in resumed.text
    assert unknown.status_code == 404
