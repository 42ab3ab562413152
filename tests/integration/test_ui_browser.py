"""The dashboard in a real browser (issue 17): Debian's chromium driven by Playwright
against ``wahub serve --sandbox`` running as its own process on a free port.

One browser for the whole session, one server for this module; each flow starts from a
fresh browser context (no cookies) and saves a screenshot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Page, expect

from chromium import chromium_path, screenshot_dir
from multiprocess import Processes, wait_http
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.runtime import Hub
from wahub.store.schema import group_members

T = TypeVar("T")

# In a pytest process of their own (make test): see the marker's description.
pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
HTML_NAME = "<script>window.__pwned = 1</script>"
LOOKUP_GROUP = "120363000000000042@g.us"
LOOKUP_PHONE = "+4915199887766"


@dataclass(frozen=True)
class Server:
    url: str
    sandbox_url: str
    keys: dict[str, str]
    shots: Path

    def api(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Call the hub's API as the admin (outside the browser)."""
        headers = {"Authorization": f"Bearer {self.keys['admin']}", **(headers or {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


async def _prepare(db_url: str) -> dict[str, str]:
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        keys = {
            role: (await hub.access.create_key(user_name=f"{role}-user", role=role)).key
            for role in ("admin", "agent", "viewer")
        }
        await hub.passwords.set_password(user_name="bea", password=PASSWORD, role="agent")
        channel = await hub.channels.create(
            name=HTML_NAME,
            phone_number_id="4242424242",
            access_token="never-used",
            base_url="http://127.0.0.1:9",
        )
        await hub.channels.register_group(
            chat_id=LOOKUP_GROUP, name="Acme team", channel_id=channel["id"]
        )
        await hub.accounts.create(name="Acme", group_ids=[LOOKUP_GROUP])
        await hub.group_sync.drain()  # its sync fails (no directory): members come below
        async with hub.db.transaction() as conn:
            await conn.execute(
                group_members.insert().values(
                    chat_id=LOOKUP_GROUP, member_phone=LOOKUP_PHONE, rank="admin", synced_at=1.0
                )
            )
        return keys
    finally:
        await hub.stop()


def outside_playwright_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end on a thread of its own: Playwright's sync API keeps an
    event loop running in this thread, where ``asyncio.run`` is refused."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch arguments, pointed at Debian's chromium."""
    return {**browser_type_launch_args, "executable_path": chromium_path()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    chromium_path()  # skip or fail before starting anything
    tmp = tmp_path_factory.mktemp("ui")
    db_url = f"sqlite:///{tmp / 'wahub.db'}"
    keys = outside_playwright_loop(_prepare(db_url))
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env.update(WAHUB_DATABASE_URL=db_url, WAHUB_SECRET_KEY=os.environ["WAHUB_SECRET_KEY"])
    procs = Processes(tmp)
    args = ["serve", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port)]
    serve = procs.spawn("serve", args, env)
    url = f"http://127.0.0.1:{port}"
    try:
        outside_playwright_loop(wait_http(f"{url}/healthz", timeout=120))
        yield Server(
            url, f"http://127.0.0.1:{sandbox_port}", keys, screenshot_dir(tmp / "screenshots")
        )
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        finally:
            procs.kill_all()


def sign_in_with_key(page: Page, server: Server, role: str) -> None:
    page.goto(f"{server.url}/ui/sign-in")
    page.fill("#api_key", server.keys[role])
    page.click("#sign-in-key button[type=submit]")


def test_sign_in_with_a_key_see_the_overview_and_sign_out(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/")  # a browser at the root lands on the dashboard's sign-in

    expect(page).to_have_url(f"{server.url}/ui/sign-in")
    page.fill("#api_key", server.keys["admin"])
    page.click("#sign-in-key button[type=submit]")

    expect(page).to_have_url(f"{server.url}/ui")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("header .who")).to_contain_text("admin-user")
    # A channel named with HTML shows the HTML as text, and nothing of it ran.
    expect(page.locator("#channels")).to_contain_text(HTML_NAME)
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=server.shots / "overview.png", full_page=True)

    page.click("header .who button[type=submit]")

    expect(page).to_have_url(f"{server.url}/ui/sign-in")
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/sign-in")


def test_a_wrong_password_is_named_then_the_right_one_signs_in(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    page.fill("#user", "bea")
    page.fill("#password", "not the password")
    page.click("#sign-in-password button[type=submit]")

    expect(page.locator("#password-error")).to_have_text("wrong user name or password")
    expect(page.locator("#user")).to_have_value("bea")
    page.screenshot(path=server.shots / "sign-in-error.png", full_page=True)

    page.fill("#password", PASSWORD)
    page.click("#sign-in-password button[type=submit]")

    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("header .who")).to_contain_text("bea")
    expect(page.locator("header .who .role")).to_have_text("agent")


def conversation_with(server: Server, phone: str) -> str:
    """Have ``phone`` write to the sandbox channel (a signed inbound webhook from the
    sandbox); the id of the conversation it opens, once the hub has processed it."""
    emitted = httpx.post(
        f"{server.sandbox_url}/_sandbox/inbound",
        json={"provider": "cloudapi", "count": 1, "kinds": ["text"], "from": [phone]},
        timeout=30,
    )
    assert emitted.status_code == 200, emitted.text
    chat_id = phone.lstrip("+") + "@s.whatsapp.net"
    for _ in range(300):  # the inbox processor runs within a second; bounded, not timed
        rows = server.api("GET", "/v1/conversations").json()["data"]
        found = [r["id"] for r in rows if r["chat_id"] == chat_id]
        if found:
            return str(found[0])
        time.sleep(0.1)
    raise AssertionError(f"no conversation for {phone} after its inbound message")


def test_a_reply_from_the_inbox_ticks_sent_delivered_read_live(page: Page, server: Server) -> None:
    conversation = conversation_with(server, "+4915112340001")
    # Paused, the channel keeps the reply queued: the page shows it waiting, and every
    # status after that can only reach the page live.
    assert server.api("PATCH", "/v1/channels/sandbox", json={"paused": True}).status_code == 200
    sign_in_with_key(page, server, "admin")
    page.goto(f"{server.url}/ui/inbox")
    page.click(f'tr[data-conversation-id="{conversation}"] a')
    page.fill("#text", "Your order ships today <b>for sure</b>")
    page.click("#reply-text button[type=submit]")

    tick = page.locator("#thread .bubble.out .tick").last
    expect(tick).to_have_attribute("data-status", "queued")
    expect(page.locator("#thread .bubble.out .body").last).to_have_text(
        "Your order ships today <b>for sure</b>"
    )
    page.evaluate("window.__sameDocument = true")

    assert server.api("PATCH", "/v1/channels/sandbox", json={"paused": False}).status_code == 200

    expect(tick).to_have_attribute("data-status", "read", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True, "the ticks changed without a reload"
    page.screenshot(path=server.shots / "thread.png", full_page=True)


def test_an_agent_cannot_open_an_unassigned_chat_by_its_url(page: Page, server: Server) -> None:
    hidden = conversation_with(server, "+4915112340002")
    sign_in_with_key(page, server, "agent")

    page.goto(f"{server.url}/ui/inbox")
    expect(page.locator("h1")).to_have_text("Inbox")
    expect(page.locator(f'tr[data-conversation-id="{hidden}"]')).to_have_count(0)

    answer = page.goto(f"{server.url}/ui/inbox/{hidden}")

    assert answer is not None
    assert answer.status == 404
    expect(page.locator(".error")).to_contain_text(f"no conversation {hidden}")


def test_the_messages_log_filters_by_chat_and_opens_a_message(page: Page, server: Server) -> None:
    sent = server.api(
        "POST",
        "/v1/messages",
        json={"to": "+4915112340003", "text": {"body": "log me"}},
        headers={"Idempotency-Key": "ui-browser-log-1"},
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]
    sign_in_with_key(page, server, "viewer")

    page.goto(f"{server.url}/ui/messages")
    page.fill("#chat", "+49 151 1234 0003")  # any form of the number
    page.click("#filters button[type=submit]")

    rows = page.locator("#messages tbody tr")
    expect(rows).to_have_count(1)
    page.click(f'tr[data-message-id="{message_id}"] a')
    expect(page.locator("h1")).to_contain_text(message_id)
    expect(page.locator("#history")).to_contain_text("queued")
    expect(page.locator("#retry")).to_have_count(0)  # a viewer changes nothing
    page.screenshot(path=server.shots / "message.png", full_page=True)


def test_the_lookup_finds_a_number_typed_any_way(page: Page, server: Server) -> None:
    sign_in_with_key(page, server, "agent")
    page.goto(f"{server.url}/ui/groups")
    page.fill("#phone", "0049 (151) 998-877-66")
    page.click("#lookup button[type=submit]")

    expect(page.locator("#lookup-summary")).to_contain_text(f"{LOOKUP_PHONE}: in 1 group")
    expect(page.locator("#lookup-results")).to_contain_text("Acme team")
    page.screenshot(path=server.shots / "lookup.png", full_page=True)

    page.fill("#phone", "not a phone")
    page.click("#lookup button[type=submit]")
    expect(page.locator("#phone-error")).to_be_visible()
    expect(page.locator("#phone")).to_have_value("not a phone")


def test_an_admin_creates_a_key_shown_once_and_revokes_it(page: Page, server: Server) -> None:
    sign_in_with_key(page, server, "admin")
    page.click("nav a[href='/ui/operations']")
    page.fill("#key-user", "new-agent")
    page.select_option("#key-role", "agent")
    page.click("#create-key button[type=submit]")

    key = page.locator("#created-key code").inner_text()
    assert key.startswith("wh_")
    assert (
        httpx.get(
            f"{server.url}/v1/messages", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).status_code
        == 200
    )

    page.goto(f"{server.url}/ui/operations")
    expect(page.locator("#created-key")).to_have_count(0)  # shown once
    row = page.locator("#keys tr", has_text="new-agent")
    row.locator("button", has_text="Revoke").click()

    expect(page.locator("#keys tr", has_text="new-agent")).to_contain_text("revoked")
    page.screenshot(path=server.shots / "operations.png", full_page=True)  # no secret on it
    assert (
        httpx.get(
            f"{server.url}/v1/messages", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).status_code
        == 401
    )


def test_a_csv_campaign_with_a_bad_line_is_started_and_its_funnel_fills_live(
    page: Page, server: Server
) -> None:
    audience = "\n".join(
        ["phone,order", f"+4915112340011,{HTML_NAME}", "not a phone,B-2", "+4915112340012,B-3"]
    )
    sign_in_with_key(page, server, "admin")
    page.click("nav a[href='/ui/campaigns']")
    page.fill("#campaign-name", "spring")
    page.select_option("#campaign-channel", label="sandbox")
    page.fill(
        "#campaign-templates",
        '[{"name": "order_update", "language": "en_US", "parameters": ["order"]}]',
    )
    page.set_input_files(
        "#campaign-audience",
        {"name": "people.csv", "mimeType": "text/csv", "buffer": audience.encode()},
    )
    page.click("#create-campaign button[type=submit]")

    # The report comes before anything is sent: two accepted, line 3 refused with its reason.
    expect(page.locator("#upload-report")).to_contain_text("2 recipients accepted, 1 line rejected")
    expect(page.locator("#rejected-lines")).to_contain_text("bad_phone")
    expect(page.locator('[data-stage="queued"]')).to_have_attribute("data-count", "0")
    assert page.evaluate("window.__pwned") is None
    page.locator("#campaign-actions button", has_text="Start").click()

    expect(page.locator("#campaign-status")).to_have_text("running")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator('#funnel-live [data-stage="delivered"]').first).to_have_attribute(
        "data-count", "2", timeout=60_000
    )
    assert page.evaluate("window.__sameDocument") is True, "the funnel changed without a reload"
    page.screenshot(path=server.shots / "campaign.png", full_page=True)


def test_a_web_channel_pairs_by_qr_and_flips_to_working_live(page: Page, server: Server) -> None:
    sign_in_with_key(page, server, "admin")
    page.click("nav a[href='/ui/channels']")
    page.select_option("#channel-kind", "web")
    page.fill("#channel-name", "front desk")
    page.fill("#channel-base_url", server.sandbox_url)
    page.click("#add-channel button[type=submit]")

    qr = page.locator("#qr")
    expect(qr).to_be_visible(timeout=60_000)  # the session process shows the first QR
    assert page.evaluate("document.getElementById('qr').naturalWidth") > 0, "the PNG loaded"
    page.screenshot(path=server.shots / "pairing.png", full_page=True)
    page.evaluate("window.__sameDocument = true")
    channel_id = page.url.rsplit("/", 1)[1]

    scanned = httpx.post(
        f"{server.sandbox_url}/_sandbox/web/{channel_id}/scan",
        json={"phone": "+4915112340099"},
        timeout=30,
    )
    assert scanned.status_code == 200, scanned.text

    expect(page.locator("#session-state")).to_have_text("working", timeout=60_000)
    expect(page.locator("#our-number")).to_have_text("+4915112340099")
    assert page.evaluate("window.__sameDocument") is True, "it flipped without a reload"
    page.screenshot(path=server.shots / "paired.png", full_page=True)
