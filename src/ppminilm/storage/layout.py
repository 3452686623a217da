"""Names of a published directory artifact, and what a listing shows as data.

A directory published by :func:`ppminilm.storage.upload_dir` holds, under its prefix::

    <files>                      the data, at their own relative paths
    _SUCCESS                     the manifest: every file's path, size, sha256 (written last)
    _PUBLISHING                  only while a publish runs (or after one was killed)
    .ppminilm-staging/<version>/ only while a publish replaces an existing version

The manifest is the one thing readers trust: a prefix with ``_SUCCESS`` is read through it
(files checked against their size and sha256); a prefix with ``_PUBLISHING`` and no
``_SUCCESS`` is an unfinished publish of ours and is refused; a prefix with neither is a
user's upload (``aws s3 cp --recursive``, ``mc cp -r``) and is read as it is. Staging objects,
the in-progress marker and the ``<key>.tmp-<uuid>`` objects older releases left are never
listed as data.
"""

from __future__ import annotations

import re

#: Name of the manifest written last into a published directory.
SUCCESS_MARKER = "_SUCCESS"
#: Written first by a publish and removed last: "an unfinished publish of ours".
PUBLISHING_MARKER = "_PUBLISHING"
#: Sub-prefix a publish stages a new version under while the old one stays readable.
STAGING_DIR = ".ppminilm-staging"
#: Value of the manifest's ``format`` field (``/1`` manifests, without ``key``, still read).
MANIFEST_FORMAT = "ppminilm-artifact/2"
MANIFEST_FORMATS = ("ppminilm-artifact/1", MANIFEST_FORMAT)
#: Temporary objects of releases before the staged publish (``<key>.tmp-<32 hex>``).
_LEGACY_TMP = re.compile(r"\.tmp-[0-9a-f]{32}$")


def is_internal(rel: str) -> bool:
    """Whether a key (relative to a prefix, or whole) is publish machinery, not data.

    Staging objects, the in-progress marker and legacy temporary objects are internal; the
    ``_SUCCESS`` manifest is not (listings show it, as Hadoop's do).
    """
    parts = rel.split("/")
    return (
        STAGING_DIR in parts[:-1]
        or parts[-1] == PUBLISHING_MARKER
        or _LEGACY_TMP.search(parts[-1]) is not None
    )


def is_data(rel: str) -> bool:
    """Whether a key relative to an artifact prefix is one of its data files."""
    return rel != SUCCESS_MARKER and not is_internal(rel)
