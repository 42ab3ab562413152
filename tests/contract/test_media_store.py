"""The media store port, one suite over both implementations: a directory and
S3-compatible storage (moto's standalone server, a real S3 HTTP endpoint)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest

from s3server import moto_server
from wahub.media import DirectoryMediaStore, MediaStore, MediaStoreUnavailable, S3MediaStore
from wahub.media.base import MediaMissing

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def s3_store(url: str, bucket: str) -> S3MediaStore:
    return S3MediaStore(bucket=bucket, endpoint_url=url, prefix="wahub/", **CREDENTIALS)


@pytest.fixture(params=["directory", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    if request.param == "directory":
        yield DirectoryMediaStore(tmp_path / "media")
        return
    url = request.getfixturevalue("s3_url")
    bucket = f"media-{secrets.token_hex(4)}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    yield s3_store(url, bucket)


async def test_stored_bytes_read_back_exactly(store: MediaStore) -> None:
    data = bytes(range(256)) * 100

    await store.put("med_01abc", data, "application/octet-stream")

    assert await store.get("med_01abc") == data


async def test_putting_a_key_again_replaces_its_bytes(store: MediaStore) -> None:
    await store.put("med_01abc", b"first", "text/plain")
    await store.put("med_01abc", b"second", "text/plain")

    assert await store.get("med_01abc") == b"second"


async def test_an_unknown_key_is_missing_not_a_crash(store: MediaStore) -> None:
    with pytest.raises(MediaMissing, match="med_01none"):
        await store.get("med_01none")


async def test_a_deleted_key_is_missing_and_deleting_twice_is_fine(store: MediaStore) -> None:
    await store.put("med_01abc", b"x", "text/plain")

    await store.delete("med_01abc")
    await store.delete("med_01abc")

    with pytest.raises(MediaMissing):
        await store.get("med_01abc")


async def test_a_bucket_that_does_not_exist_is_unavailable_naming_it(s3_url: str) -> None:
    store = s3_store(s3_url, "no-such-bucket")

    with pytest.raises(MediaStoreUnavailable, match="no-such-bucket"):
        await store.put("med_01abc", b"x", "text/plain")


async def test_the_directory_store_leaves_no_partial_files(tmp_path: Path) -> None:
    store = DirectoryMediaStore(tmp_path / "media")

    await store.put("med_01abc", b"x" * 10_000, "text/plain")

    files = sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file())
    assert files == ["med_01abc"]
