"""Helpers for tests of the dashboard over HTTP (no browser): the CSRF token of a page,
signing in with a key or a password."""

from __future__ import annotations

import re

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in the first form of ``html``."""
    found = _CSRF.search(html)
    assert found is not None, f"no CSRF field in the page:\n{html[:2000]}"
    return found.group(1)


async def sign_in_form(client: httpx.AsyncClient) -> str:
    """Open the sign-in page (which sets the anonymous session cookie); its CSRF token."""
    page = await client.get("/ui/sign-in")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def sign_in_with_key(client: httpx.AsyncClient, key: str) -> httpx.Response:
    csrf = await sign_in_form(client)
    return await client.post(
        "/ui/sign-in", data={"csrf": csrf, "method": "key", "api_key": key, "next": "/ui"}
    )


async def sign_in_with_password(
    client: httpx.AsyncClient, user: str, password: str
) -> httpx.Response:
    csrf = await sign_in_form(client)
    return await client.post(
        "/ui/sign-in",
        data={"csrf": csrf, "method": "password", "user": user, "password": password},
    )
