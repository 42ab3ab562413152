"""Sending an uploaded file through a Cloud API channel, end to end: ``POST /v1/media``,
sends naming its id, the outbox uploading it to the provider (the sandbox's ``POST
/{phone_number_id}/media``) once and reusing the provider's id. On SQLite with the
directory media store, and on PostgreSQL with S3 (moto's server): the scale-out pair."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from pgcluster import PostgresCluster
from s3server import moto_server
from wahub.config import Settings
from wahub.domain.ids import new_id
from wahub.embedded import Stack, add_sandbox_channel, embedded_stack, free_port
from wahub.providers.sandbox import SandboxConfig
from wahub.store import messages as message_q

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(params=["sqlite+directory", "postgresql+s3"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresCluster | None
) -> AsyncIterator[tuple[Stack, dict[str, str]]]:
    settings: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'media.db'}",
        "port": free_port(),
    }
    database = None
    if request.param == "postgresql+s3":
        if postgres is None:
            pytest.skip("no PostgreSQL server on this machine")
        database = "media_" + new_id("db").split("_", 1)[1]
        url = request.getfixturevalue("s3_url")
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=database.replace("_", "-"))
        settings.update(
            database_url=postgres.new_database(database),
            media_s3_bucket=database.replace("_", "-"),
            media_s3_endpoint_url=url,
            media_s3_access_key_id="testing",
            media_s3_secret_access_key="testing",
        )
    async with embedded_stack(Settings(**settings), sandbox_config=SandboxConfig()) as started:
        assert started.sandbox_url is not None
        await add_sandbox_channel(started.hub, started.sandbox_url, pair_interval_seconds=0)
        key = (await started.hub.access.create_key(user_name="crm", role="admin")).key
        yield started, {"Authorization": f"Bearer {key}"}
    if database is not None and postgres is not None:
        postgres.drop_database(database)


async def wait_sent(stack: Stack, ids: list[str], timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        async with stack.hub.db.read() as conn:
            statuses = await message_q.statuses_by_id(conn)
        mine = {i: statuses.get(i, "") for i in ids}
        if all(s in ("sent", "delivered", "read", "failed") for s in mine.values()):
            return mine
        if time.monotonic() > deadline:
            pytest.fail(f"not sent after {timeout} s: {mine}")
        await asyncio.sleep(0.05)


async def test_an_uploaded_image_is_uploaded_to_the_provider_once_and_its_id_reused(
    stack: tuple[Stack, dict[str, str]],
) -> None:
    started, headers = stack
    async with httpx.AsyncClient(base_url=started.url, headers=headers) as client:
        uploaded = await client.post("/v1/media", files={"file": ("pixel.png", PNG)})
        assert uploaded.status_code == 201, uploaded.text
        media_id = uploaded.json()["id"]
        ids = []
        for to in ("+4915112345678", "+4915112345679"):
            sent = await client.post(
                "/v1/messages", json={"to": to, "image": {"id": media_id, "caption": "look"}}
            )
            assert sent.status_code == 202, sent.text
            ids.append(sent.json()["id"])

    assert set((await wait_sent(started, ids)).values()) <= {"sent", "delivered", "read"}
    assert started.sandbox is not None
    (upload,) = started.sandbox.media.uploads.values()
    assert (upload.mime_type, upload.sha256) == ("image/png", hashlib.sha256(PNG).hexdigest())
    images = [s.body["image"] for s in started.sandbox.sends]
    assert images == [{"id": upload.media_id, "caption": "look"}] * 2, "one upload, id reused"


async def test_a_file_sent_as_a_type_it_is_not_is_refused_before_queuing(
    stack: tuple[Stack, dict[str, str]],
) -> None:
    started, headers = stack
    async with httpx.AsyncClient(base_url=started.url, headers=headers) as client:
        pdf = (await client.post("/v1/media", files={"file": ("a.pdf", PDF)})).json()["id"]
        as_image = await client.post(
            "/v1/messages", json={"to": "+4915112345678", "image": {"id": pdf}}
        )
        unknown = await client.post(
            "/v1/messages", json={"to": "+4915112345678", "document": {"id": "med_0000nothere"}}
        )

    assert as_image.status_code == 422, as_image.text
    assert "application/pdf cannot be sent as image" in as_image.json()["error"]["message"]
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["details"]["field"] == "document.id"


async def test_the_sandbox_refuses_a_send_naming_a_media_id_nobody_uploaded(
    stack: tuple[Stack, dict[str, str]],
) -> None:
    started, _ = stack
    body = {
        "messaging_product": "whatsapp",
        "to": "4915112345678",
        "type": "image",
        "image": {"id": "never-uploaded"},
    }
    async with httpx.AsyncClient(base_url=str(started.sandbox_url)) as sandbox:
        response = await sandbox.post("/v21.0/106540352242922/messages", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == 100
    assert "never-uploaded" in response.json()["error"]["error_data"]["details"]
