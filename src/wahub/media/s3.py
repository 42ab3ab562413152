"""The media store in S3-compatible object storage (AWS S3, MinIO, Ceph, R2, ...)."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from wahub.media.base import MediaMissing, MediaStoreUnavailable

# Bounded, so a store that stops answering fails a request instead of hanging it.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


class S3MediaStore:
    """Objects ``<prefix><key>`` in ``bucket``. boto3 is synchronous: each call runs in a
    worker thread (its client is thread-safe), never on the event loop."""

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": 3, "mode": "standard"},
                # Path-style addressing works with every S3-compatible server.
                s3={"addressing_style": "path"},
            ),
        )

    def _name(self, key: str) -> str:
        return self.prefix + key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            await asyncio.to_thread(
                self._client.put_object,
                Bucket=self.bucket,
                Key=self._name(key),
                Body=data,
                ContentType=content_type,
            )
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreUnavailable(
                f"S3 bucket {self.bucket}: cannot store {key}: {exc}"
            ) from exc

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=self._name(key))
            return bytes(response["Body"].read())

        try:
            return await asyncio.to_thread(read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise MediaMissing(f"media {key} is not in S3 bucket {self.bucket}") from None
            raise MediaStoreUnavailable(
                f"S3 bucket {self.bucket}: cannot read {key}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise MediaStoreUnavailable(
                f"S3 bucket {self.bucket}: cannot read {key}: {exc}"
            ) from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(
                self._client.delete_object, Bucket=self.bucket, Key=self._name(key)
            )
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreUnavailable(
                f"S3 bucket {self.bucket}: cannot delete {key}: {exc}"
            ) from exc
