"""The real pipeline, end to end, through KFP local execution (tiny sizes, real Paddle).

This is `make run` with every stage shrunk further so the suite stays fast: it trains a
teacher, distils, runs a 2-point grid, prunes, quantizes, benchmarks and writes the report.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


#: Stage overrides on top of the local profile: a few steps each.
TINY = {
    "data": {
        "reviews_train": 400,
        "reviews_dev": 200,
        "reviews_calib": 64,
        "reviews_test": 50,
        "pairs_train": 200,
        "pairs_dev": 100,
        "pairs_calib": 32,
        "pairs_test": 20,
        "num_shards": 2,
    },
    "teacher": {"max_steps": 10, "warmup_steps": 2},
    "distill": {"max_steps": 10, "warmup_steps": 2, "save_steps": 5},
    "finetune": {"max_steps": 15, "eval_steps": 5},
    "prune": {"max_steps": 6, "eval_steps": 3, "importance_examples": 32},
    "quantize": {"algos": ["mse", "avg"], "batch_nums": [2]},
    "infer": {"warmup_batches": 1, "repeats": 1},
}
GRID = [{"batch_size": 16, "learning_rate": 1e-3}, {"batch_size": 32, "learning_rate": 1e-3}]
#: Generous bound for a ~1-2 minute run on a loaded 2-core machine.
RUN_TIMEOUT_S = 900
ROWS = ("PP-MiniLM FP32", "pruned FP32", "pruned INT8")


def test_pipeline_runs_end_to_end(tmp_path):
    # In a subprocess, as `make run` does: KFP's local runner re-indents this process's stdout
    # for good, which would leak into later tests.
    cmd = [sys.executable, "-m", "pipelines.run_local", "--out", str(tmp_path),
           "--overrides", json.dumps(TINY), "--grid", json.dumps(GRID)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Report:" in proc.stdout
    last = json.loads((tmp_path / "last_run.json").read_text())
    report = Path(last["report_markdown"]).read_text(encoding="utf-8")
    for row in ROWS:
        line = next(line for line in report.splitlines() if line.startswith(f"| {row}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        # params like 0.4M, FLOPs, speed-up like 1.00x and an accuracy in percent
        assert re.fullmatch(r"[\d.]+M", cells[1]), line
        assert re.fullmatch(r"[\d.]+x", cells[3]), line
        assert re.fullmatch(r"\d+\.\d\d", cells[4]), line
    html = Path(last["report_html"]).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
