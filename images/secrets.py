"""Scan every layer of an image for credential files and secrets (``docker save`` stream).

A file deleted in a later layer still ships in the earlier one, so the flattened file system
(``docker export``) is not enough: each layer tar is read, names checked against credential file
patterns and small files' contents against secret patterns (private keys, cloud access keys).
The image history (the commands and ``ENV``/``ARG`` values of each layer) is checked too.

Python packages are installed only from the hash-pinned lock, so their files are known content:
under ``site-packages`` only file *names* are checked (libraries such as pycryptodome and
google-auth carry PEM test keys and key-parsing code that a content scan would flag).
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Iterable
from typing import IO

#: File names that hold credentials (matched against the full path inside the layer).
CREDENTIAL_PATHS = re.compile(
    r"(^|/)(\.env|\.netrc|\.pypirc|\.git-credentials|\.npmrc|id_rsa|id_ed25519|id_ecdsa"
    r"|\.aws/credentials|\.docker/config\.json|\.kube/config|s3-credentials\.env"
    r"|credentials\.json|service[-_]account.*\.json)$"
)
#: Secret material inside files (private keys, AWS access key ids with a secret beside them).
SECRET_CONTENT = re.compile(
    rb"-----BEGIN (RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----"
    rb"|aws_secret_access_key\s*=\s*[A-Za-z0-9/+=]{40}"
    rb"|AKIA[0-9A-Z]{16}[^\n]{0,80}[A-Za-z0-9/+=]{40}"
)
#: Secrets in the build history (``docker history --no-trunc``): KEY=value of credential names.
SECRET_HISTORY = re.compile(
    r"\b[A-Z0-9_]*(PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY)[A-Z0-9_]*=(?!\s|\$|\"\$)\S+"
)
#: Only files this small are read for secret content (keys and config files are small).
MAX_SCANNED_BYTES = 1 << 20
#: Paths whose content is not scanned: public CA certificates, and the files of hash-pinned
#: Python packages (names are still checked).
_PUBLIC = re.compile(r"(^|/)(etc/ssl|usr/share/ca-certificates|[^/]+/(site|dist)-packages)/")


def scan_layer(layer: IO[bytes], label: str) -> list[str]:
    """Findings in one layer tar stream."""
    findings = []
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if CREDENTIAL_PATHS.search(name):
                findings.append(f"{label}: credential file {name}")
            if not member.isfile() or member.size > MAX_SCANNED_BYTES or _PUBLIC.search(name):
                continue
            handle = tar.extractfile(member)
            if handle is not None and SECRET_CONTENT.search(handle.read()):
                findings.append(f"{label}: secret material in {name}")
    return findings


def scan_saved_image(stream: IO[bytes]) -> list[str]:
    """Findings in a ``docker save`` tar (legacy ``<id>/layer.tar`` or OCI ``blobs/``)."""
    findings: list[str] = []
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.isfile():
                continue
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                handle = outer.extractfile(member)
                if handle is None:
                    continue
                try:
                    findings += scan_layer(handle, member.name)
                except tarfile.ReadError:
                    continue  # an OCI config or manifest blob, not a layer
    return findings


def scan_history(lines: Iterable[str]) -> list[str]:
    """Findings in the image's history lines."""
    return [f"history: {m.group(0)[:60]}" for line in lines for m in SECRET_HISTORY.finditer(line)]


def scan_image(image: str, docker: str = "docker", env: dict[str, str] | None = None) -> list[str]:
    """Every finding in ``image``'s layers and history (empty: clean).

    Raises:
        RuntimeError: If ``docker save`` or ``docker history`` fails.
    """
    history = subprocess.run(
        [docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if history.returncode != 0:
        raise RuntimeError(f"docker history {image}: {history.stderr.strip()}")
    findings = scan_history(history.stdout.splitlines())
    proc = subprocess.Popen(
        [docker, "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    try:
        findings += scan_saved_image(proc.stdout)
    finally:
        proc.stdout.close()
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"docker save {image}: {err.decode(errors='replace').strip()}")
    return findings
