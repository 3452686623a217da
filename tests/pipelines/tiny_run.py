"""The tiny end-to-end pipeline run (helpers), shared by the subprocess and container tests.

Runs in a subprocess, as `make run` does: KFP's local runner re-indents this process's stdout
for good, which would leak into later tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Stage overrides on top of the local profile: a few steps each.
TINY = {
    "data": {
        "reviews_train": 400,
        "reviews_dev": 200,
        "reviews_test": 50,
        "pairs_train": 200,
        "pairs_dev": 100,
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
#: Generous bound for a ~1-2 minute run on a loaded 2-core machine (containers: ~5 minutes).
RUN_TIMEOUT_S = 1500


@dataclass
class PipelineRun:
    """A finished run: its output root, process result and ``last_run.json``."""

    out: Path
    proc: subprocess.CompletedProcess
    last: dict

    @property
    def report(self) -> str:
        return (self.out / "report.md").read_text(encoding="utf-8")


def run_tiny_pipeline(
    out: Path, runner: str = "subprocess", env: dict | None = None
) -> PipelineRun:
    """Run the tiny pipeline with ``runner``; asserts it succeeded and left last_run.json."""
    cmd = [sys.executable, "-m", "pipelines.run_local", "--out", str(out), "--runner", runner,
           "--overrides", json.dumps(TINY), "--grid", json.dumps(GRID)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return PipelineRun(out, proc, json.loads((out / "last_run.json").read_text()))


def report_rows(report: str, rows: tuple[str, ...]) -> dict[str, list[str]]:
    """``row name -> cells`` of the summary table's rows."""
    out = {}
    for row in rows:
        line = next(line for line in report.splitlines() if line.startswith(f"| {row} |"))
        out[row] = [c.strip() for c in line.strip().strip("|").split("|")]
    return out
