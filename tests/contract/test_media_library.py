"""Which provider id a send of an uploaded file uses (``MediaLibrary.for_provider``), on
every store backend: uploaded once per channel, reused while valid, uploaded again once
expired. The uploader is a recording implementation of the ``MediaUploader`` port."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import update

from wahub.domain.errors import PermanentProviderError
from wahub.features.media import MediaLibrary
from wahub.media import DirectoryMediaStore
from wahub.store.schema import media

if TYPE_CHECKING:
    from conftest import ContractEnv

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


class RecordingUploader:
    """Answers each upload with a new provider id and remembers what it got."""

    def __init__(self) -> None:
        self.uploads: list[tuple[bytes, str, str]] = []

    async def upload_media(self, data: bytes, *, mime_type: str, filename: str) -> str:
        self.uploads.append((data, mime_type, filename))
        return f"provider-{len(self.uploads)}"


def image(media_id: str) -> dict[str, object]:
    return {"type": "image", "image": {"id": media_id, "caption": "hi"}}


@pytest.fixture
def library(env: ContractEnv, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(env.db, DirectoryMediaStore(tmp_path / "media"), max_bytes=1 << 20)


async def test_a_file_is_uploaded_once_per_channel_and_its_id_reused(
    env: ContractEnv, library: MediaLibrary
) -> None:
    row = await library.upload(env.admin, PNG, "pixel.png")
    uploader = RecordingUploader()

    first = await library.for_provider(image(row["id"]), "ch_a", uploader)
    again = await library.for_provider(image(row["id"]), "ch_a", uploader)
    other = await library.for_provider(image(row["id"]), "ch_b", uploader)

    assert first == {"type": "image", "image": {"id": "provider-1", "caption": "hi"}}
    assert again["image"]["id"] == "provider-1"
    assert other["image"]["id"] == "provider-2", "another channel gets its own upload"
    assert uploader.uploads[0] == (PNG, "image/png", "pixel.png")


async def test_an_expired_provider_id_is_uploaded_again(
    env: ContractEnv, library: MediaLibrary
) -> None:
    row = await library.upload(env.admin, PNG, "pixel.png")
    uploader = RecordingUploader()
    await library.for_provider(image(row["id"]), "ch_a", uploader)
    async with env.db.transaction() as conn:
        await conn.execute(
            update(media).where(media.c.id == row["id"]).values(provider_media_expires_at=1.0)
        )

    renewed = await library.for_provider(image(row["id"]), "ch_a", uploader)

    assert renewed["image"]["id"] == "provider-2"
    assert len(uploader.uploads) == 2


async def test_content_without_one_of_our_ids_is_passed_on_untouched(
    library: MediaLibrary,
) -> None:
    content = {"type": "image", "image": {"link": "https://example.com/a.png"}}

    assert await library.for_provider(content, "ch_a", RecordingUploader()) is content


async def test_a_file_gone_from_the_store_fails_the_send_for_good(
    env: ContractEnv, library: MediaLibrary
) -> None:
    row = await library.upload(env.admin, PNG, "pixel.png")
    await library.store.delete(row["id"])

    with pytest.raises(PermanentProviderError, match=row["id"]):
        await library.for_provider(image(row["id"]), "ch_a", RecordingUploader())
