"""The real pipeline, end to end, through KFP local execution (tiny sizes, real Paddle).

This is `make run` with every stage shrunk further so the suite stays fast: it trains a
teacher, distils, runs a 2-point grid, prunes, quantizes, benchmarks and writes the report.
"""

import json
import re
from pathlib import Path

import pytest

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

ROWS = ("PP-MiniLM FP32", "pruned FP32", "pruned INT8")


def test_pipeline_runs_end_to_end(tiny_subprocess_run):
    tmp_path = tiny_subprocess_run.out
    last = tiny_subprocess_run.last
    report = tiny_subprocess_run.report
    for row in ROWS:
        line = next(line for line in report.splitlines() if line.startswith(f"| {row}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        # params like 0.4M, FLOPs, speed-up like 1.00x and an accuracy in percent
        assert re.fullmatch(r"[\d.]+M", cells[1]), line
        assert re.fullmatch(r"[\d.]+x", cells[3]), line
        assert re.fullmatch(r"\d+\.\d\d", cells[4]), line
    html = Path(last["report_html"]).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    status = next(tmp_path.glob("pipeline_root/*/record-status/record"))
    assert json.loads(status.read_text())["state"] == "SUCCEEDED"
