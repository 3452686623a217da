"""S3 requests the ``minio`` client (7.2) has no public method for.

The publish protocol and the checkpoint lease need three things minio-py keeps private:
conditional writes (``If-None-Match: *`` to create only if absent, ``If-Match: <etag>`` to
replace or delete only the version we read), listing in-progress multipart uploads, and
aborting one. They are the plain S3 API calls (PutObject, DeleteObject, ListMultipartUploads,
AbortMultipartUpload), made through the client's own signed request path
(``Minio._execute`` / ``_list_multipart_uploads`` / ``_abort_multipart_upload``), which exist
unchanged from minio 7.1 to 7.2.20. Conditional writes need a server that implements them:
MinIO since RELEASE.2024-08, AWS S3 (If-None-Match since 2024-08, If-Match since 2024-11),
moto 5.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

#: S3 error code of a failed ``If-None-Match`` / ``If-Match`` condition (HTTP 412).
PRECONDITION_FAILED = "PreconditionFailed"


@dataclass(frozen=True)
class MultipartUpload:
    """An upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime.datetime | None


def _require(client: Any, name: str) -> Any:
    method = getattr(client, name, None)
    if method is None:  # pragma: no cover - a minio release that renamed its internals
        raise RuntimeError(
            f"minio {getattr(__import__('minio'), '__version__', '?')} has no {name}; "
            "ppminilm.compat.minio supports minio 7.1-7.2"
        )
    return method


def put_object_if(
    client: Any,
    bucket: str,
    key: str,
    data: bytes,
    *,
    if_none_match: bool = False,
    if_match: str | None = None,
    content_type: str = "application/json",
) -> str:
    """PutObject with a condition; returns the new object's ETag (without quotes).

    Args:
        client: A ``minio.Minio``.
        bucket: Bucket name.
        key: Object key.
        data: The whole content (one request; meant for small records).
        if_none_match: Create only if no object exists at ``key``.
        if_match: Replace only if the object's ETag is this one.
        content_type: Content type of the object.

    Raises:
        minio.error.S3Error: With code :data:`PRECONDITION_FAILED` if the condition fails.
    """
    headers = {"Content-Type": content_type}
    if if_none_match:
        headers["If-None-Match"] = "*"
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    response = _require(client, "_execute")("PUT", bucket, key, body=data, headers=headers)
    return str(response.headers.get("etag", "")).strip('"')


def delete_object_if(client: Any, bucket: str, key: str, if_match: str) -> None:
    """DeleteObject only if the object's ETag is ``if_match`` (servers without conditional
    deletes ignore the header and delete)."""
    headers = {"If-Match": f'"{if_match}"'}
    _require(client, "_execute")("DELETE", bucket, key, headers=headers)


def list_multipart_uploads(client: Any, bucket: str, prefix: str) -> list[MultipartUpload]:
    """Every in-progress multipart upload whose key starts with ``prefix`` (all pages)."""
    lister = _require(client, "_list_multipart_uploads")
    uploads: list[MultipartUpload] = []
    key_marker: str | None = None
    upload_marker: str | None = None
    while True:
        result = lister(
            bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_marker
        )
        for upload in result.uploads:
            uploads.append(
                MultipartUpload(
                    str(upload.object_name), str(upload.upload_id), upload.initiated_time
                )
            )
        if not result.is_truncated or not result.uploads:
            return uploads
        # minio 7.2 stores NextUploadIdMarker under a misspelt attribute (always None): the
        # last upload of the page is the marker S3 expects anyway.
        last = result.uploads[-1]
        key_marker = result.next_key_marker or str(last.object_name)
        upload_marker = str(last.upload_id)


def abort_multipart_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """AbortMultipartUpload: the server drops the parts uploaded so far."""
    _require(client, "_abort_multipart_upload")(bucket, key, upload_id)
