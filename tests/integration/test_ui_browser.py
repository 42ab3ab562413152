"""The dashboard in a real browser (issue 17): Debian's chromium driven by Playwright
against ``wahub serve --sandbox`` running as its own process on a free port.

One browser for the whole session, one server for this module; each flow starts from a
fresh browser context (no cookies) and saves a screenshot.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, expect

from chromium import chromium_path, screenshot_dir
from multiprocess import Processes, wait_http
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.runtime import Hub

T = TypeVar("T")

PASSWORD = "correct horse battery"
HTML_NAME = "<script>window.__pwned = 1</script>"


@dataclass(frozen=True)
class Server:
    url: str
    keys: dict[str, str]
    shots: Path


async def _prepare(db_url: str) -> dict[str, str]:
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        keys = {
            role: (await hub.access.create_key(user_name=f"{role}-user", role=role)).key
            for role in ("admin", "agent", "viewer")
        }
        await hub.passwords.set_password(user_name="bea", password=PASSWORD, role="agent")
        await hub.channels.create(
            name=HTML_NAME,
            phone_number_id="4242424242",
            access_token="never-used",
            base_url="http://127.0.0.1:9",
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
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env.update(WAHUB_DATABASE_URL=db_url, WAHUB_SECRET_KEY=os.environ["WAHUB_SECRET_KEY"])
    procs = Processes(tmp)
    serve = procs.spawn("serve", ["serve", "--sandbox", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        outside_playwright_loop(wait_http(f"{url}/healthz", timeout=120))
        yield Server(url, keys, screenshot_dir(tmp / "screenshots"))
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
