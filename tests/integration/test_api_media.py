"""``POST /v1/media`` and ``GET /v1/media/{id}`` over HTTP: a file is judged by its bytes,
bad uploads are refused naming the reason, and only who may see a file reads it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from wahub.config import Settings
from wahub.runtime import Hub

Headers = Callable[[str], dict[str, str]]
MakeKey = Callable[..., Awaitable[str]]

MAX_BYTES = 4096
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"media_max_bytes": MAX_BYTES})


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: bytes
) -> httpx.Response:
    return await client.post(
        "/v1/media",
        files={"file": (name, data, "application/octet-stream")},
        headers=headers,
    )


async def test_an_uploaded_image_is_typed_by_its_bytes_and_read_back(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers
) -> None:
    # The declared part type says octet-stream; the bytes say PNG.
    created = await upload(client, headers_for("agent"), "pixel.png", PNG)

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["mime_type"], body["size_bytes"], body["filename"]) == (
        "image/png",
        len(PNG),
        "pixel.png",
    )
    assert body["id"].startswith("med_")
    read = await client.get(f"/v1/media/{body['id']}", headers=headers_for("agent"))
    assert read.status_code == 200, read.text
    assert (read.content, read.headers["content-type"]) == (PNG, "image/png")
    assert await hub.media_store.get(body["id"]) == PNG


async def test_a_file_named_as_an_image_but_holding_a_pdf_is_refused_naming_both(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await upload(client, headers_for("admin"), "photo.jpg", PDF)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "media_refused"
    assert "image/jpeg" in error["message"]
    assert "application/pdf" in error["message"]


async def test_a_zero_byte_file_is_refused_as_empty(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await upload(client, headers_for("admin"), "empty.pdf", b"")

    assert response.status_code == 422, response.text
    assert "empty" in response.json()["error"]["message"]


async def test_a_file_over_the_cap_is_a_413_naming_the_setting(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await upload(client, headers_for("admin"), "big.pdf", PDF + b"0" * MAX_BYTES)

    assert response.status_code == 413, response.text
    assert "WAHUB_MEDIA_MAX_BYTES" in response.json()["error"]["message"]


async def test_a_type_whatsapp_does_not_deliver_is_refused_naming_it(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01"

    response = await upload(client, headers_for("admin"), "anim.gif", gif)

    assert response.status_code == 422, response.text
    assert "image/gif" in response.json()["error"]["message"]


async def test_a_body_without_a_file_field_is_a_422(
    client: httpx.AsyncClient, headers_for: Headers
) -> None:
    response = await client.post(
        "/v1/media", files={"upload": ("a.png", PNG, "image/png")}, headers=headers_for("admin")
    )

    assert response.status_code == 422, response.text
    assert "'file'" in response.json()["error"]["message"]


async def test_only_the_uploader_and_keys_that_see_every_chat_read_a_file(
    client: httpx.AsyncClient, headers_for: Headers, make_key: MakeKey
) -> None:
    created = (await upload(client, headers_for("agent"), "doc.pdf", PDF)).json()
    other_agent = {"Authorization": f"Bearer {await make_key('agent', 'someone-else')}"}

    viewer = await client.get(f"/v1/media/{created['id']}", headers=headers_for("viewer"))
    stranger = await client.get(f"/v1/media/{created['id']}", headers=other_agent)
    upload_as_viewer = await upload(client, headers_for("viewer"), "doc.pdf", PDF)

    assert viewer.status_code == 200
    assert stranger.status_code == 404
    assert upload_as_viewer.status_code == 403


async def test_a_key_limited_to_channels_reads_only_its_own_uploads(
    client: httpx.AsyncClient, hub: Hub, headers_for: Headers, channel: dict[str, object]
) -> None:
    created = (await upload(client, headers_for("admin"), "doc.pdf", PDF)).json()
    scoped = await hub.access.create_key(user_name="crm", role="admin", channels=["main"])
    headers = {"Authorization": f"Bearer {scoped.key}"}

    others = await client.get(f"/v1/media/{created['id']}", headers=headers)
    own = (await upload(client, headers, "mine.pdf", PDF)).json()
    mine = await client.get(f"/v1/media/{own['id']}", headers=headers)

    assert others.status_code == 404, "a file of no channel is not a limited key's"
    assert mine.status_code == 200
