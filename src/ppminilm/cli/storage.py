"""``ppminilm storage``: copy and list artifacts on local paths and s3:// / minio:// URIs.

Exit codes: 0 success; 2 bad URI or arguments; the ``exit_code`` of each
:class:`~ppminilm.storage.StorageError` subclass otherwise (10 generic, 11 configuration,
12 endpoint unreachable, 13 credentials rejected, 14 bucket missing, 15 object missing,
16 incomplete artifact).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ppminilm import storage
from ppminilm.cli._common import HelpFormatter

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``storage cp`` and ``storage ls``."""
    parser = subparsers.add_parser(
        "storage", help="copy and list artifacts (local or S3/MinIO)", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="storage_command", metavar="ACTION", required=True)
    cp = sub.add_parser(
        "cp",
        formatter_class=HelpFormatter,
        help="copy a file or a directory artifact",
        description="Copy SRC to DST; either side may be local or s3://bucket/key. A directory "
        "is published with a _SUCCESS manifest written last. Credentials and endpoint come from "
        "PPMINILM_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.",
    )
    cp.add_argument("src", help="local path or s3:// / minio:// URI")
    cp.add_argument("dst", help="local path or URI; ending in / means 'into this directory'")
    cp.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="copy a remote directory even without its _SUCCESS manifest",
    )
    cp.set_defaults(func=_cp)
    ls = sub.add_parser(
        "ls",
        help="list objects (or files) under a prefix, one per line",
        formatter_class=HelpFormatter,
    )
    ls.add_argument("prefix", help="local directory or URI prefix")
    ls.set_defaults(func=_ls)


def _is_file(src: str) -> bool:
    """A remote source is a file when an object exists at exactly its key."""
    if storage.is_remote(src):
        _, key = storage.parse_uri(src)
        return bool(key) and not key.endswith("/") and storage.exists(src)
    return os.path.isfile(src)


def _file_destination(src: str, dst: str) -> str:
    """Resolve ``dst`` for a single file: a trailing ``/`` or an existing directory means 'into'."""
    if dst.endswith("/") or (not storage.is_remote(dst) and os.path.isdir(dst)):
        name = src.rstrip("/").rsplit("/", 1)[-1]
        return dst.rstrip("/") + "/" + name
    return dst


def _cp(args: argparse.Namespace) -> int:
    try:
        if _is_file(args.src):
            dst = _file_destination(args.src, args.dst)
            storage.copy_file(args.src, dst)
            logger.info("copied %s -> %s", args.src, dst)
        else:
            storage.copy_tree(args.src, args.dst, require_complete=not args.allow_incomplete)
            logger.info("copied directory %s -> %s", args.src, args.dst)
    except storage.StorageError as exc:
        logger.error("storage cp failed: %s", exc)
        return exc.exit_code
    return 0


def _ls(args: argparse.Namespace) -> int:
    try:
        uris = storage.list_uris(args.prefix)
    except storage.StorageError as exc:
        logger.error("storage ls failed: %s", exc)
        return exc.exit_code
    sys.stdout.write("".join(f"{uri}\n" for uri in uris))
    return 0
