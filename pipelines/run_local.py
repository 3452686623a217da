"""Run the whole pipeline on this machine through KFP local execution (``make run``).

Every component runs as a subprocess of this interpreter (``SubprocessRunner(use_venv=False)``),
so the project's venv must have ``ppminilm`` installed; with ``--runner docker`` each runs in the
CPU image instead (``kfp.local.DockerRunner``, see :mod:`pipelines.containers`). Outputs land
under ``--out``: ``pipeline_root/`` holds every artifact; the report path is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
import warnings
from pathlib import Path

logger = logging.getLogger("ppminilm.run_local")


def find_report(pipeline_root: Path, started: float) -> Path | None:
    """Newest ``report/markdown`` artifact written after ``started``."""
    # The report task is "report" or, inside the If/Else branches, "report-<n>".
    found = [
        p
        for p in pipeline_root.glob("**/report*/markdown")
        if p.is_file() and p.stat().st_mtime >= started
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline locally; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local", choices=["local", "cluster"])
    parser.add_argument("--out", default="runs/local", help="output root")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks (default: profile's)")
    parser.add_argument("--no-cache", action="store_true", help="disable step caching")
    parser.add_argument(
        "--no-distill", action="store_true", help="skip distillation (needs --student-uri)"
    )
    parser.add_argument("--student-uri", default="")
    parser.add_argument(
        "--grid", default="", help='JSON grid points: [{"batch_size": 32, "learning_rate": 1e-3}]'
    )
    parser.add_argument(
        "--overrides",
        default="{}",
        help='JSON stage overrides, e.g. \'{"distill": {"max_steps": 50}}\'',
    )
    parser.add_argument(
        "--runner",
        default="subprocess",
        choices=["subprocess", "docker"],
        help="run each step as a subprocess of this venv, or in the CPU image (make images)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Expected here: our components name the cluster image but run in this venv on purpose.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses")

    from kfp import local

    from pipelines.ppminilm import ppminilm_pipeline

    out = Path(args.out).resolve()
    root = out / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    # Caching: a re-run reuses every step whose inputs are unchanged (cache under --out).
    runner: local.SubprocessRunner | local.DockerRunner = local.SubprocessRunner(use_venv=False)
    cache_root = out / "cache"
    run_id = ""
    if args.runner == "docker":
        from images.spec import image_specs, source_digest
        from pipelines.containers import ContainerRunError, docker_runner, prepare_pipeline_root

        spec = image_specs()["cpu"]
        run_id = f"{os.getpid()}-{int(time.time())}"
        try:
            runner, image_id = docker_runner(spec.tag, source_digest(spec), run_id)
        except ContainerRunError as exc:
            logger.error("%s", exc)
            return 3
        prepare_pipeline_root(root)
        # SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so the step containers get stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        # Per image: steps cached by the venv or by another image are not reused.
        cache_root = out / f"cache-docker-{image_id.split(':')[-1][:12]}"
        logger.info("running every step in %s (%s)", spec.tag, image_id[:19])
    local.init(
        runner=runner,
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=not args.no_cache,
        cache_root=str(cache_root),
    )
    params: dict = {
        "profile": args.profile,
        "overrides": json.loads(args.overrides),
        "do_distill": not args.no_distill,
        "student_uri": args.student_uri,
    }
    if args.tasks:
        params["tasks"] = args.tasks
    if args.grid:
        params["grid"] = json.loads(args.grid)
    started = time.time()
    try:
        ppminilm_pipeline(**params)
    except BaseException:
        if run_id:  # an interrupted or failed container run: stop the steps it left running
            from pipelines.containers import stop_run_containers

            stopped = stop_run_containers(run_id)
            if stopped:
                logger.error("stopped %d step container(s) of the interrupted run", stopped)
        raise
    elapsed = time.time() - started
    report = find_report(root, started)
    if report is None:
        logger.error("pipeline finished but no report was found under %s", root)
        return 1
    html = report.parent / "html"
    summary = {
        "runner": args.runner,
        "seconds": round(elapsed, 1),
        "report_markdown": str(report),
        "report_html": str(html),
    }
    (out / "last_run.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    # The Markdown artifact embeds its plots as data URIs; show their names instead.
    text = re.sub(
        r"\(data:image/png;base64,[^)]*\)",
        "(see the HTML report)",
        report.read_text(encoding="utf-8"),
    )
    print(text)
    print(f"\nPipeline finished in {elapsed:.0f} s.\nReport: {report}\nHTML:   {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
