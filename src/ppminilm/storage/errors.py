"""Exceptions of :mod:`ppminilm.storage` and the mapping from S3 client errors to them.

Every storage failure is a :class:`StorageError` subclass with its own CLI exit code, so a
pipeline step that dies on storage tells the operator what to check without reading a trace.
Messages name the endpoint, bucket or URI involved; they never contain credentials.
"""

from __future__ import annotations

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from ppminilm.errors import InfraError

#: S3 error codes worth retrying: throttling and server-side trouble.
TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)
#: S3 error codes that mean the credentials are wrong or not allowed; retrying cannot help.
AUTH_S3_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
    }
)


class StorageError(InfraError):
    """Base class of every storage failure. ``exit_code`` is what the CLI exits with."""

    exit_code = 10


class StorageConfigError(StorageError):
    """The storage settings in the environment are missing or malformed."""

    exit_code = 11


class StorageUnreachableError(StorageError):
    """The S3 endpoint could not be reached, or kept failing with server errors."""

    exit_code = 12


class StorageAuthError(StorageError):
    """The S3 endpoint rejected the credentials (unknown key, wrong secret, access denied)."""

    exit_code = 13


class BucketNotFoundError(StorageError):
    """The bucket named in a URI does not exist."""

    exit_code = 14

    def __init__(self, bucket: str, uri: str) -> None:
        self.bucket = bucket
        self.uri = uri
        super().__init__(
            f"bucket {bucket!r} does not exist (while accessing {uri}); create it or fix the URI"
        )


class ObjectNotFoundError(StorageError):
    """No object (or local file) exists at a URI."""

    exit_code = 15

    def __init__(self, uri: str, detail: str = "") -> None:
        self.uri = uri
        super().__init__(f"no object at {uri}{detail}")


class IncompleteArtifactError(StorageError):
    """A directory artifact lacks its ``_SUCCESS`` manifest or does not match it."""

    exit_code = 16


class WriteConflictError(StorageError):
    """A conditional write lost to another writer (``If-None-Match`` / ``If-Match`` failed)."""

    exit_code = 10


def describe_endpoint(endpoint: str, secure: bool) -> str:
    """Return the endpoint as a URL for messages, e.g. ``http://127.0.0.1:9000``."""
    return ("https://" if secure else "http://") + endpoint


def translate_error(exc: BaseException, endpoint_url: str, uri: str) -> tuple[bool, StorageError]:
    """Map an exception raised by the minio client to a storage error.

    Args:
        exc: What the client raised.
        endpoint_url: The endpoint as a URL (no credentials), for the message.
        uri: The URI being accessed, for the message.

    Returns:
        ``(transient, error)``: whether retrying may help, and the error to raise if not.
        Bucket- and object-level "not found" come back as :class:`BucketNotFoundError` /
        :class:`ObjectNotFoundError`.
    """
    unreachable_hint = "check PPMINILM_S3_ENDPOINT and that the endpoint is reachable (network)"
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return True, StorageUnreachableError(
            f"cannot reach S3 endpoint {endpoint_url} while accessing {uri} "
            f"({type(exc).__name__}); {unreachable_hint}"
        )
    if isinstance(exc, ServerError | InvalidResponseError):
        status = exc.status_code if isinstance(exc, ServerError) else exc._code
        error = StorageUnreachableError(
            f"S3 endpoint {endpoint_url} failed with HTTP {status} while accessing {uri}; "
            f"{unreachable_hint}, and the server's health"
        )
        return int(status or 0) >= 500, error
    if isinstance(exc, S3Error):
        code = exc.code or ""
        status = exc.response.status if exc.response is not None else 0
        if code in AUTH_S3_CODES:
            return False, StorageAuthError(
                f"S3 endpoint {endpoint_url} rejected the credentials ({code}) while accessing "
                f"{uri}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "and the key's permissions"
            )
        if code == "NoSuchBucket":
            return False, BucketNotFoundError(exc.bucket_name or "?", uri)
        if code in {"NoSuchKey", "NoSuchObject"}:
            return False, ObjectNotFoundError(uri)
        if code == "PreconditionFailed" or status == 412:
            return False, WriteConflictError(
                f"{uri} was changed by another writer (the conditional write failed)"
            )
        if code in TRANSIENT_S3_CODES or status >= 500:
            return True, StorageUnreachableError(
                f"S3 endpoint {endpoint_url} kept failing ({code or status}) while accessing "
                f"{uri}; {unreachable_hint}, and the server's health"
            )
        return False, StorageError(f"S3 request for {uri} failed: {code}: {exc.message}")
    return False, StorageError(f"S3 request for {uri} failed: {type(exc).__name__}: {exc}")
