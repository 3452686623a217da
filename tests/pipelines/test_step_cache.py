"""kfp.local's step cache takes our steps' outputs: a second run with the same inputs reuses them.

kfp.local drops a cache entry when one of its output artifacts has no file. Our steps' metrics
(``Metrics``, ``ClassificationMetrics``) used to be logged to ``metadata`` only, so a second
``make run`` re-ran every step. This runs a step that publishes through the runner's
:func:`ppminilm.runner.core.publish`, as every stage does, twice through the real local runner.
"""

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _pipeline():
    from kfp import dsl
    from kfp.dsl import ClassificationMetrics, Metrics, Output

    @dsl.component(base_image="python:3.11")
    def scored(
        counter: str,
        metrics: Output[Metrics],
        confusion: Output[ClassificationMetrics],
    ) -> None:
        from ppminilm.contracts import Confusion, StageSummary
        from ppminilm.runner.core import publish

        with open(counter, "a", encoding="utf-8") as f:
            f.write("ran\n")
        summary = StageSummary(
            stage="scored",
            metrics={"dev_acc": 77.5},
            confusion=Confusion(labels=["0", "1"], matrix=[[3, 1], [0, 4]]),
        )
        publish(summary, metrics=metrics, confusion=confusion)

    @dsl.pipeline(name="cache-check")
    def cache_check(counter: str) -> None:
        scored(counter=counter)

    return cache_check


def test_a_second_run_reuses_a_published_step(tmp_path: Path) -> None:
    import json

    from kfp import local

    counter = tmp_path / "runs.txt"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
        enable_caching=True,
        cache_root=str(tmp_path / "cache"),
    )
    pipeline = _pipeline()
    pipeline(counter=str(counter))
    files = sorted((tmp_path / "root").rglob("metrics")) + sorted(
        (tmp_path / "root").rglob("confusion")
    )
    assert len(files) == 2, files
    assert json.loads(files[0].read_text("utf-8")) == {"dev_acc": 77.5}
    assert json.loads(files[1].read_text("utf-8"))["confusionMatrix"]["rows"][0]["row"] == [3, 1]
    pipeline(counter=str(counter))
    assert counter.read_text("utf-8").splitlines() == ["ran"]  # the second run was a cache hit
    pipeline(counter=str(tmp_path / "other.txt"))  # another input is another key
    assert (tmp_path / "other.txt").read_text("utf-8").splitlines() == ["ran"]
