"""The dashboard's sign-in (issue 17, point 1), over HTTP on every store backend: API key
or password, a signed HttpOnly SameSite=Lax cookie, CSRF on every form, sign-out, and
a forged, expired or ended session sent back to the sign-in page, never a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from ui_pages import csrf_of, sign_in_form, sign_in_with_key, sign_in_with_password
from wahub.app import create_app
from wahub.config import Settings
from wahub.runtime import Hub
from wahub.ui.sessions import COOKIE_NAME, SIGNING_PURPOSE

if TYPE_CHECKING:
    from conftest import ContractEnv

PASSWORD = "correct horse battery"


@dataclass
class Dashboard:
    hub: Hub
    client: httpx.AsyncClient


@pytest.fixture
async def dash(env: ContractEnv, database_url: str) -> AsyncIterator[Dashboard]:
    """The app over the contract database, and a client that keeps cookies but does not
    follow redirects (the tests look at each one)."""
    settings = Settings(_env_file=None, database_url=database_url, run_workers=False)
    hub = Hub.build(settings)
    await hub.start(workers=False, realtime=False)
    transport = httpx.ASGITransport(app=create_app(settings, hub=hub), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://wahub.test") as c:
            yield Dashboard(hub, c)
    finally:
        await hub.stop()


async def new_key(hub: Hub, role: str = "admin", user: str = "ada") -> str:
    return (await hub.access.create_key(user_name=user, role=role)).key


async def test_a_browser_at_the_root_is_sent_to_the_dashboard(dash: Dashboard) -> None:
    page = await dash.client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})

    assert page.status_code == 307
    assert page.headers["location"] == "/ui"


async def test_a_json_client_at_the_root_still_gets_the_health_answer(dash: Dashboard) -> None:
    for accept in ("application/json", "*/*", "application/json, text/html"):
        answer = await dash.client.get("/", headers={"Accept": accept})

        assert answer.status_code == 200, accept
        assert answer.json() == {"message": "wahub is running", "status": "ok"}


async def test_the_dashboard_without_a_session_sends_to_the_sign_in_page(
    dash: Dashboard,
) -> None:
    page = await dash.client.get("/ui")

    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in"


async def test_signing_in_with_a_key_sets_a_signed_httponly_lax_cookie(dash: Dashboard) -> None:
    key = await new_key(dash.hub)

    answer = await sign_in_with_key(dash.client, key)

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/ui" in cookie
    assert key not in cookie, "the cookie must not carry the key itself"
    overview = await dash.client.get("/ui")
    assert overview.status_code == 200
    assert "ada" in overview.text
    assert "Sign out" in overview.text


async def test_a_wrong_key_is_named_beside_its_field(dash: Dashboard) -> None:
    answer = await sign_in_with_key(dash.client, "wh_00000000_not-a-key")

    assert answer.status_code == 401
    assert 'id="api_key-error"' in answer.text
    assert "unknown or revoked" in answer.text
    assert (await dash.client.get("/ui")).status_code == 303


async def test_a_form_without_the_csrf_token_is_refused(dash: Dashboard) -> None:
    key = await new_key(dash.hub)
    await sign_in_form(dash.client)

    for csrf in (None, "forged-token"):
        data = {"method": "key", "api_key": key}
        if csrf is not None:
            data["csrf"] = csrf
        answer = await dash.client.post("/ui/sign-in", data=data)

        assert answer.status_code == 403, answer.text
        assert "security token" in answer.text
    assert (await dash.client.get("/ui")).status_code == 303, "no session was opened"


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(dash: Dashboard) -> None:
    await sign_in_with_key(dash.client, await new_key(dash.hub))
    overview = await dash.client.get("/ui")

    refused = await dash.client.post("/ui/sign-out", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await dash.client.get("/ui")).status_code == 200, "a refused sign-out changes nothing"

    signed_out = await dash.client.post("/ui/sign-out", data={"csrf": csrf_of(overview.text)})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/ui/sign-in"
    assert (await dash.client.get("/ui")).status_code == 303


@pytest.mark.parametrize("cookie", ["garbage", "eyJjIjoieCIsImsiOiJrZXlfMSJ9.AAAA.BBBB", ""])
async def test_a_forged_cookie_sends_to_the_sign_in_page(dash: Dashboard, cookie: str) -> None:
    dash.client.cookies.set(COOKIE_NAME, cookie, path="/ui")

    page = await dash.client.get("/ui")

    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in"
    assert (await dash.client.get("/ui/sign-in")).status_code == 200


async def test_an_expired_cookie_sends_to_the_sign_in_page(dash: Dashboard) -> None:
    key = await new_key(dash.hub)
    key_id = (await dash.hub.access.authenticate(key)).key_id
    lifetime = dash.hub.settings.ui_session_hours * 3600

    class SignedLongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - lifetime - 60)

    # A cookie we signed ourselves, with our secret, but older than a session lives.
    old = URLSafeTimedSerializer(
        dash.hub.channels.cipher.derive_key(SIGNING_PURPOSE),
        salt="wahub-ui-session",
        signer=SignedLongAgo,
    ).dumps({"c": "token", "k": key_id})
    dash.client.cookies.set(COOKIE_NAME, str(old), path="/ui")

    page = await dash.client.get("/ui")

    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in"


async def test_revoking_the_key_ends_its_sessions(dash: Dashboard) -> None:
    key = await new_key(dash.hub)
    await sign_in_with_key(dash.client, key)
    assert (await dash.client.get("/ui")).status_code == 200

    await dash.hub.access.revoke_key((await dash.hub.access.authenticate(key)).key_id)

    page = await dash.client.get("/ui")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in"


async def test_signing_in_with_a_password_and_a_new_password_ends_the_session(
    dash: Dashboard,
) -> None:
    await dash.hub.passwords.set_password(user_name="bea", password=PASSWORD, role="viewer")

    answer = await sign_in_with_password(dash.client, "bea", PASSWORD)

    assert answer.status_code == 303, answer.text
    overview = await dash.client.get("/ui")
    assert overview.status_code == 200
    assert "bea" in overview.text
    assert "viewer" in overview.text
    await dash.hub.passwords.set_password(user_name="bea", password=PASSWORD + "!", role="viewer")
    assert (await dash.client.get("/ui")).status_code == 303


async def test_a_wrong_password_is_named_and_the_user_name_kept(dash: Dashboard) -> None:
    await dash.hub.passwords.set_password(user_name="bea", password=PASSWORD, role="agent")

    answer = await sign_in_with_password(dash.client, "bea", "wrong password")

    assert answer.status_code == 401
    assert 'id="password-error"' in answer.text
    assert 'value="bea"' in answer.text, "what was typed is kept"
    assert "wrong password" not in answer.text, "never the password"


async def test_missing_fields_are_named_beside_them(dash: Dashboard) -> None:
    answer = await sign_in_with_password(dash.client, "", "")

    assert answer.status_code == 422
    assert 'id="user-error"' in answer.text
    assert 'id="password-error"' in answer.text


async def test_after_sign_in_the_browser_goes_where_it_was_headed_on_this_site_only(
    dash: Dashboard,
) -> None:
    key = await new_key(dash.hub)
    for target, expected in (("/ui?x=1", "/ui?x=1"), ("https://evil.test/ui", "/ui")):
        dash.client.cookies.clear()
        csrf = await sign_in_form(dash.client)
        answer = await dash.client.post(
            "/ui/sign-in", data={"csrf": csrf, "method": "key", "api_key": key, "next": target}
        )

        assert answer.headers["location"] == expected
