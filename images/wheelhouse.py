"""The wheelhouse an image installs from: every locked file, downloaded and verified by the host.

pip inside a build cannot always reach an index (no TLS trust, no network, an air-gapped
cluster's builder), so the host downloads the lock's files with ``pip download
--require-hashes``, turns the few sdists into wheels, and writes ``requirements.txt`` pinning
each wheel by its own SHA-256. The image runs ``pip install --no-index --require-hashes`` on
that: a file that changed on the way is refused twice, on download and on install.

Wheelhouses are cached outside the clone, under ``$PPMINILM_CACHE/wheelhouse/<lock digest>``
(default ``~/.cache/ppminilm``); a cached one is re-hashed before every use, and files of an
older wheelhouse with the same name and hash are reused instead of downloaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from images.lock import Pin, pip_index_args, read_lock

logger = logging.getLogger("images.wheelhouse")

REQUIREMENTS = "requirements.txt"
_CHUNK = 1 << 20


def cache_root() -> Path:
    """``$PPMINILM_CACHE``, else ``$XDG_CACHE_HOME/ppminilm``, else ``~/.cache/ppminilm``."""
    if os.environ.get("PPMINILM_CACHE"):
        return Path(os.environ["PPMINILM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ppminilm"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def lock_key(lock: Path) -> str:
    """Cache key of a lock: the first 16 hex digits of its content's SHA-256."""
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16]


def read_requirements(path: Path) -> dict[str, str]:
    """``wheel file name -> sha256`` from a wheelhouse ``requirements.txt``."""
    wheels: dict[str, str] = {}
    filename = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("# ") and line.endswith(".whl"):
            filename = line[2:]
        elif line.startswith("--hash=sha256:") and filename:
            wheels[filename] = line.split(":", 1)[1]
            filename = ""
    return wheels


def verify(house: Path) -> list[str]:
    """Problems with a wheelhouse: missing requirements, missing or changed wheels."""
    req = house / REQUIREMENTS
    if not req.is_file():
        return [f"{req} is missing"]
    problems = []
    for filename, sha in read_requirements(req).items():
        wheel = house / "wheels" / filename
        if not wheel.is_file():
            problems.append(f"{wheel} is missing")
        elif sha256_file(wheel) != sha:
            problems.append(f"{wheel} does not match its hash")
    return problems


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _reuse_downloads(pins: list[Pin], dest: Path, root: Path) -> int:
    """Hard-link files with the same name and hash from older wheelhouses into ``dest``."""
    wanted = {p.filename: p.sha256 for p in pins}
    reused = 0
    for old in root.glob("*/downloads/*"):
        sha = wanted.get(old.name)
        target = dest / old.name
        if sha and not target.exists() and sha256_file(old) == sha:
            _link_or_copy(old, target)
            reused += 1
    return reused


def _pip(python: str, *args: str) -> None:
    cmd = [python, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} ... failed:\n{proc.stderr[-3000:]}")


def _wheel_for(pin: Pin, wheels: dict[tuple[str, str], Path]) -> Path:
    from packaging.version import Version

    key = (canonicalize_name(pin.name), str(Version(pin.version)))
    if key not in wheels:
        raise RuntimeError(f"no wheel for {pin.name}=={pin.version} in the wheelhouse")
    return wheels[key]


def build(lock: Path, python: str = sys.executable) -> Path:
    """Return a verified wheelhouse for ``lock``, building it when no cached one is intact.

    Args:
        lock: An image's ``requirements.lock``.
        python: Interpreter whose pip downloads and builds (Python 3.11 on Linux x86-64).

    Returns:
        The wheelhouse directory: ``wheels/*.whl`` and ``requirements.txt``.

    Raises:
        RuntimeError: If a download, a hash or an sdist build fails.
    """
    root = cache_root() / "wheelhouse"
    house = root / lock_key(lock)
    if house.is_dir():
        problems = verify(house)
        if not problems:
            logger.info("using cached wheelhouse %s", house)
            return house
        logger.warning("rebuilding wheelhouse %s: %s", house, problems[0])
        shutil.rmtree(house)
    pins = read_lock(lock)
    tmp = root / f"{house.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    downloads, wheel_dir = tmp / "downloads", tmp / "wheels"
    downloads.mkdir(parents=True)
    wheel_dir.mkdir()
    started = time.monotonic()
    reused = _reuse_downloads(pins, downloads, root)
    logger.info("downloading %d files (%d reused) for %s", len(pins), reused, lock)
    _pip(python, "download", *pip_index_args(), "--no-deps", "--require-hashes",
         "--quiet", "-r", str(lock), "-d", str(downloads))  # fmt: skip
    for pin in pins:
        src = downloads / pin.filename
        if not src.is_file():
            raise RuntimeError(f"pip download did not produce {pin.filename}")
        if pin.is_wheel:
            _link_or_copy(src, wheel_dir / pin.filename)
        else:
            logger.info("building a wheel from %s", pin.filename)
            _pip(python, "wheel", *pip_index_args(), "--no-deps", "--quiet",
                 "-w", str(wheel_dir), str(src))  # fmt: skip
    wheels = {}
    for path in wheel_dir.glob("*.whl"):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        wheels[(str(name), str(version))] = path
    lines = [f"# Wheelhouse of {lock.name} ({lock_key(lock)}); each wheel pinned by its hash.\n"]
    for pin in pins:
        wheel = _wheel_for(pin, wheels)
        lines.append(f"# {wheel.name}\n{pin.name}=={pin.version} \\\n")
        lines.append(f"    --hash=sha256:{sha256_file(wheel)}\n")
    (tmp / REQUIREMENTS).write_text("".join(lines), encoding="utf-8")
    tmp.rename(house)
    size = sum(p.stat().st_size for p in (house / "wheels").iterdir()) / 2**20
    logger.info(
        "wheelhouse %s: %d wheels, %.0f MB, in %.0f s",
        house,
        len(pins),
        size,
        time.monotonic() - started,
    )
    return house
