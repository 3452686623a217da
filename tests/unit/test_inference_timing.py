"""The timing protocol on rows of known cost: interleaving, autorange, speed-ups and spread."""

from __future__ import annotations

import time

import pytest

from ppminilm.config import TimingConfig
from ppminilm.errors import ConfigError
from ppminilm.inference.timing import time_interleaved, timed_rows, trimmed_mean

#: Sleep-based rows are exact to well under this share on any machine.
RATIO_TOLERANCE = 0.25


def _sleeper(seconds: float, calls: list[str], name: str):
    def run() -> None:
        calls.append(name)
        time.sleep(seconds)

    return run


def test_rows_interleave_rotate_and_autorange() -> None:
    calls: list[str] = []
    runs = {
        # Sleeps long against scheduler overshoot on a loaded machine (a few ms per wake-up).
        "baseline": _sleeper(0.08, calls, "baseline"),
        "fast": _sleeper(0.02, calls, "fast"),
        "mid": _sleeper(0.04, calls, "mid"),
    }
    protocol = TimingConfig(warmup_passes=1, rounds=3, min_time_s=0.12)
    raw = time_interleaved(runs, protocol)
    assert calls[:3] == ["baseline", "fast", "mid"]  # warm-up, once each
    blocks = [name for i, name in enumerate(calls[3:]) if i == 0 or calls[3:][i - 1] != name]
    # Every round times every row; the order rotates from round to round.
    assert blocks == ["baseline", "fast", "mid", "fast", "mid", "baseline", "mid", "baseline",
                      "fast"]  # fmt: skip
    for seconds, passes in raw.values():
        assert len(seconds) == len(passes) == 3
        # Autorange: whole passes until the budget is reached, not one pass beyond it.
        for per_pass, n in zip(seconds, passes, strict=True):
            assert n * per_pass >= protocol.min_time_s
            assert (n - 1) * per_pass < protocol.min_time_s + per_pass
    assert min(raw["fast"][1]) > max(raw["baseline"][1])  # quick rows repeat more
    rows = timed_rows(raw, "baseline", {"fast": {"precision": "int8"}})
    assert rows["baseline"].speedup == pytest.approx(1.0)
    assert rows["fast"].speedup == pytest.approx(4.0, rel=RATIO_TOLERANCE)
    assert rows["mid"].speedup == pytest.approx(2.0, rel=RATIO_TOLERANCE)
    assert rows["fast"].speedup_low <= rows["fast"].speedup <= rows["fast"].speedup_high
    assert rows["fast"].precision == "int8" and rows["baseline"].precision == "fp32"


def test_protocol_is_validated_and_described() -> None:
    with pytest.raises(ConfigError, match="rounds"):
        TimingConfig(rounds=0)
    with pytest.raises(ConfigError, match="min_time_s"):
        TimingConfig(min_time_s=0)
    text = TimingConfig(rounds=5, min_time_s=1.5).describe()
    assert "5 rounds" in text and "1.5 s" in text and "interleaved" in text
    with pytest.raises(ConfigError, match="threads"):
        TimingConfig(threads=-1)
    assert "on 1 math thread:" in TimingConfig().describe(threads=1)
    assert "on 2 math threads:" in TimingConfig().describe(threads=2)


def test_speedup_is_the_trimmed_mean_of_the_rounds_ratios() -> None:
    # One disturbed round (the row stalled: ratio 1.0) and one lucky one (ratio 4.0) move a
    # plain mean; the trimmed mean drops them and keeps the rounds' common ratio of 2.
    base = [1.0] * 6
    row = [0.5, 0.5, 1.0, 0.5, 0.25, 0.5]
    rows = timed_rows({"baseline": (base, [1] * 6), "row": (row, [1] * 6)}, "baseline")
    assert rows["row"].speedup == pytest.approx(2.0)
    assert (rows["row"].speedup_low, rows["row"].speedup_high) == (1.0, 4.0)
    assert rows["row"].median_s == pytest.approx(0.5)
    # Under five rounds nothing is dropped.
    assert trimmed_mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert trimmed_mean([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no values"):
        trimmed_mean([])
