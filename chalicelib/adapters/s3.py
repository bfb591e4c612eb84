"""The BlobStore port on S3: one bucket, objects by key."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.domain.errors import StoreUnavailable
from chalicelib.ports import BlobStore

MISSING = {"NoSuchKey", "404", "NotFound"}


class S3BlobStore(BlobStore):
    """Objects in `bucket`; S3 failures surface as StoreUnavailable (a 503), never a 500."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def _fail(self, err: Exception, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"S3: {what} in {self.bucket}: {err}")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as err:
            raise self._fail(err, f"put {key}") from err

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise self._fail(err, f"get {key}") from err
        body: bytes = response["Body"].read()
        return body

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            raise self._fail(err, f"delete {key}") from err

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                out.extend(str(o["Key"]) for o in page.get("Contents", []))
        except ClientError as err:
            raise self._fail(err, f"list {prefix}") from err
        return sorted(out)
