"""Fixtures of the pipeline tests: the tiny subprocess run, once per session."""

from __future__ import annotations

import pytest

from tests.pipelines.tiny_run import PipelineRun, run_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_subprocess_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The tiny pipeline through SubprocessRunner, once per session."""
    return run_tiny_pipeline(tmp_path_factory.mktemp("tiny-subprocess"))
