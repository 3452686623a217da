"""What `make run` shows: the stage list and the ETA's work scale (no run, no subprocess)."""

from __future__ import annotations

import pytest

from pipelines.console import REFERENCE_SECONDS, STAGES, _stage_of, work_scale


def test_every_search_step_has_a_stage_header() -> None:
    assert len(STAGES) == len(REFERENCE_SECONDS)
    for task, stage in (
        ("check-search", "build data"),
        ("prune-2", "OFA width pruning"),
        ("take-width", "INT8 quantization"),
        ("quantize-2", "INT8 quantization"),
        ("time-rows-2", "benchmark + timing"),
        ("select-candidate-2", "search + report"),
    ):
        index = _stage_of(task)
        assert index is not None and STAGES[index][1] == stage, task


def test_work_scale_of_the_local_profile_and_of_fewer_widths() -> None:
    assert work_scale("local", {}, 4) == [1.0] * len(STAGES)
    one_width = work_scale("local", {}, 4, widths=1)
    assert one_width[5] == pytest.approx(0.5)  # one supernet width instead of two
    assert one_width[6] == pytest.approx(0.5)  # one PTQ search instead of two
    # the prune batch size is the grid point's (unset in the profile): a max_steps override
    # still scales the pruning estimate
    assert work_scale("local", {"prune": {"max_steps": 160}}, 4)[5] == pytest.approx(2.0)
