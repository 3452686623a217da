"""CycloneDX 1.5 SBOM of the environment it runs in: Python distributions and Debian packages.

Runs inside an image at build time (standard library only):
``python sbom.py --name ppminilm-cpu --version 0.1.0 --revision <git sha> --out sbom.cdx.json``.
Python packages come from ``importlib.metadata`` (the venv's site-packages), system packages
from dpkg's status file; each gets a package URL (``pkg:pypi/...``, ``pkg:deb/<distro>/...``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")
OS_RELEASE = Path("/etc/os-release")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _license(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80:
        return text
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else ""


def python_components() -> list[dict]:
    """One component per installed distribution, sorted by name."""
    seen: dict[str, dict] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        version = dist.version
        purl = f"pkg:pypi/{_normalise(name)}@{version}"
        component = {
            "type": "library",
            "bom-ref": purl,
            "name": name,
            "version": version,
            "purl": purl,
        }
        lic = _license(dist)
        if lic:
            component["licenses"] = [{"license": {"name": lic}}]
        seen[_normalise(name)] = component
    return [seen[k] for k in sorted(seen)]


def _distro() -> str:
    if OS_RELEASE.is_file():
        for line in OS_RELEASE.read_text(encoding="utf-8").splitlines():
            if line.startswith("ID="):
                return line.split("=", 1)[1].strip().strip('"')
    return "debian"


def deb_components(status: Path = DPKG_STATUS) -> list[dict]:
    """One component per installed dpkg package (status ``install ok installed``)."""
    if not status.is_file():
        return []
    distro = _distro()
    components = []
    for block in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Status") != "install ok installed" or "Package" not in fields:
            continue
        name, version = fields["Package"], fields.get("Version", "")
        arch = fields.get("Architecture", "")
        purl = f"pkg:deb/{distro}/{name}@{version}" + (f"?arch={arch}" if arch else "")
        components.append(
            {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}
        )
    return sorted(components, key=lambda c: c["name"])


def sbom(name: str, version: str, revision: str) -> dict:
    """The SBOM document of this environment for the image ``name:version``."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "ppminilm images/sbom.py"}]},
            "component": {
                "type": "container",
                "bom-ref": f"{name}@{version}",
                "name": name,
                "version": version,
                "properties": [{"name": "org.opencontainers.image.revision", "value": revision}],
            },
        },
        "components": python_components() + deb_components(),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the SBOM to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--revision", default="unknown")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    doc = sbom(args.name, args.version, args.revision)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"sbom.py: {len(doc['components'])} components -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
