"""Run the local pipeline in the real images: ``make run RUNNER=docker`` (DockerRunner).

Every step runs in the CPU image as the image's non-root user (uid 10001) with the pipeline root
bind-mounted at the same path, so artifacts land on the host. What that needs, and what this
module sets up:

* the pipeline root is created by the host user; the container's primary group is the host
  user's group and the root directory is group-writable and setgid, so the steps (whose
  entrypoint sets umask 0002) can write there and the host user can read and delete the result;
* the image must be the one built from this working tree (its ``io.ppminilm.source-digest``
  label), or the run would silently use old code;
* host networking (the engine may have no bridge network), and the thread and BLAS settings of
  the host process, so both runners compute the same numbers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ppminilm.cluster import platform

logger = logging.getLogger("ppminilm.run_local")

#: uid of the images' user.
IMAGE_UID = platform.IMAGE_UID
#: Host variables passed into every step when set (threads, BLAS kernels, paddle flags).
PASSED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
              "OPENBLAS_L2_SIZE", "CPU_NUM", "PYTHONHASHSEED")  # fmt: skip
PASSED_PREFIXES = ("FLAGS_", "PPMINILM_")


class ContainerRunError(RuntimeError):
    """The container run cannot start: no engine, no image, or a stale image."""


def step_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The host variables every container step gets."""
    environ = dict(os.environ if environ is None else environ)
    return {
        k: v for k, v in sorted(environ.items()) if k in PASSED_ENV or k.startswith(PASSED_PREFIXES)
    }


def prepare_pipeline_root(root: Path) -> None:
    """Make ``root`` writable for the container user: group = host gid, mode 2775."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o2775)


def check_image(client: Any, image: str, expected_digest: str) -> str:
    """The image's id; raises when it is missing or was built from other sources.

    Raises:
        ContainerRunError: Naming the image and ``make images``.
    """
    import docker

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ContainerRunError(
            f"image {image} is not built here: run `make images` first"
        ) from None
    digest = (found.labels or {}).get("io.ppminilm.source-digest", "")
    if digest != expected_digest:
        raise ContainerRunError(
            f"image {image} was built from other sources (source digest {digest[:12] or 'none'},"
            f" working tree {expected_digest[:12]}): run `make images` again"
        )
    return str(found.id)


#: Label on every step container of one run, so an interrupted run can stop its containers.
RUN_LABEL = "io.ppminilm.run"


def stop_run_containers(run_id: str) -> int:
    """Stop the step containers of run ``run_id`` that are still running (an interrupted run:
    ``DockerRunner`` leaves them behind). Returns how many were stopped."""
    import docker

    client = docker.from_env()
    try:
        containers = client.containers.list(filters={"label": f"{RUN_LABEL}={run_id}"})
        for container in containers:
            container.stop(timeout=10)
        return len(containers)
    finally:
        client.close()


def docker_runner(image: str, expected_digest: str, run_id: str) -> tuple[Any, str]:
    """A ``kfp.local.DockerRunner`` for ``image`` and the image id (for the cache key).

    Raises:
        ContainerRunError: Without an engine, without the image, or with a stale one.
    """
    import docker
    from kfp import local

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ContainerRunError(
            f"no Docker engine answers ({os.environ.get('DOCKER_HOST', 'default socket')}):"
            f" {exc}; start one (scripts/dockerd.sh start) or set DOCKER_HOST"
        ) from None
    try:
        image_id = check_image(client, image, expected_digest)
    finally:
        client.close()
    runner = local.DockerRunner(
        network_mode="host",
        user=f"{IMAGE_UID}:{os.getgid()}",
        environment=step_environment(),
        labels={RUN_LABEL: run_id},
    )
    return runner, image_id
