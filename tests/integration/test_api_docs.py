"""``/docs`` works offline: the page and everything it loads come from this server."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx


class References(HTMLParser):
    """Every ``src`` and ``href`` of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(value for name, value in attrs if name in ("src", "href") and value)


async def docs_references(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    response = await client.get("/docs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    parser = References()
    parser.feed(response.text)
    return response.text, parser.urls


async def test_docs_page_references_no_other_host(client: httpx.AsyncClient) -> None:
    html, urls = await docs_references(client)

    assert len(urls) == 3, urls  # the script, the style sheet, the icon
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{url} is on another host"
    assert "://" not in html, "no absolute URL anywhere in the page (scripts included)"
    assert "url: '/openapi.json'" in html


async def test_every_asset_the_docs_page_loads_is_served_without_a_key(
    client: httpx.AsyncClient,
) -> None:
    _, urls = await docs_references(client)

    for url in urls:
        response = await client.get(urljoin(str(client.base_url) + "/docs", url))
        assert response.status_code == 200, f"{url}: {response.status_code}"
        assert len(response.content) > 0, url
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert b"SwaggerUIBundle" in script.content


async def test_the_openapi_document_the_page_loads_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1"), "Swagger UI 5 renders 3.1"
    assert "/docs" not in response.json()["paths"], "the docs page is not an API route"


async def test_redoc_is_off_since_it_would_load_from_a_cdn(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
