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


def test_eta_pace_waits_for_enough_work_and_is_clamped() -> None:
    import io

    from pipelines.console import MIN_PACE_SECONDS, PACE_LIMITS, StageClock

    clock = StageClock(scale=[1.0] * len(STAGES), out=io.StringIO())
    assert clock.pace() == 1.0  # nothing done yet
    # A slow data step alone (41 s against 7) is too little work to scale the ETA by.
    clock.first_start[0], clock.last_end[0] = 0.0, 41.0
    clock.first_start[1] = 41.0  # the teacher is running
    assert REFERENCE_SECONDS[0] < MIN_PACE_SECONDS
    assert clock.pace() == 1.0
    # Teacher done too, ten times slower than the reference: clamped.
    clock.last_end[1] = 41.0 + 10 * REFERENCE_SECONDS[1]
    clock.first_start[2] = clock.last_end[1]
    assert clock.pace() == PACE_LIMITS[1]
    # At the reference pace: 1.0.
    clock.last_end[0] = REFERENCE_SECONDS[0]
    clock.first_start[1] = REFERENCE_SECONDS[0]
    clock.last_end[1] = REFERENCE_SECONDS[0] + REFERENCE_SECONDS[1]
    assert clock.pace() == pytest.approx(1.0)
