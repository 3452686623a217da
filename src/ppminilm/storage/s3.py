"""The S3 side of :mod:`ppminilm.storage`: settings, URI parsing, retries, atomic publish.

Use :mod:`ppminilm.storage`; this module holds its plumbing so that file stays readable.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ppminilm.io import atomic_write, is_remote
from ppminilm.storage.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    describe_endpoint,
    translate_error,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: ``(uri, size)`` pairs of a listing.
Listing = list[tuple[str, int]]

#: S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots, hyphens).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Largest object a single server-side CopyObject may copy; larger ones use multipart compose.
_MAX_SINGLE_COPY_BYTES = 5 * 1024**3
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_uri(uri: str) -> tuple[str, str]:
    """Split an object store URI into bucket and key.

    Args:
        uri: ``s3://bucket/key`` or ``minio://bucket/key``; the key may be empty.

    Returns:
        ``(bucket, key)``; ``key`` has no leading slash.

    Raises:
        ValueError: If ``uri`` is not such a URI or the bucket name is invalid.
    """
    if not isinstance(uri, str) or not is_remote(uri):
        raise ValueError(f"not an object store URI: {uri!r} (expected s3://bucket/key)")
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(
            f"invalid bucket {bucket!r} in URI {uri!r}: expected 3-63 lowercase letters, "
            "digits, dots or hyphens"
        )
    if key.startswith("/") or "//" in key:
        raise ValueError(f"invalid key in URI {uri!r}: empty path segment")
    return bucket, key


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in _TRUE | _FALSE:
        return raw in _TRUE
    raise StorageConfigError(f"{name}={raw!r}: expected one of {sorted(_TRUE | _FALSE)}")


def _env_number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StorageConfigError(f"{name}={raw!r}: expected a number") from None
    if value < minimum:
        raise StorageConfigError(f"{name}={raw!r}: expected a number >= {minimum}")
    return value


@dataclass(frozen=True)
class S3Settings:
    """Where the object store is and how to talk to it. Build it with :meth:`from_env`.

    Attributes:
        endpoint: ``host:port`` of the S3 / MinIO endpoint.
        access_key: Access key id.
        secret_key: Secret key (never shown by ``repr``).
        secure: Use HTTPS.
        region: Region sent with requests (saves a bucket-location lookup).
        session_token: Optional STS session token (never shown by ``repr``).
        max_attempts: Tries per request on transient errors (1 = no retry).
        backoff_s: First retry delay in seconds; doubles each retry.
        max_backoff_s: Ceiling of the retry delay in seconds.
        timeout_s: Socket read timeout in seconds (connect timeout is at most 10 s).
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False
    region: str = "us-east-1"
    session_token: str | None = field(default=None, repr=False)
    max_attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 60.0
    #: Where the keys come from: ``static`` (the fields above) or a provider chain entry
    #: (``web-identity``, ``container``, ``shared-file``) resolved by the minio client.
    credential_source: str = "static"
    #: Non-secret settings of that provider (token file, role ARN, STS endpoint, file, profile).
    provider_options: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        key = self.access_key[:4] + "..." if self.access_key else ""
        return (
            f"S3Settings(endpoint={self.endpoint!r}, access_key={key!r}, secret_key='***', "
            f"secure={self.secure}, region={self.region!r}, "
            f"credentials={self.credential_source!r}, max_attempts={self.max_attempts}, "
            f"backoff_s={self.backoff_s}, timeout_s={self.timeout_s})"
        )

    __str__ = __repr__

    @property
    def endpoint_url(self) -> str:
        """The endpoint as a URL, for messages (no credentials)."""
        return describe_endpoint(self.endpoint, self.secure)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        """Read the settings from environment variables.

        Endpoint: ``PPMINILM_S3_ENDPOINT``, else the standard ``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL`` (``host:port`` or ``http(s)://host:port``; the scheme decides
        HTTPS). Region: ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (default us-east-1).
        Credentials, in the order of the standard AWS chain: ``AWS_ACCESS_KEY_ID`` +
        ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``); a web identity
        (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``: EKS IRSA, or MinIO's STS with
        ``AWS_ENDPOINT_URL_STS``); container credentials (``AWS_CONTAINER_CREDENTIALS_FULL_URI``
        / ``_RELATIVE_URI``: EKS Pod Identity, ECS); a shared credentials file
        (``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``, ``AWS_PROFILE``). Also
        ``PPMINILM_S3_SECURE`` (for a bare ``host:port``), ``PPMINILM_S3_MAX_ATTEMPTS``,
        ``PPMINILM_S3_BACKOFF_S``, ``PPMINILM_S3_TIMEOUT_S``.

        Args:
            env: Mapping to read instead of ``os.environ``.

        Returns:
            The settings.

        Raises:
            StorageConfigError: If a variable is missing or malformed (the message names it).
        """
        env = os.environ if env is None else env
        names = ("PPMINILM_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        var = next((n for n in names if env.get(n, "").strip()), names[0])
        raw = env.get(var, "").strip()
        if not raw:
            raise StorageConfigError(
                "PPMINILM_S3_ENDPOINT (or AWS_ENDPOINT_URL) is not set: set it to the object "
                "store's host:port (e.g. ppminilm-minio:9000 or https://s3.amazonaws.com)"
            )
        secure_flag = _env_bool(env, "PPMINILM_S3_SECURE")
        if "://" in raw:
            parts = urlsplit(raw)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise StorageConfigError(
                    f"{var}={raw!r}: expected host:port or http(s)://host:port"
                )
            if parts.path.strip("/") or parts.query or "@" in parts.netloc:
                raise StorageConfigError(
                    f"{var} must be scheme://host:port only (no path, query or credentials)"
                )
            endpoint, secure = parts.netloc, parts.scheme == "https"
            if secure_flag is not None and secure_flag != secure:
                raise StorageConfigError(
                    f"PPMINILM_S3_SECURE contradicts the {parts.scheme}:// {var}"
                )
        else:
            endpoint, secure = raw.rstrip("/"), bool(secure_flag)
        source, options = _credential_source(env)
        return cls(
            endpoint=endpoint,
            access_key=env.get("AWS_ACCESS_KEY_ID", "") if source == "static" else "",
            secret_key=env.get("AWS_SECRET_ACCESS_KEY", "") if source == "static" else "",
            secure=secure,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            session_token=(env.get("AWS_SESSION_TOKEN") or None) if source == "static" else None,
            credential_source=source,
            provider_options=options,
            max_attempts=int(_env_number(env, "PPMINILM_S3_MAX_ATTEMPTS", 5, 1)),
            backoff_s=_env_number(env, "PPMINILM_S3_BACKOFF_S", 0.5, 0),
            timeout_s=_env_number(env, "PPMINILM_S3_TIMEOUT_S", 60.0, 0.1),
        )


def _credential_source(env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Pick the first credential source of the standard chain that the environment sets."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key or secret:
        if not (key and secret):
            missing = "AWS_ACCESS_KEY_ID" if not key else "AWS_SECRET_ACCESS_KEY"
            raise StorageConfigError(f"{missing} not set: object store credentials (half a pair)")
        return "static", ()
    token_file, role = env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")
    if token_file:
        if not role:
            raise StorageConfigError("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
        opts = {"token_file": token_file, "role_arn": role}
        for name, var in (("sts_endpoint", "AWS_ENDPOINT_URL_STS"),
                          ("session_name", "AWS_ROLE_SESSION_NAME")):  # fmt: skip
            if env.get(var):
                opts[name] = env[var]
        return "web-identity", tuple(sorted(opts.items()))
    for var in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        if env.get(var):
            opts = {var.rsplit("_", 2)[-2].lower() + "_uri": env[var]}
            if env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
                opts["token_file"] = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
            return "container", tuple(sorted(opts.items()))
    home = env.get("HOME", "")
    shared = env.get("AWS_SHARED_CREDENTIALS_FILE") or (
        os.path.join(home, ".aws", "credentials") if home else ""
    )
    if shared and os.path.isfile(shared):
        opts = {"file": shared, "profile": env.get("AWS_PROFILE") or "default"}
        return "shared-file", tuple(sorted(opts.items()))
    raise StorageConfigError(
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set: object store credentials (or a "
        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN; container credentials; "
        "a shared credentials file)"
    )


def _provider(settings: S3Settings, http: object) -> object | None:
    """The minio credentials provider for a non-static source (None: static keys)."""
    from minio.credentials import AWSConfigProvider, IamAwsProvider

    opts = dict(settings.provider_options)
    if settings.credential_source == "static":
        return None
    if settings.credential_source == "shared-file":
        return AWSConfigProvider(filename=opts["file"], profile=opts["profile"])
    if settings.credential_source == "web-identity":
        return IamAwsProvider(
            custom_endpoint=opts.get("sts_endpoint"),
            token_file=opts["token_file"],
            role_arn=opts["role_arn"],
            role_session_name=opts.get("session_name"),
            region=settings.region,
            http_client=http,  # type: ignore[arg-type]
        )
    return IamAwsProvider(
        full_uri=opts.get("full_uri"),
        relative_uri=opts.get("relative_uri"),
        http_client=http,  # type: ignore[arg-type]
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class S3Store:
    """One configured minio client plus retrying, error-translating operations on URIs."""

    def __init__(self, settings: S3Settings) -> None:
        import certifi
        import urllib3
        from minio import Minio

        self.settings = settings
        # Our own pool: minio's default one retries 5xx itself (hiding them from our policy)
        # and waits 5 minutes on connect.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(10.0, settings.timeout_s), read=settings.timeout_s),
            retries=False,
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        provider = _provider(settings, http)
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key if provider is None else None,
            secret_key=settings.secret_key if provider is None else None,
            session_token=settings.session_token,
            credentials=provider,  # type: ignore[arg-type]
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.settings!r})"

    def call(self, what: str, uri: str, func: Callable[[], T], bucket: str | None = None) -> T:
        """Run one client request with retries; translate its failure to a StorageError.

        Args:
            what: Operation name for log lines.
            uri: URI involved, for messages.
            func: The request.
            bucket: When given, an object-not-found is checked against the bucket so a
                missing bucket reports as :class:`BucketNotFoundError`.

        Returns:
            What ``func`` returns.
        """
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return func()
            except (StorageError, ValueError, TypeError):
                raise
            except Exception as exc:
                transient, error = translate_error(exc, self.settings.endpoint_url, uri)
                if not transient or attempt == attempts:
                    if (
                        isinstance(error, ObjectNotFoundError)
                        and bucket is not None
                        and not self._bucket_exists(bucket, uri)
                    ):
                        raise BucketNotFoundError(bucket, uri) from exc
                    raise error from exc
                delay = min(
                    self.settings.backoff_s * 2 ** (attempt - 1), self.settings.max_backoff_s
                )
                logger.warning(
                    "%s %s: attempt %d/%d failed (%s); retrying in %.2f s",
                    what,
                    uri,
                    attempt,
                    attempts,
                    error,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _bucket_exists(self, bucket: str, uri: str) -> bool:
        return self.call("bucket_exists", uri, lambda: self.client.bucket_exists(bucket))

    def _put(self, uri: str, put: Callable[[str, str], object]) -> None:
        """Write the object at ``uri`` with ``put(bucket, key)``; abort its upload on failure.

        S3 makes a PutObject visible only once it is complete, and a multipart upload only at
        CompleteMultipartUpload, so readers see the old object or the new one. What a failed
        or interrupted multipart upload leaves (its parts, billed and invisible) is aborted
        here, for any exception including :class:`~ppminilm.errors.Terminated`; SIGKILL
        cannot run this, so publishers also abort stale uploads under their prefix
        (:meth:`abort_uploads`) and the bucket should have a lifecycle rule (manifests/).
        """
        bucket, key = parse_uri(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"cannot write an object at {uri!r}: the key names a directory")
        try:
            self.call("put", uri, lambda: put(bucket, key), bucket=bucket)
        except BaseException:
            self.abort_uploads(uri, exact=True)
            raise

    def put_file(self, local: str, uri: str) -> None:
        """Publish a local file at ``uri`` atomically (multipart above 5 MiB)."""
        self._put(uri, lambda b, k: self.client.fput_object(b, k, local))
        logger.debug("published %s (%d bytes)", uri, os.path.getsize(local))

    def put_bytes(self, data: bytes, uri: str) -> None:
        """Publish bytes at ``uri`` atomically."""
        self._put(uri, lambda b, k: self.client.put_object(b, k, io.BytesIO(data), len(data)))

    def put_bytes_if(
        self, data: bytes, uri: str, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write a small object only if absent (``if_none_match``) or unchanged (``if_match``
        ETag); returns the new ETag.

        Raises:
            WriteConflictError: If the condition does not hold (another writer won).
        """
        from ppminilm.compat.minio import put_object_if

        bucket, key = parse_uri(uri)
        return self.call(
            "conditional put",
            uri,
            lambda: put_object_if(
                self.client, bucket, key, data, if_none_match=if_none_match, if_match=if_match
            ),
            bucket=bucket,
        )

    def remove_if(self, uri: str, etag: str) -> None:
        """Delete the object at ``uri`` only if its ETag is still ``etag``."""
        from ppminilm.compat.minio import delete_object_if

        bucket, key = parse_uri(uri)
        self.call(
            "conditional remove", uri, lambda: delete_object_if(self.client, bucket, key, etag)
        )

    def get_bytes_and_etag(self, uri: str) -> tuple[bytes, str]:
        """The content of the object at ``uri`` and its ETag (one request)."""
        bucket, key = parse_uri(uri)

        def fetch() -> tuple[bytes, str]:
            response = self.client.get_object(bucket, key)
            try:
                return response.read(), str(response.headers.get("etag", "")).strip('"')
            finally:
                response.close()
                response.release_conn()

        return self.call("get", uri, fetch, bucket=bucket)

    def copy(self, src_uri: str, dst_uri: str, size: int) -> None:
        """Copy an object server-side (multipart compose above 5 GiB); atomic at ``dst_uri``."""
        from minio.commonconfig import ComposeSource, CopySource

        src_bucket, src_key = parse_uri(src_uri)
        bucket, key = parse_uri(dst_uri)
        if size > _MAX_SINGLE_COPY_BYTES:
            sources = [ComposeSource(src_bucket, src_key)]
            self._put(dst_uri, lambda b, k: self.client.compose_object(b, k, sources))
        else:
            source = CopySource(src_bucket, src_key)
            self.call(
                "copy", dst_uri, lambda: self.client.copy_object(bucket, key, source), bucket=bucket
            )

    def uploads(self, prefix_uri: str) -> list[Any]:
        """In-progress multipart uploads whose key starts with the URI's key."""
        from ppminilm.compat.minio import list_multipart_uploads

        bucket, prefix = parse_uri(prefix_uri)
        return self.call(
            "list uploads",
            prefix_uri,
            lambda: list_multipart_uploads(self.client, bucket, prefix),
            bucket=bucket,
        )

    def abort_uploads(self, prefix_uri: str, *, exact: bool = False) -> int:
        """Abort in-progress multipart uploads under a prefix (or at exactly that key).

        Best effort: a failure is logged, never raised (it must not hide the error that led
        here). Returns how many were aborted.
        """
        from ppminilm.compat.minio import abort_multipart_upload

        bucket, prefix = parse_uri(prefix_uri)
        aborted = 0
        try:
            for _ in range(2):  # a part in flight during the abort can revive it once
                pending = [u for u in self.uploads(prefix_uri) if not exact or u.key == prefix]
                for upload in pending:
                    self.call(
                        "abort upload",
                        prefix_uri,
                        functools.partial(
                            abort_multipart_upload,
                            self.client,
                            bucket,
                            upload.key,
                            upload.upload_id,
                        ),
                    )
                    aborted += 1
                if not pending:
                    break
        except Exception as exc:
            logger.warning("could not abort multipart uploads under %s: %s", prefix_uri, exc)
        if aborted:
            logger.info("aborted %d unfinished multipart upload(s) under %s", aborted, prefix_uri)
        return aborted

    def get_file(self, uri: str, local: str) -> None:
        """Download the object at ``uri`` to a local file, atomically."""
        bucket, key = parse_uri(uri)

        def fetch_into(tmp: str) -> None:
            # Streamed by hand: fget_object leaves a '.part.minio' file behind on failure.
            response = self.client.get_object(bucket, key)
            try:
                with open(tmp, "wb") as handle:
                    for chunk in response.stream(1 << 20):
                        handle.write(chunk)
            finally:
                response.close()
                response.release_conn()

        atomic_write(
            local, lambda tmp: self.call("get", uri, lambda: fetch_into(tmp), bucket=bucket)
        )

    def get_bytes(self, uri: str) -> bytes:
        """Return the content of the object at ``uri``."""
        bucket, key = parse_uri(uri)

        def fetch() -> bytes:
            response = self.client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self.call("get", uri, fetch, bucket=bucket)

    def object_exists(self, uri: str) -> bool:
        """Tell whether an object exists at ``uri`` (a missing bucket raises)."""
        bucket, key = parse_uri(uri)
        try:
            self.call("stat", uri, lambda: self.client.stat_object(bucket, key), bucket=bucket)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix_uri: str) -> list[str]:
        """Return the sorted URIs of all objects whose key starts with the URI's key."""
        return [uri for uri, _size in self.list_sizes(prefix_uri)]

    def list_sizes(self, prefix_uri: str) -> Listing:
        """``(uri, size)`` of every object whose key starts with the URI's key, sorted."""
        bucket, prefix = parse_uri(prefix_uri)
        scheme = prefix_uri.split("://", 1)[0]

        def names() -> Listing:
            objects = self.client.list_objects(bucket, prefix=prefix or None, recursive=True)
            return [
                (o.object_name, int(o.size or 0)) for o in objects if o.object_name and not o.is_dir
            ]

        found = self.call("list", prefix_uri, names, bucket=bucket)
        return sorted((f"{scheme}://{bucket}/{n}", size) for n, size in found)

    def remove(self, uri: str) -> None:
        """Delete the object at ``uri`` if it exists."""
        bucket, key = parse_uri(uri)
        self.call("remove", uri, lambda: self.client.remove_object(bucket, key), bucket=bucket)
