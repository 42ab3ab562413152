"""The dashboard's overview (issue 17, point 3) on every store backend: channels with
their queues, failures of the last hour by reason, the webhook backlog and dead letters,
and each problem in red with its reason and its fix."""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import update

from ui_pages import sign_in_with_key
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.store.schema import channels, inbox

if TYPE_CHECKING:
    from conftest import ContractEnv

THRESHOLD = 60.0


@pytest.fixture
async def client(env: ContractEnv, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in as a viewer, over the contract database (channel main)."""
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        run_workers=False,
        stalled_queue_seconds=THRESHOLD,
    )
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://wahub.test") as c:
            key = (await hub.access.create_key(user_name="vic", role="viewer")).key
            assert (await sign_in_with_key(c, key)).status_code == 303
            yield c
    finally:
        await hub.stop()


async def test_a_quiet_hub_shows_its_channel_and_no_problem(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    page = await client.get("/ui")

    assert page.status_code == 200
    assert "All good" in page.text
    assert "main" in page.text
    assert 'class="bad"' not in page.text


async def test_a_stalled_queue_is_red_with_its_reason_and_fix(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    old = time.time() - THRESHOLD - 30
    await env.insert_queued(env.person_chat(1), created_at=old)
    await env.insert_queued(env.person_chat(2))

    page = await client.get("/ui")

    assert page.status_code == 200
    problems = page.text.split('id="problems"', 1)[1].split("</ul>", 1)[0]
    assert "2 queued message(s) and no worker holding the channel" in html.unescape(problems)
    assert "wahub worker" in problems
    channel_row = page.text.split('id="channels"', 1)[1].split("</table>", 1)[0]
    assert '<tr class="bad">' in channel_row
    assert "none: stalled" in channel_row


async def test_failures_of_the_last_hour_are_counted_by_reason(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    now = time.time()
    for n, (code, at) in enumerate(
        [("131026", now - 60), ("131026", now - 120), ("130472", now - 30), ("131026", now - 7200)]
    ):
        await env.insert_queued(
            env.person_chat(n),
            status="failed",
            error_code=code,
            error_title="Message undeliverable" if code == "131026" else "Experiment",
            failed_at=at,
        )

    page = await client.get("/ui")

    failures = page.text.split('id="failures"', 1)[1].split("</table>", 1)[0]
    rows = [r for r in failures.split("<tr") if "<td>" in r]
    assert "131026" in rows[0]
    assert ">2<" in rows[0], "two in the hour; the older one is not"
    assert "Message undeliverable" in rows[0]
    assert "130472" in rows[1]
    assert ">1<" in rows[1]


async def test_dead_letters_and_a_failed_channel_are_problems(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    async with env.db.transaction() as conn:
        await conn.execute(update(channels).values(status="failed"))
        await conn.execute(
            inbox.insert().values(
                provider="cloudapi",
                dedupe_key="d-1",
                headers={},
                body=b"{}",
                received_at=time.time(),
                next_attempt_at=time.time(),
                status="dead",
                attempts=1,
                error="no such channel",
            )
        )

    page = await client.get("/ui")

    problems = html.unescape(page.text.split('id="problems"', 1)[1].split("</ul>", 1)[0])
    assert "1 webhook deliveries failed for good (dead letters)" in problems
    assert f"channel main ({env.channel_id}) is failed" in problems
    assert "wahub channels check main" in problems


async def test_a_channel_name_with_html_is_shown_as_text(
    env: ContractEnv, client: httpx.AsyncClient
) -> None:
    async with env.db.transaction() as conn:
        await conn.execute(update(channels).values(name="<script>alert(1)</script>"))

    page = await client.get("/ui")

    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
