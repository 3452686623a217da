"""The real pipeline, end to end, through KFP local execution (tiny sizes, real Paddle).

This is `make run` with every stage shrunk further so the suite stays fast: it trains a
teacher, distils, runs a 2-point grid, prunes, quantizes, benchmarks and writes the report.
"""

import json
import re
from pathlib import Path

import pytest

from pipelines import run_local

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
ROWS = ("PP-MiniLM FP32", "pruned FP32", "pruned INT8")


@pytest.mark.slow
def test_pipeline_runs_end_to_end(tmp_path):
    code = run_local.main(
        ["--out", str(tmp_path), "--overrides", json.dumps(TINY), "--grid", json.dumps(GRID)]
    )
    assert code == 0
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
    status = next(tmp_path.glob("pipeline_root/*/record-status/record"))
    assert json.loads(status.read_text())["state"] == "SUCCEEDED"
