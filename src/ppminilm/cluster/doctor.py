"""Library check of an image: does every library paddle dlopens resolve? (``ppminilm doctor``)

paddlepaddle-gpu 2.6.2 links no CUDA library; it dlopens them at first use by their
*unversioned* names (``libcudnn.so``, ``libcublas.so``, ``libnvinfer.so``...; see
``paddle/phi/backends/dynload/dynamic_loader.cc``), while CUDA runtime images, ``libnvinfer8``
and NVIDIA's PyPI wheels ship only ``.so.N``. An image that lacks the links builds, imports
paddle, and fails at its first GPU kernel. This check finds that without a GPU and without
importing paddle:

* each library of the image's profile is looked up the way glibc's loader does
  (``LD_LIBRARY_PATH``, ``ld.so.cache`` by SONAME from the ``ld.so.conf`` directories, the
  trusted system directories), its symlinks followed and its ELF header checked; then
  everything it needs (``DT_NEEDED``, and the libraries it is known to load lazily) is resolved
  the same way. ``libcuda.so.1`` is not checked: the container runtime injects it.
* the shared objects of the paddle package itself must resolve too (system libraries).
* versions: cuDNN's major equals paddle's build, cuBLAS's major equals its CUDA major, and
  TensorRT's version equals the one paddle was compiled against.

``root`` may be any directory holding a root file system (an unpacked image), so the check is
testable on a fake one; on ``/`` it also ``dlopen``\\ s each library, which is the final word.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ppminilm.cluster.loader import TRUSTED_DIRS, Found, Loader, version_tuple

logger = logging.getLogger(__name__)

#: Where ``make_links`` puts the unversioned links: a trusted directory, where Debian's -dev
#: packages put the same links (a directory listed only in ld.so.conf would not do: the cache
#: holds SONAMEs, and no library's SONAME is its unversioned name).
LINK_DIR = "/usr/lib/x86_64-linux-gnu"
#: ld.so.conf file naming the directories of the links' targets (for their versioned needs).
LINK_CONF = "/etc/ld.so.conf.d/ppminilm-links.conf"
#: The TensorRT major.minor paddlepaddle-gpu 2.6.2 (CUDA 11.8) is compiled against.
TENSORRT_COMPILE_VERSION = (8, 5)
_SITE_GLOBS = ("opt/venv/lib/python3*/site-packages", "usr/local/lib/python3*/site-packages",
               "usr/local/lib/python3*/dist-packages", "usr/lib/python3/dist-packages")  # fmt: skip
_VERSION_RE = re.compile(r"^(\w+)\s*=\s*'([^']*)'", re.M)


@dataclass(frozen=True)
class Library:
    """A library paddle dlopens by name.

    Attributes:
        name: The unversioned name paddle passes to ``dlopen``.
        purpose: What paddle uses it for (shown in the report).
        required: False where paddle only warns when it is missing.
        version_of: ``cudnn``, ``cuda`` or ``tensorrt``: the build version its file name must match.
        also_loads: Libraries it dlopens itself by name (``{version}``: its own full version).
        extra_dirs: Directories paddle adds to the search for this library.
    """

    name: str
    purpose: str
    required: bool = True
    version_of: str = ""
    also_loads: tuple[str, ...] = ()
    extra_dirs: tuple[str, ...] = ()


_CUDNN = Library(
    "libcudnn.so", "cuDNN", version_of="cudnn", extra_dirs=("/usr/local/cuda/lib64",),
    also_loads=tuple(f"libcudnn_{part}_{kind}.so.8" for part in ("ops", "cnn", "adv")
                     for kind in ("infer", "train")),
)  # fmt: skip
_CUDA_MATH = (
    _CUDNN,
    Library("libcublas.so", "cuBLAS (matmul)", version_of="cuda"),
    Library("libcublasLt.so", "cuBLASLt (fused matmul)", version_of="cuda"),
    Library("libcurand.so", "cuRAND (random ops)"),
    Library("libcusolver.so", "cuSOLVER (linalg ops)"),
    Library("libcusparse.so", "cuSPARSE (sparse ops)"),
    Library("libcufft.so", "cuFFT (fft ops)"),
    Library("libnvrtc.so", "NVRTC (runtime kernel compilation)", required=False),
    Library("libcupti.so", "CUPTI (profiler)", required=False),
)
_NCCL = Library("libnccl.so", "NCCL (multi-GPU and multi-node collectives)")
_TENSORRT = (
    Library("libnvinfer.so", "TensorRT", version_of="tensorrt",
            also_loads=("libnvinfer_builder_resource.so.{version}",)),
    Library("libnvinfer_plugin.so", "TensorRT plugins", version_of="tensorrt"),
)  # fmt: skip

#: Libraries each image must resolve, by profile (the image names of ``platform.IMAGES``).
PROFILES: dict[str, tuple[Library, ...]] = {
    "cpu": (),
    "gpu-train": (*_CUDA_MATH, _NCCL),
    "gpu-infer": (*_CUDA_MATH, *_TENSORRT),
}


@dataclass
class Check:
    """One line of the report.

    Attributes:
        name: The library name or paddle file checked.
        ok: Whether it passed.
        required: A failed optional check is a warning, not a failure.
        detail: Resolution chain or what is wrong.
    """

    name: str
    ok: bool
    required: bool
    detail: str


@dataclass
class Report:
    """The result of :func:`check`."""

    profile: str
    root: str
    paddle: dict[str, str]
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.required]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "profile": self.profile,
            "root": self.root,
            "paddle": self.paddle,
            "ok": self.ok,
            "checks": [vars(c) for c in self.checks],
        }


def site_packages(loader: Loader, live: bool) -> list[PurePosixPath]:
    """Site-packages directories of the root (on ``/`` with ``live``, the running venv's)."""
    dirs: list[PurePosixPath] = []
    if live:
        spec = importlib.util.find_spec("paddle")
        if spec is not None and spec.submodule_search_locations:
            dirs.append(PurePosixPath(next(iter(spec.submodule_search_locations))).parent)
    for pattern in _SITE_GLOBS:
        for match in sorted(loader.root.glob(pattern)):
            path = PurePosixPath("/" + match.relative_to(loader.root).as_posix())
            if path not in dirs:
                dirs.append(path)
    return dirs


def paddle_build(loader: Loader, sites: list[PurePosixPath]) -> tuple[PurePosixPath | None, dict]:
    """The paddle package directory and its build info (``paddle/version/__init__.py``)."""
    for site in sites:
        version_file = loader.host(site / "paddle" / "version" / "__init__.py")
        if version_file.is_file():
            text = version_file.read_text(encoding="utf-8", errors="replace")
            return site / "paddle", dict(_VERSION_RE.findall(text))
    return None, {}


def _version_problem(lib: Library, found: Found, build: dict) -> str:
    have = version_tuple(found.real.name) or version_tuple(found.info.soname)
    if lib.version_of == "cudnn":
        want = build.get("cudnn_version", "")
    elif lib.version_of == "cuda":
        want = build.get("cuda_version", "")
    elif lib.version_of == "tensorrt":
        want = ".".join(map(str, TENSORRT_COMPILE_VERSION))
    else:
        return ""
    want_t = tuple(int(p) for p in want.split(".") if p.isdigit())
    if not have or not want_t:
        return ""
    # Full versions are compared as far as both are known; cuDNN/CUDA by major (minor
    # releases are compatible), TensorRT by major.minor (engines and plugins are not).
    depth = 2 if lib.version_of == "tensorrt" else 1
    if have[:depth] != want_t[:depth] and len(have) >= depth:
        got = ".".join(map(str, have))
        return f"version {got} but paddle was built with {lib.version_of} {want}"
    return ""


def check(profile: str, root: Path = Path("/"), ld_library_path: Iterable[str] | None = None,
          dlopen: bool | None = None) -> Report:  # fmt: skip
    """Check a root file system against a profile's libraries.

    Args:
        profile: A key of :data:`PROFILES`.
        root: The root file system.
        ld_library_path: ``LD_LIBRARY_PATH`` entries (default: this process's on ``/``, none
            on another root).
        dlopen: Also ``dlopen`` each library (default: when ``root`` is ``/``).

    Returns:
        The report; ``report.ok`` is False when a required library does not resolve.

    Raises:
        ValueError: For an unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown doctor profile {profile!r}; expected one of {sorted(PROFILES)}")
    live = root.resolve() == Path("/")
    if ld_library_path is None:
        ld_library_path = os.environ.get("LD_LIBRARY_PATH", "").split(":") if live else []
    loader = Loader(root, ld_library_path)
    sites = site_packages(loader, live)
    paddle_dir, build = paddle_build(loader, sites)
    report = Report(profile, str(root), build)
    gpu = profile != "cpu"
    if paddle_dir is None:
        report.checks.append(Check("paddle", False, True, f"no paddle package under {root}"))
    elif gpu and build.get("cuda_version", "False") == "False":
        report.checks.append(Check("paddle", False, True, "a CPU build of paddle in a GPU image"))
    objects = _paddle_objects(loader, paddle_dir) if paddle_dir is not None else []
    # What paddle has loaded when it dlopens a library (libdnnl, libiomp5, libstdc++...).
    provided = frozenset(o.info.soname or o.real.name for o in objects)
    for lib in PROFILES[profile]:
        use_dlopen = dlopen if dlopen is not None else live
        report.checks.append(_check_library(loader, lib, build, use_dlopen, provided))
    if objects:
        report.checks += _check_paddle_objects(loader, objects)
    return report


def _check_library(
    loader: Loader, lib: Library, build: dict, dlopen: bool, provided: frozenset[str]
) -> Check:
    found = loader.find(lib.name, extra=lib.extra_dirs)
    label = f"{lib.name} ({lib.purpose})"
    if found is None:
        detail = "not found"
        if dlopen:
            error = _dlopen_error(lib.name)
            if error is None:
                return Check(lib.name, True, lib.required, f"{label}: loaded by dlopen")
            detail += f"; dlopen: {error}"
        return Check(lib.name, False, lib.required, f"{label}: {detail}")
    chain = str(found.path) if found.path == found.real else f"{found.path} -> {found.real}"
    version = ".".join(map(str, version_tuple(found.real.name)))
    also = tuple(a.format(version=version) for a in lib.also_loads)
    problems = loader.unresolved_needs(found, also, provided)
    mismatch = _version_problem(lib, found, build)
    if mismatch:
        problems.insert(0, mismatch)
    if not problems and dlopen:
        error = _dlopen_error(lib.name)
        if error is not None:
            problems.append(f"dlopen: {error}")
    if problems:
        return Check(lib.name, False, lib.required, f"{label}: {chain}: {'; '.join(problems)}")
    return Check(lib.name, True, lib.required, f"{label}: {chain} (via {found.via})")


def _paddle_objects(loader: Loader, paddle_dir: PurePosixPath) -> list[Found]:
    host = loader.host(paddle_dir)
    found = []
    for obj in sorted(host.glob("base/*.so")) + sorted(host.glob("libs/*.so*")):
        path = PurePosixPath("/" + obj.relative_to(loader.root).as_posix())
        if (item := loader.try_path(path, "path")) is not None:
            found.append(item)
    return found


def _check_paddle_objects(loader: Loader, objects: list[Found]) -> list[Check]:
    """Every paddle shared object's needs resolve (paddle's own libraries count as loaded)."""
    provided = frozenset(o.info.soname or o.real.name for o in objects)
    checks = []
    for obj in objects:
        problems = sorted(set(loader.unresolved_needs(obj, provided=provided)))
        if problems:
            name = f"paddle/{obj.path.parent.name}/{obj.path.name}"
            checks.append(Check(name, False, True, f"{name}: {'; '.join(problems)}"))
    if not checks:
        checks.append(Check("paddle", True, True, f"{len(objects)} paddle shared objects resolve"))
    return checks


def _dlopen_error(name: str) -> str | None:
    try:
        ctypes.CDLL(name, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        return str(exc)
    return None


def make_links(profile: str, root: Path = Path("/"), link_dir: str = LINK_DIR) -> list[str]:
    """Create the unversioned links a profile's libraries lack, and the ld.so.conf for them.

    For each library that does not resolve by its unversioned name, the newest ``name.N...``
    in the search directories or in the NVIDIA wheels (``site-packages/nvidia/*/lib``) gets a
    link ``link_dir/name``; the targets' directories go into :data:`LINK_CONF` so what they
    need by versioned name resolves too (run ``ldconfig`` afterwards).

    Args:
        profile: A key of :data:`PROFILES`.
        root: The root file system to change.
        link_dir: A trusted directory for the links.

    Returns:
        ``"link -> target"`` lines for what was created.

    Raises:
        ValueError: For an unknown profile.
        FileNotFoundError: Naming a required library of which no versioned file exists.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown doctor profile {profile!r}; expected one of {sorted(PROFILES)}")
    live = root.resolve() == Path("/")
    loader = Loader(root, os.environ.get("LD_LIBRARY_PATH", "").split(":") if live else [])
    wheel_dirs = [
        str(PurePosixPath("/" + d.relative_to(root).as_posix()))
        for site in site_packages(loader, live)
        for d in sorted(loader.host(site / "nvidia").glob("*/lib"))
    ]
    search = [*loader.ld_library_path, *loader.conf_dirs, *TRUSTED_DIRS, *wheel_dirs]
    created: list[str] = []
    conf_dirs: list[str] = []
    for lib in PROFILES[profile]:
        if loader.find(lib.name, extra=lib.extra_dirs) is not None:
            continue
        candidates = []
        for d in (*search, *lib.extra_dirs):
            host = loader.host(PurePosixPath(d))
            for entry in host.glob(f"{lib.name}.*") if host.is_dir() else ():
                path = PurePosixPath(d) / entry.name
                if version_tuple(entry.name) and loader.try_path(path, "candidate") is not None:
                    candidates.append(path)
        if not candidates:
            if lib.required:
                raise FileNotFoundError(f"{lib.name}: no {lib.name}.N file to link to in {search}")
            logger.warning("%s (optional) has no versioned file to link to", lib.name)
            continue
        target = max(candidates, key=lambda p: version_tuple(p.name))
        link = loader.host(PurePosixPath(link_dir) / lib.name)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(str(target))
        created.append(f"{link_dir}/{lib.name} -> {target}")
        if str(target.parent) not in (*loader.conf_dirs, *TRUSTED_DIRS, *conf_dirs):
            conf_dirs.append(str(target.parent))
    if conf_dirs:
        conf = loader.host(PurePosixPath(LINK_CONF))
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            "# Directories of the libraries paddle dlopens (ppminilm doctor --make-links)\n"
            + "".join(f"{d}\n" for d in conf_dirs),
            encoding="utf-8",
        )
    return created


def format_report(report: Report) -> str:
    """The report as text lines (one per check)."""
    build = report.paddle
    head = (
        f"profile {report.profile}, root {report.root}: paddle {build.get('full_version', '?')}"
        f" (CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')})"
    )
    lines = [head]
    for c in report.checks:
        mark = "ok     " if c.ok else ("MISSING" if c.required else "warning")
        lines.append(f"  {mark} {c.detail}")
    return "\n".join(lines)
