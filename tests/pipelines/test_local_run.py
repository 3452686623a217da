"""The real pipeline, end to end, through KFP local execution (tiny sizes, real Paddle).

This is `make run` with every stage shrunk further so the suite stays fast: it trains a
teacher, distils, runs a 2-point grid, prunes, quantizes, benchmarks and writes the report.
"""

import json
import re
import subprocess
import sys

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
    "infer": {
        "warmup_batches": 1,
        "repeats": 1,
        "timing": {"rounds": 2, "min_time_s": 0.2},
        # A small speed baseline keeps the test quick; the local profile's is the teacher shape.
        "baseline": {"num_layers": 2, "hidden_size": 128, "num_heads": 4, "intermediate_size": 256},
    },
}
GRID = [{"batch_size": 16, "learning_rate": 1e-3}, {"batch_size": 32, "learning_rate": 1e-3}]
#: Generous bound for a ~1-2 minute run on a loaded 2-core machine.
RUN_TIMEOUT_S = 900
#: Row names of the local profile's report: honest about what the models are.
ROWS = (
    "2L-128H teacher shape FP32 (random weights)",
    "local 6L-64H student FP32",
    "local 6L-64H width 0.75 FP32",
    "local 6L-64H width 0.75 INT8",
)
#: The whole log of a quiet run stays short enough to read.
MAX_LOG_LINES = 600


def test_pipeline_runs_end_to_end(tmp_path):
    # In a subprocess, as `make run` does: KFP's local runner re-indents this process's stdout
    # for good, which would leak into later tests.
    cmd = [sys.executable, "-m", "pipelines.run_local", "--out", str(tmp_path),
           "--overrides", json.dumps(TINY), "--grid", json.dumps(GRID)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert len(log.splitlines()) < MAX_LOG_LINES, log[-3000:]
    assert "Got executor_input" not in log and "[stage 9/9] report" in log
    assert re.search(r"\[finetune local_reviews bs16_lr0\.001\] finetune local_reviews step", log)
    for name in ("report.md", "report.html", "report.json"):
        assert (tmp_path / name).is_file() and f"{name}: {tmp_path / name}" in proc.stdout
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "data:image" not in report
    for link in re.findall(r"\]\((plots/[^)]+\.png)\)", report):
        assert (tmp_path / link).is_file(), link
    for i, row in enumerate(ROWS):
        line = next(line for line in report.splitlines() if line.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        # params like 0.6M, FLOPs, speed-up like 1.00x ±3% and an accuracy in percent
        assert re.fullmatch(r"[\d.]+M", cells[1]), line
        assert re.fullmatch(r"[\d.]+x ±\d+%", cells[3]), line
        assert re.fullmatch(r"\d+\.\d\d" if i else "n/m", cells[4]), line
    assert "Majority-class accuracy" in report and "at 64 tokens" in report
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    headline = json.loads((tmp_path / "report.json").read_text())["headline"]
    assert headline["speedup"] > 0 and 0 < headline["avg_dev_acc"] <= 1
