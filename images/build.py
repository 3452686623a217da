"""Build (and push) the project's images with a Docker engine: ``make images [push]``.

``python -m images.build [--push] [NAME ...]`` for each image (default: all):

1. the runtime image (``images/runtime/Dockerfile``) on the official base image, pulled if not
   present; where no registry answers, on a Debian root file system made here by
   ``scripts/debian-base.sh`` (only for the Debian runtime; the TensorRT one is skipped with
   its reason);
2. the hash-verified wheelhouse of the image's lock (:mod:`images.wheelhouse`);
3. a build context under ``build/images/<name>``: the wheelhouse (hard links), this package's
   wheel pinned by its hash, ``sbom.py`` and ``images/Dockerfile``;
4. ``docker build --network host`` with the version, git revision and source digest as labels;
   GPU images also get their ``without-links`` target (tag ``<tag>-without-links``, never
   pushed), the same image minus the unversioned library links;
5. the SBOM copied out to ``build/images/sbom/<name>.cdx.json``; sizes and times printed.

An image whose labels already match the sources and runtime is not rebuilt. Exit codes: 0 ok
(skipped images included), 2 usage, 3 no Docker engine, 1 a build failed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from images import wheelhouse
from images.spec import IMAGE_UID, IMAGES_DIR, REPO, ImageSpec, Runtime, image_specs, source_digest
from ppminilm import __version__

logger = logging.getLogger("images.build")

EXIT_NO_ENGINE = 3
BUILD_ROOT = REPO / "build" / "images"
#: Suffix of the local-only tag of a GPU image's ``without-links`` target.
WITHOUT_LINKS = "-without-links"


def docker_cli() -> str:
    return os.environ.get("DOCKER", "docker")


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; on failure raise with its stderr."""
    proc = subprocess.run(
        [docker_cli(), *args],
        capture_output=capture,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        err = (proc.stderr or "")[-3000:] if capture else ""
        raise RuntimeError(f"docker {' '.join(args[:3])} ... failed (exit {proc.returncode}) {err}")
    return proc


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def image_labels(ref: str) -> dict[str, str]:
    proc = docker("image", "inspect", "-f", "{{json .Config.Labels}}", ref, check=False)
    if proc.returncode != 0:
        return {}
    import json

    return json.loads(proc.stdout) or {}


def image_size_mb(ref: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", ref).stdout.strip()) / 1e6


def push_target(name: str) -> str:
    """Where ``--push`` sends an image: ``$IMAGE_REGISTRY``/``$IMAGE_TAG`` applied to its tag,
    as ``make compile`` applies them to the pipeline (``platform.image_refs``)."""
    from ppminilm.cluster import platform

    return platform.image_refs(
        os.environ.get("IMAGE_REGISTRY", ""), os.environ.get("IMAGE_TAG", "")
    )[name]


def git_revision() -> str:
    """HEAD's commit, with ``-dirty`` when the tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _commit_epoch() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "315532800"


def base_image(runtime: Runtime) -> tuple[str | None, str]:
    """The base image to build ``runtime`` on and how it was found (None: not available)."""
    ref = os.environ.get(runtime.base_env) or runtime.base_image
    if image_exists(ref):
        return ref, f"{ref} (present)"
    pull = docker("pull", "--quiet", ref, check=False)
    if pull.returncode == 0:
        return ref, f"{ref} (pulled)"
    reason = (pull.stderr or "").strip().splitlines()[-1:] or ["pull failed"]
    if not runtime.debian_fallback:
        return None, f"{ref} cannot be pulled: {reason[0]}"
    logger.info("%s cannot be pulled (%s); building the Debian base here", ref, reason[0])
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "debian-base.sh"), *runtime.system_packages],
        stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/debian-base.sh failed (exit {proc.returncode})")
    local = proc.stdout.strip().splitlines()[-1]
    return local, f"{local} (built here: no registry serves {ref})"


def ensure_runtime(runtime: Runtime) -> tuple[str | None, str]:
    """Build the runtime image if needed; returns its tag (None: skipped) and the base used."""
    base, how = base_image(runtime)
    if base is None:
        return None, how
    base_id = docker("image", "inspect", "-f", "{{.Id}}", base).stdout.strip()
    key = hashlib.sha256()
    key.update(f"{base_id} {' '.join(runtime.system_packages)} {IMAGE_UID}".encode())
    for path in sorted((IMAGES_DIR / "runtime").iterdir()):
        key.update(path.name.encode() + path.read_bytes())
    tag = f"ppminilm-runtime/{runtime.name}:{key.hexdigest()[:16]}"
    if image_exists(tag):
        return tag, how
    logger.info("building runtime %s on %s", tag, base)
    docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "--build-arg", f"SYSTEM_PACKAGES={' '.join(runtime.system_packages)}",
        "--build-arg", f"IMAGE_UID={IMAGE_UID}", "--tag", tag, str(IMAGES_DIR / "runtime"),
        capture=False,
    )  # fmt: skip
    return tag, how


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for item in src.iterdir():
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)


def make_context(spec: ImageSpec, house: Path, build_root: Path = BUILD_ROOT) -> Path:
    """Assemble ``build/images/<name>``: wheelhouse, project wheel + hash, sbom.py, Dockerfile.

    Nothing else of the repository enters the context (no .env, no runs, no .git).
    """
    ctx = build_root / spec.name
    shutil.rmtree(ctx, ignore_errors=True)
    _link_tree(house / "wheels", ctx / "wheels")
    shutil.copy2(house / wheelhouse.REQUIREMENTS, ctx / "wheels" / wheelhouse.REQUIREMENTS)
    project = ctx / "project"
    project.mkdir()
    # setuptools builds in build/lib and never removes a file deleted from src/: start clean.
    for stale in (REPO / "build").glob("lib*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in (REPO / "build").glob("bdist*"):
        shutil.rmtree(stale, ignore_errors=True)
    # SOURCE_DATE_EPOCH: the same sources give the same wheel, so the layer cache holds.
    env = {**os.environ, "SOURCE_DATE_EPOCH": _commit_epoch()}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(project), str(REPO)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"building the ppminilm wheel failed: {proc.stderr[-2000:]}")
    (wheel,) = project.glob("*.whl")
    sha = wheelhouse.sha256_file(wheel)
    (project / "requirements.txt").write_text(
        f"ppminilm-kfp=={__version__} \\\n    --hash=sha256:{sha}\n", encoding="utf-8"
    )
    shutil.copy2(IMAGES_DIR / "sbom.py", project / "sbom.py")
    shutil.copy2(IMAGES_DIR / "Dockerfile", ctx / "Dockerfile")
    return ctx


@dataclass
class Built:
    """What happened to one image (the summary line)."""

    name: str
    tag: str
    status: str
    seconds: float = 0.0
    size_mb: float = 0.0
    detail: str = ""


def build_image(spec: ImageSpec) -> Built:
    """Build one image (and its ``without-links`` target for GPU images)."""
    started = time.monotonic()
    tag = spec.tag
    runtime, how = ensure_runtime(spec.runtime)
    if runtime is None:
        return Built(spec.name, tag, "skipped", detail=f"{how}; {spec.unavailable_here}")
    digest = source_digest(spec)
    labels = image_labels(tag)
    if (
        labels.get("io.ppminilm.source-digest") == digest
        and labels.get("io.ppminilm.runtime") == runtime
    ):
        return Built(spec.name, tag, "up to date", 0.0, image_size_mb(tag), f"base {how}")
    house = wheelhouse.build(spec.lock_path)
    ctx = make_context(spec, house)
    args = {
        "RUNTIME_IMAGE": runtime,
        "VERSION": __version__,
        "REVISION": git_revision(),
        "SOURCE_DIGEST": digest,
        "IMAGE_NAME": spec.name,
        "TITLE": spec.title,
        "DESCRIPTION": spec.description,
        "BASE_IMAGE": how.split(" ")[0],
    }
    build_args = [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]
    targets = [("image", tag)]
    if spec.doctor_profile != "cpu":
        targets.insert(0, ("without-links", tag + WITHOUT_LINKS))
    for target, ref in targets:
        logger.info("building %s (target %s) -> %s", spec.name, target, ref)
        docker(
            "build", "--network", "host", "--target", target, *build_args,
            "--label", f"io.ppminilm.runtime={runtime}", "--tag", ref, str(ctx), capture=False,
        )  # fmt: skip
    sbom_out = BUILD_ROOT / "sbom" / f"{spec.name}.cdx.json"
    sbom_out.parent.mkdir(parents=True, exist_ok=True)
    container = docker("create", tag).stdout.strip()
    try:
        docker("cp", f"{container}:/opt/ppminilm/sbom.cdx.json", str(sbom_out))
    finally:
        docker("rm", container, check=False)
    seconds = time.monotonic() - started
    return Built(
        spec.name, tag, "built", seconds, image_size_mb(tag), f"base {how}; SBOM {sbom_out}"
    )


def container_start_seconds(ref: str, runs: int = 3) -> float:
    """Median wall time of ``docker run --rm IMAGE true`` (what each pipeline step pays)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        docker("run", "--rm", "--network", "none", "--entrypoint", "true", ref)
        times.append(time.monotonic() - started)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    """Build the named images (default: all); ``--push`` pushes what was built."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="images (default: all)")
    parser.add_argument("--push", action="store_true", help="push each built image")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    specs = image_specs()
    unknown = sorted(set(args.names) - set(specs))
    if unknown:
        parser.error(f"unknown image(s) {unknown}; known: {sorted(specs)}")
    if docker("version", "--format", "{{.Server.Version}}", check=False).returncode != 0:
        logger.error(
            "no Docker engine answers (DOCKER_HOST=%s): run scripts/dockerd.sh ensure, or start"
            " one and set DOCKER_HOST",
            os.environ.get("DOCKER_HOST", "default"),
        )
        return EXIT_NO_ENGINE
    results: list[Built] = []
    failed = False
    for name in args.names or sorted(specs):
        try:
            result = build_image(specs[name])
        except (RuntimeError, OSError) as exc:
            logger.error("%s: %s", name, exc)
            result, failed = (
                Built(name, specs[name].tag, "FAILED", detail=str(exc)[:300]),
                True,
            )
        results.append(result)
        if result.status in ("built", "up to date"):
            start = container_start_seconds(result.tag)
            result.detail += f"; container start {start:.2f} s"
            if args.push:
                target = push_target(name)
                if target != result.tag:
                    docker("tag", result.tag, target)
                logger.info("pushing %s", target)
                docker("push", target, capture=False)
    print("\nimage        status       size      build   tag / notes")
    for r in results:
        size = f"{r.size_mb:,.0f} MB" if r.size_mb else "-"
        took = f"{r.seconds:.0f} s" if r.seconds else "-"
        print(f"{r.name:<12} {r.status:<12} {size:>9} {took:>8}   {r.tag}")
        if r.detail:
            print(f"{'':<45}{r.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
