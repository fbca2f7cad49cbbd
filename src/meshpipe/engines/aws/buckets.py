"""S3 work the engine needs: upload the build bundle, stage large templates, and empty buckets before
CloudFormation deletes them (it refuses to delete a bucket holding any object version or delete marker)."""

from __future__ import annotations

from typing import Any

from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.errors import OperationError

DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys per request


class Buckets:
    def __init__(self, calls: AwsCalls) -> None:
        self.calls = calls

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.calls("s3", "put_object", Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    def url(self, bucket: str, key: str) -> str:
        """The https URL CloudFormation reads a staged template from."""
        region = self.calls.client("s3").meta.region_name or "us-east-1"
        host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
        return f"https://{bucket}.{host}/{key}"

    def empty(self, bucket: str) -> int:
        """Delete every object version and delete marker; return how many. A missing bucket is empty."""
        deleted = 0
        batch: list[dict[str, str]] = []
        for entry in self._versions(bucket):
            batch.append(entry)
            if len(batch) == DELETE_BATCH:
                deleted += self._delete(bucket, batch)
                batch = []
        if batch:
            deleted += self._delete(bucket, batch)
        return deleted

    def delete(self, bucket: str) -> bool:
        """Delete an emptied bucket; False when it was already gone."""
        if self.calls.call_or_none("s3", "list_object_versions", when=is_not_found, Bucket=bucket,
                                   MaxKeys=1) is None:
            return False
        self.empty(bucket)
        return self.calls.call_or_none("s3", "delete_bucket", when=is_not_found, Bucket=bucket) is not None

    def _versions(self, bucket: str) -> list[dict[str, str]]:
        entries: list[dict[str, str]] = []
        params: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = self.calls.call_or_none("s3", "list_object_versions", when=is_not_found, **params)
            if page is None:
                return entries
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                entries.append({"Key": item["Key"], "VersionId": item.get("VersionId") or "null"})
            if not page.get("IsTruncated"):
                return entries
            params = {"Bucket": bucket, "KeyMarker": page.get("NextKeyMarker"),
                      "VersionIdMarker": page.get("NextVersionIdMarker")}

    def _delete(self, bucket: str, objects: list[dict[str, str]]) -> int:
        result = self.calls("s3", "delete_objects", Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        errors = result.get("Errors", [])
        if errors:
            first = errors[0]
            raise OperationError(
                f"could not empty bucket {bucket}: {first.get('Key')} {first.get('Code')}: {first.get('Message')}",
                hint="allow s3:DeleteObject and s3:DeleteObjectVersion on the bucket, then retry")
        return len(objects)
