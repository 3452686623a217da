"""Time ``make run`` (the whole local pipeline) end to end, per stage, with peak memory.

The pipeline runs as a child process (``python -m pipelines.run_local --no-cache``), its
output captured to ``pipeline.log``. KFP local execution logs ``HH:MM:SS.mmm - INFO -
Executing task 'x'`` and ``Task 'x' finished with status ...`` for every task (some lines in
``logging``'s default date format); per-stage seconds come from those lines. Tasks of a
``ParallelFor`` share a name and may overlap (loop concurrency 2), so a stage reports both
``busy_s`` (sum of start/finish pairs matched in order) and ``span_s`` (first start to last
finish). Peak memory is the largest resident set of any finished descendant
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``, KiB on Linux).
"""

from __future__ import annotations

import json
import logging
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TIMING_FILE = "pipeline_timing.json"
LOG_FILE = "pipeline.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# KFP's own format is "HH:MM:SS.mmm - LEVEL - ..."; when a component reconfigures logging in
# the parent (basicConfig(force=True)) some lines come as "YYYY-MM-DD HH:MM:SS,mmm LEVEL ...".
_STAMP = r"^(?:\d{4}-\d\d-\d\d )?(\d\d):(\d\d):(\d\d[.,]\d+)(?: - | )\w+(?: - | )"
_START = re.compile(_STAMP + r"Executing task '([^']+)'")
_END = re.compile(_STAMP + r"Task '([^']+)' finished with status (\w+)")
_DAY_S = 24 * 3600


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s.replace(",", "."))


def parse_stage_times(log_text: str) -> dict[str, dict[str, Any]]:
    """Per-task timing from a KFP local-execution log.

    Args:
        log_text: The captured stdout/stderr of a local pipeline run (ANSI colours allowed).

    Returns:
        ``{task_name: {"runs", "busy_s", "span_s", "status"}}`` in order of first start;
        ``status`` is the last reported status (``SUCCESS``/``FAILURE``), or ``RUNNING``
        when a start has no finish line.
    """
    offset, last = 0.0, -1.0
    starts: dict[str, list[float]] = defaultdict(list)
    stages: dict[str, dict[str, Any]] = {}
    for raw in log_text.splitlines():
        line = _ANSI.sub("", raw).strip()
        match = _START.match(line) or _END.match(line)
        if not match:
            continue
        t = _seconds(*match.group(1, 2, 3))
        if t + offset < last - 1:  # the clock passed midnight
            offset += _DAY_S
        t += offset
        last = t
        name = match.group(4)
        if match.re is _START:
            starts[name].append(t)
            rec = stages.setdefault(
                name, {"runs": 0, "busy_s": 0.0, "first": t, "last": t, "status": "RUNNING"}
            )
            rec["runs"] += 1
            continue
        rec = stages.setdefault(name, {"runs": 0, "busy_s": 0.0, "first": t, "last": t})
        begun = starts[name].pop(0) if starts[name] else t
        rec["busy_s"] += t - begun
        rec["last"] = t
        rec["status"] = match.group(5)
    out: dict[str, dict[str, Any]] = {}
    for name, rec in stages.items():
        out[name] = {
            "runs": rec["runs"],
            "busy_s": round(rec["busy_s"], 2),
            "span_s": round(rec["last"] - rec["first"], 2),
            "status": "RUNNING" if starts[name] else rec["status"],
        }
    return out


def peak_child_rss_mib() -> float:
    """Largest resident set (MiB) of any waited-for descendant of this process so far."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)


def run_pipeline_timed(out_dir: str | Path, extra_args: list[str] | None = None) -> dict[str, Any]:
    """Run the local pipeline (what ``make run`` runs) and record its timing and memory.

    Args:
        out_dir: Bench output dir; the pipeline writes under ``out_dir/pipeline``, the log to
            ``out_dir/pipeline.log`` and the result to ``out_dir/pipeline_timing.json``.
        extra_args: More ``pipelines.run_local`` arguments.

    Returns:
        ``command``, ``returncode``, ``seconds`` (end to end), ``peak_rss_mib``, ``stages``
        (see :func:`parse_stage_times`), ``log``, ``recorded_at`` (UTC ISO time).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pipelines.run_local",
        "--out",
        str(out / "pipeline"),
        "--no-cache",
        *(extra_args or []),
    ]
    log_path = out / LOG_FILE
    logger.info("timing the local pipeline: %s (log: %s)", " ".join(cmd), log_path)
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - t0
    result = {
        "command": " ".join(cmd[1:]),
        "returncode": proc.returncode,
        "seconds": round(seconds, 1),
        "peak_rss_mib": peak_child_rss_mib(),
        "stages": parse_stage_times(log_path.read_text(encoding="utf-8", errors="replace")),
        "log": str(log_path),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = out / TIMING_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    if proc.returncode != 0:
        logger.error("pipeline exited with %d; see %s", proc.returncode, log_path)
    return result


def stage_table(timing: dict[str, Any]) -> str:
    """Markdown table of a :func:`run_pipeline_timed` result."""
    lines = [
        "| stage (KFP task) | runs | busy s | span s | status |",
        "|---|---:|---:|---:|---|",
    ]
    for name, rec in timing["stages"].items():
        lines.append(
            f"| {name} | {rec['runs']} | {rec['busy_s']:.1f} | {rec['span_s']:.1f} "
            f"| {rec['status']} |"
        )
    lines.append(
        f"| **end to end** (`make run` = `{timing['command']}`) | | "
        f"{timing['seconds']:.1f} | | exit {timing['returncode']} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.pipeline_timing --out runs/bench``: time the pipeline alone."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = run_pipeline_timed(args.out)
    logger.info(
        "pipeline timing:\n%s\npeak RSS %.0f MiB", stage_table(result), result["peak_rss_mib"]
    )
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
