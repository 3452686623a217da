"""The container runner's set-up (no engine needed): environment, pipeline root, image check."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import docker
import pytest

from pipelines import containers


class _Image:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.id = "sha256:" + "ab" * 32


class _Images:
    def __init__(self, image: _Image | None) -> None:
        self.image = image

    def get(self, name: str) -> _Image:
        if self.image is None:
            raise docker.errors.ImageNotFound(name)
        return self.image


class _Client:
    """The two calls check_image makes of docker.DockerClient."""

    def __init__(self, image: _Image | None) -> None:
        self.images = _Images(image)


def test_step_environment_passes_threads_blas_and_paddle_flags_only() -> None:
    env = {"OMP_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell", "FLAGS_use_mkldnn": "1",
           "PPMINILM_S3_ENDPOINT": "http://127.0.0.1:9000", "HOME": "/root", "PATH": "/bin",
           "AWS_SECRET_ACCESS_KEY": "never"}  # fmt: skip
    assert containers.step_environment(env) == {
        "FLAGS_use_mkldnn": "1",
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_CORETYPE": "Haswell",
        "PPMINILM_S3_ENDPOINT": "http://127.0.0.1:9000",
    }


def test_pipeline_root_is_group_writable_and_setgid(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "pipeline_root"
    containers.prepare_pipeline_root(root)
    mode = root.stat().st_mode
    assert mode & stat.S_ISGID and mode & stat.S_IWGRP
    assert root.stat().st_gid == os.getgid()


def test_missing_or_stale_image_is_refused_with_the_fix() -> None:
    with pytest.raises(containers.ContainerRunError, match="not built here: run `make images`"):
        containers.check_image(_Client(None), "img:1", "d" * 64)
    stale = _Client(_Image({"io.ppminilm.source-digest": "e" * 64}))
    with pytest.raises(containers.ContainerRunError, match="built from other sources"):
        containers.check_image(stale, "img:1", "d" * 64)
    current = _Client(_Image({"io.ppminilm.source-digest": "d" * 64}))
    assert containers.check_image(current, "img:1", "d" * 64).startswith("sha256:")
