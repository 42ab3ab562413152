"""The session process downloads a web send's media itself (engines never fetch URLs):
with a size cap, a timeout, and WhatsApp's accepted types, each refusal a clear code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from wahub.domain.errors import PermanentProviderError, RetryableProviderError
from wahub.embedded import free_port
from wahub.providers.web.provider import MediaFetcher

CAP = 10_000


@pytest.fixture
async def files() -> AsyncIterator[str]:
    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "photo.jpg":
            return web.Response(body=b"\xff\xd8" + b"x" * 100, content_type="image/jpeg")
        if name == "huge.jpg":
            return web.Response(body=b"x" * (CAP + 1), content_type="image/jpeg")
        if name == "streamed.jpg":
            # No Content-Length: the cap must hold while reading.
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(3):
                await response.write(b"x" * (CAP // 2))
            return response
        if name == "page.html":
            return web.Response(text="<html></html>", content_type="text/html")
        if name == "broken":
            return web.Response(status=503)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def fetcher() -> AsyncIterator[MediaFetcher]:
    media = MediaFetcher(max_bytes=CAP, timeout_s=10.0)
    yield media
    await media.close()


async def test_a_file_within_the_cap_comes_with_its_mimetype(
    files: str, fetcher: MediaFetcher
) -> None:
    data, mimetype = await fetcher.fetch(f"{files}/photo.jpg", "image")
    assert data.startswith(b"\xff\xd8")
    assert mimetype == "image/jpeg"


@pytest.mark.parametrize("name", ["huge.jpg", "streamed.jpg"])
async def test_a_file_over_the_cap_fails_the_message_as_media_too_large(
    files: str, fetcher: MediaFetcher, name: str
) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        await fetcher.fetch(f"{files}/{name}", "image")
    assert refused.value.provider_code == "media_too_large"


async def test_a_type_whatsapp_refuses_for_the_kind_is_media_type_refused(
    files: str, fetcher: MediaFetcher
) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        await fetcher.fetch(f"{files}/page.html", "image")
    assert refused.value.provider_code == "media_type_refused"
    data, _ = await fetcher.fetch(f"{files}/page.html", "document")
    assert data == b"<html></html>"


async def test_a_missing_file_is_permanent_and_a_server_error_retryable(
    files: str, fetcher: MediaFetcher
) -> None:
    with pytest.raises(PermanentProviderError) as missing:
        await fetcher.fetch(f"{files}/nothing", "image")
    assert missing.value.provider_code == "media_unavailable"
    with pytest.raises(RetryableProviderError):
        await fetcher.fetch(f"{files}/broken", "image")
