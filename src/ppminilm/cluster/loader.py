"""glibc's search for shared objects, emulated on a root file system that is not executed.

What ``dlopen(name)`` and ``DT_NEEDED`` resolve to: ``DT_RPATH`` (without ``DT_RUNPATH``),
``LD_LIBRARY_PATH``, ``DT_RUNPATH`` (``$ORIGIN`` is the directory the object was found in, not
where its symlinks lead), ``ld.so.cache`` (the SONAMEs of the libraries in the ``ld.so.conf``
and trusted directories, as ``ldconfig`` builds it), then the trusted directories themselves.
Files of another ELF class or machine are skipped, as the loader skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ppminilm.cluster.elf import ElfInfo, NotAnElfError, read_elf

#: glibc's trusted directories on x86-64 Debian/Ubuntu (searched after the cache).
TRUSTED_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")  # fmt: skip
_MAX_LINKS = 40


@dataclass(frozen=True)
class Found:
    """Where a name resolved: the path as found (``$ORIGIN`` is its directory) and the file."""

    path: PurePosixPath
    real: PurePosixPath
    info: ElfInfo
    via: str


def version_tuple(filename: str) -> tuple[int, ...]:
    """``libcudnn.so.8.6.0`` -> ``(8, 6, 0)``; ``libcudnn.so`` -> ``()``."""
    _, _, suffix = filename.partition(".so.")
    parts = []
    for part in suffix.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


class Loader:
    """glibc's search for a shared object, on a root file system that is not executed.

    Args:
        root: The root file system (``/`` for this machine).
        ld_library_path: ``LD_LIBRARY_PATH`` entries as the process would see them.
    """

    def __init__(self, root: Path, ld_library_path: Iterable[str] = ()) -> None:
        self.root = root
        self.ld_library_path = tuple(p for p in ld_library_path if p)
        self.conf_dirs = tuple(self._conf_dirs(PurePosixPath("/etc/ld.so.conf"), set()))
        self._sonames: dict[str, dict[str, PurePosixPath]] = {}
        self._elf: dict[PurePosixPath, ElfInfo | None] = {}

    def host(self, path: PurePosixPath) -> Path:
        """The host path of an absolute path inside the root."""
        return self.root / str(path).lstrip("/")

    def _conf_dirs(self, conf: PurePosixPath, seen: set[str]) -> list[str]:
        host = self.host(conf)
        if str(conf) in seen or not host.is_file():
            return []
        seen.add(str(conf))
        dirs: list[str] = []
        for raw in host.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("include "):
                pattern = line.split(None, 1)[1]
                if not pattern.startswith("/"):
                    pattern = str(conf.parent / pattern)
                for match in sorted(self.root.glob(pattern.lstrip("/"))):
                    inner = PurePosixPath("/" + match.relative_to(self.root).as_posix())
                    dirs += self._conf_dirs(inner, seen)
            elif line.startswith("/"):
                dirs.append(line.rstrip("/"))
        return dirs

    def realpath(self, path: PurePosixPath) -> PurePosixPath | None:
        """Follow symlinks inside the root (absolute targets stay in it); None if broken."""
        parts = list(path.parts[1:])
        current = PurePosixPath("/")
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                current = current.parent
                continue
            candidate = current / part
            host = self.host(candidate)
            if host.is_symlink():
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = PurePosixPath(os.readlink(host))
                if target.is_absolute():
                    current = PurePosixPath("/")
                parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
                continue
            if not host.exists():
                return None
            current = candidate
        return current

    def elf(self, real: PurePosixPath) -> ElfInfo | None:
        if real not in self._elf:
            try:
                self._elf[real] = read_elf(self.host(real))
            except (OSError, NotAnElfError):
                self._elf[real] = None
        return self._elf[real]

    def try_path(self, path: PurePosixPath, via: str) -> Found | None:
        real = self.realpath(path)
        if real is None or not self.host(real).is_file():
            return None
        info = self.elf(real)
        if info is None or not info.is_x86_64_shared_object:
            return None  # the loader skips files of the wrong class or machine
        return Found(path, real, info, via)

    def _soname_index(self, directory: str) -> dict[str, PurePosixPath]:
        """SONAME -> path for one directory, as ldconfig caches it."""
        if directory not in self._sonames:
            index: dict[str, PurePosixPath] = {}
            host = self.host(PurePosixPath(directory))
            if host.is_dir():
                for entry in sorted(host.iterdir()):
                    if not entry.name.startswith("lib") or ".so" not in entry.name:
                        continue
                    path = PurePosixPath(directory) / entry.name
                    real = self.realpath(path)
                    info = self.elf(real) if real is not None else None
                    if info is not None and info.soname and info.is_x86_64_shared_object:
                        index.setdefault(info.soname, path)
            self._sonames[directory] = index
        return self._sonames[directory]

    def find(self, name: str, *, origin: PurePosixPath | None = None,
             rpath: tuple[str, ...] = (), runpath: tuple[str, ...] = (),
             extra: tuple[str, ...] = ()) -> Found | None:  # fmt: skip
        """Resolve ``name`` as ``dlopen``/``DT_NEEDED`` would from an object at ``origin``.

        Order: ``DT_RPATH`` (only without ``DT_RUNPATH``), ``LD_LIBRARY_PATH``, ``DT_RUNPATH``,
        the cache (SONAMEs in the ld.so.conf and trusted directories), the trusted
        directories, then ``extra`` (directories paddle adds itself).
        """
        if "/" in name:
            return self.try_path(PurePosixPath(name), "path")

        def expand(dirs: tuple[str, ...]) -> list[str]:
            out = []
            for d in dirs:
                if "$ORIGIN" in d or "${ORIGIN}" in d:
                    if origin is None:
                        continue
                    d = d.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))
                out.append(os.path.normpath(d))
            return out

        steps: list[tuple[str, list[str]]] = []
        if rpath and not runpath:
            steps.append(("RPATH", expand(rpath)))
        steps.append(("LD_LIBRARY_PATH", list(self.ld_library_path)))
        steps.append(("RUNPATH", expand(runpath)))
        for via, dirs in steps:
            for d in dirs:
                found = self.try_path(PurePosixPath(d) / name, via)
                if found is not None:
                    return found
        for d in (*self.conf_dirs, *TRUSTED_DIRS):
            path = self._soname_index(d).get(name)
            if path is not None and (found := self.try_path(path, "ld.so.cache")) is not None:
                return found
        for via, dirs in (
            ("system directory", list(TRUSTED_DIRS)),
            ("paddle's extra", list(extra)),
        ):
            for d in dirs:
                found = self.try_path(PurePosixPath(d) / name, via)
                if found is not None:
                    return found
        return None

    def unresolved_needs(
        self, found: Found, also: Iterable[str] = (), provided: frozenset[str] = frozenset()
    ) -> list[str]:
        """Names in the ``DT_NEEDED`` closure of ``found`` (plus ``also``) that do not resolve.

        Args:
            found: The object.
            also: Names it loads by itself (``dlopen``), resolved from it.
            provided: SONAMEs already loaded in the process (the loader reuses those).

        Returns:
            ``"parent needs name"`` strings, empty when everything resolves.
        """
        missing: list[str] = []
        seen: set[PurePosixPath] = set()
        queue: list[tuple[Found, tuple[str, ...]]] = [(found, tuple(also))]
        while queue:
            obj, extra_names = queue.pop()
            if obj.real in seen:
                continue
            seen.add(obj.real)
            for need in (*obj.info.needed, *extra_names):
                if need in provided:
                    continue
                dep = self.find(need, origin=obj.path.parent, rpath=obj.info.rpath,
                                runpath=obj.info.runpath)  # fmt: skip
                if dep is None:
                    missing.append(f"{obj.real.name} needs {need}")
                else:
                    queue.append((dep, ()))
        return missing
