"""The real pipeline, end to end, through KFP local execution (tiny sizes, real Paddle).

This is `make run` with every stage shrunk further so the suite stays fast: it trains a
teacher, distils, runs a 2-point grid, prunes, quantizes, benchmarks and writes the report.
"""

import json
import re

import pytest

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


#: Row names of the local profile's report: honest about what the models are.
ROWS = (
    "2L-128H teacher shape FP32 (random weights)",
    "local 6L-64H student FP32",
    "local 6L-64H width 0.75 FP32",
    "local 6L-64H width 0.75 INT8",
    "local 6L-64H width 0.5 FP32",
    "local 6L-64H width 0.5 INT8",
)
#: The compression search's candidates (issue 21): the FP32 model, both widths in FP32 + INT8.
CANDIDATES = ("6L-w1-fp32", "6L-w0.75-fp32", "6L-w0.75-int8", "6L-w0.5-fp32", "6L-w0.5-int8")
#: The whole log of a quiet run stays short enough to read.
MAX_LOG_LINES = 600


def test_pipeline_runs_end_to_end(tiny_subprocess_run):
    # The run (tests/pipelines/conftest.py) is in a subprocess, as `make run` does: KFP's local
    # runner re-indents this process's stdout for good. The container test compares with it.
    tmp_path, proc = tiny_subprocess_run.out, tiny_subprocess_run.proc
    log = proc.stdout + proc.stderr
    assert len(log.splitlines()) < MAX_LOG_LINES, log[-3000:]
    assert "Got executor_input" not in log and "[stage 9/9] search + report" in log
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
    # Selections on dev; the local tasks have labelled test splits, so every trained row also
    # gets a test accuracy, in its own table.
    assert (
        "(grid point, pruning checkpoint, PTQ candidate, search candidate) was made on dev"
        in report
    )
    tested = report.split("Test accuracy (labelled test split; no selection saw it)", 1)[1]
    for row in ROWS[1:]:
        line = next(line for line in tested.splitlines() if line.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[1:]), line
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    headline = json.loads((tmp_path / "report.json").read_text())["headline"]
    assert headline["speedup"] > 0 and 0 < headline["avg_dev_acc"] <= 1


def test_report_carries_the_search_frontier(tiny_subprocess_run):
    """issue 21: a frontier of two widths (FP32 + INT8 each) and a choice within the budget."""
    out = tiny_subprocess_run.out
    report = (out / "report.md").read_text(encoding="utf-8")
    title = "## Compression search: local_reviews (budget 1 points)"
    assert title in report
    section = report.split(title, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True))
            for ln in lines[2:]]  # fmt: skip
    assert [r["Candidate"].split(" ")[0] for r in rows] == list(CANDIDATES)
    chosen = [r for r in rows if r["Chosen"] == "CHOSEN"]
    assert len(chosen) == 1 and chosen[0]["Within budget"] == "yes"
    for row in rows:
        assert re.fullmatch(r"\d+\.\d\d", row["Dev acc"]) and re.fullmatch(
            r"[\d.]+-[\d.]+", row["Rounds (s)"]
        ), row
    assert "Chosen: " in section and "Rule: fastest candidate" in section
    assert (out / "plots" / "search_local_reviews.png").is_file()
    summary = json.loads((out / "report.json").read_text())["summary"]
    search = summary["search"]["local_reviews"]
    assert search["budget_points"] == 1.0 and search["chosen"] == chosen[0]["Candidate"].split()[0]
    headline = json.loads((out / "report.json").read_text())["headline"]
    assert headline["avg_drop_points"] <= 1.0 + 1e-6
