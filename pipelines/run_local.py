"""Run the whole pipeline on this machine through KFP local execution (``make run``).

Every component runs as a subprocess of this interpreter (``SubprocessRunner(use_venv=False)``),
so the project's venv must have ``ppminilm`` installed; with ``--runner docker`` each runs in the
CPU image instead (``kfp.local.DockerRunner``, see :mod:`pipelines.containers`; ``make images``
first). Outputs land under ``--out``:
``report.md`` (plots in ``plots/`` beside it), ``report.html`` (self-contained),
``report.json``, ``last_run.json``, ``serving/<name>.yaml`` (each task's InferenceService, for
``make deploy-model RUN=<out>``); ``pipeline_root/`` holds every artifact and ``cache/`` the
step cache (a re-run reuses every step whose inputs are unchanged).

Flags (``make run ARGS="..."``):

--profile P        local (default) or cluster
--out DIR          output root (default runs/local)
--tasks T [T ...]  tasks to run (default: the profile's)
--grid JSON        grid points, e.g. '[{"batch_size": 32, "learning_rate": 1e-3}]'
--widths W [W ...] pruning widths the compression search compares (default: the profile's)
--budget POINTS    accepted dev accuracy drop below the fine-tuned FP32 model (default 1.0)
--overrides JSON   stage config overrides, e.g. '{"distill": {"max_steps": 50}}'
--no-distill       skip distillation and use --student-uri as the student
--student-uri DIR  pretrained student (with --no-distill)
--no-cache         run every step again
--runner R         subprocess (default: this venv) or docker (every step in the CPU image)
--verbose          keep KFP's per-task executor-input dumps and artifact listings
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("ppminilm.run_local")

#: Files of the report bundle copied to ``--out``.
REPORT_FILES = ("report.md", "report.html", "report.json")


def find_bundle(pipeline_root: Path, started: float) -> Path | None:
    """Newest report bundle directory written after ``started``."""
    # The report task is "report" or, inside the If/Else branches, "report-<n>".
    found = [
        p
        for p in pipeline_root.glob("**/report*/bundle")
        if (p / "report.md").is_file() and p.stat().st_mtime >= started
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def publish_serving(pipeline_root: Path, out: Path, started: float) -> dict[str, dict[str, str]]:
    """Copy the newest InferenceService of each served model to ``out/serving/<name>.yaml``.

    Returns:
        Name -> ``{"inference_service": the copy, "model_dir": the deployable model}``.
    """
    import yaml

    from pipelines.deploy_model import RUN_SERVING_DIR
    from ppminilm.runner.serve import MODEL_SOURCE_ANNOTATION

    found = sorted(
        pipeline_root.glob("**/serve*/inference_service"), key=lambda p: p.stat().st_mtime
    )
    fresh = [p for p in found if p.stat().st_mtime >= started] or found
    served: dict[str, dict[str, str]] = {}
    for path in fresh:  # oldest first: the newest of a name wins
        isvc = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = isvc["metadata"]["name"]
        target = out / RUN_SERVING_DIR / f"{name}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        source = isvc["metadata"].get("annotations", {}).get(MODEL_SOURCE_ANNOTATION, "")
        served[name] = {"inference_service": str(target), "model_dir": source}
    return served


def publish_report(bundle: Path, out: Path) -> dict[str, str]:
    """Copy the report bundle to ``out``: report.md (+ plots/), report.html, report.json."""
    for name in REPORT_FILES:
        shutil.copyfile(bundle / name, out / name)
    if (bundle / "plots").is_dir():
        shutil.rmtree(out / "plots", ignore_errors=True)
        shutil.copytree(bundle / "plots", out / "plots")
    return {name: str(out / name) for name in REPORT_FILES}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags above; bad JSON or unknown stage keys exit 2 with one clear line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="local", choices=["local", "cluster"])
    parser.add_argument("--out", default="runs/local", help="output root")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks (default: profile's)")
    parser.add_argument("--no-cache", action="store_true", help="disable step caching")
    parser.add_argument(
        "--no-distill", action="store_true", help="skip distillation (needs --student-uri)"
    )
    parser.add_argument("--student-uri", default="", help="pretrained student dir")
    parser.add_argument(
        "--grid", default="", help='JSON grid points: [{"batch_size": 32, "learning_rate": 1e-3}]'
    )
    parser.add_argument(
        "--widths", type=float, nargs="+", default=None, help="search widths, e.g. 0.75 0.5"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="accuracy budget: points of dev accuracy accepted below the fine-tuned FP32 model",
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
    parser.add_argument(
        "--verbose", action="store_true", help="keep KFP's executor-input dumps and listings"
    )
    return parser.parse_args(argv)


def pipeline_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline's arguments from the flags, checked (ConfigError naming what is wrong)."""
    from ppminilm.config import PruneConfig, config_for, normalize_task, parse_overrides
    from ppminilm.contracts import GridPoint
    from ppminilm.errors import ConfigError
    from ppminilm.io import loads_json
    from ppminilm.runner.search import validate_search

    params: dict[str, Any] = {
        "profile": args.profile,
        "overrides": parse_overrides(args.overrides),
        "do_distill": not args.no_distill,
        "student_uri": args.student_uri,
    }
    if args.no_distill and not args.student_uri:
        raise ConfigError("--no-distill needs --student-uri (the pretrained student to use)")
    if args.tasks:
        params["tasks"] = [normalize_task(t) for t in args.tasks]
    if args.grid:
        points = loads_json(args.grid, "--grid", ConfigError)
        if not isinstance(points, list) or not points:
            raise ConfigError("--grid: expected a non-empty JSON list of grid points")
        params["grid"] = [
            GridPoint.from_dict(p, where=f"--grid[{i}]").to_dict() for i, p in enumerate(points)
        ]
    # The search's widths and budget: checked here, before anything runs (and again by the
    # pipeline's first step, for runs started elsewhere).
    widths = args.widths or config_for(PruneConfig, args.profile).width_mult_list
    checked, search = validate_search(
        widths,
        args.budget,
        do_distill=params["do_distill"],
        profile=args.profile,
        overrides=params["overrides"],
    )
    params["widths"] = list(checked)
    params["accuracy_budget"] = search.accuracy_budget
    return params


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline locally; returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from ppminilm.errors import exit_code_of, is_expected

    try:
        params = pipeline_arguments(args)
    except Exception as exc:
        if not is_expected(exc):
            raise
        logger.error("%s", exc)
        return exit_code_of(exc)
    # Expected here: our components name the cluster image but run in this venv on purpose.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses")

    from kfp import local

    from pipelines.console import StageClock, quiet_kfp, work_scale
    from pipelines.ppminilm import DEFAULT_LOCAL_GRID, ppminilm_pipeline

    out = Path(args.out).resolve()
    root = out / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    clock = StageClock(
        work_scale(
            args.profile,
            params["overrides"],
            len(params.get("grid", DEFAULT_LOCAL_GRID)),
            len(params["widths"]),
        )
    )
    clock.install()
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
    started = time.time()
    try:
        with quiet_kfp(args.verbose):
            ppminilm_pipeline(**params)
    except BaseException:
        if run_id:  # an interrupted or failed container run: stop the steps it left running
            from pipelines.containers import stop_run_containers

            stopped = stop_run_containers(run_id)
            if stopped:
                logger.error("stopped %d step container(s) of the interrupted run", stopped)
        raise
    elapsed = time.time() - started
    bundle = find_bundle(root, started)
    if bundle is None:
        logger.error("pipeline finished but no report was found under %s", root)
        return 1
    paths = publish_report(bundle, out)
    from ppminilm.io import atomic_write_json

    served = publish_serving(root, out, started)
    summary = {"runner": args.runner, "seconds": round(elapsed, 1), **paths, "serving": served}
    atomic_write_json(out / "last_run.json", summary)
    # sys.stdout.write, not print: KFP's local runner leaves print indenting its output.
    write = sys.stdout.write
    write((out / "report.md").read_text(encoding="utf-8"))
    write("\nTime per stage (s):\n" + clock.table() + "\n")
    write(f"\nPipeline finished in {elapsed:.0f} s.\n")
    for name, path in paths.items():
        write(f"{name}: {path}\n")
    for name, entry in served.items():
        write(f"serve {name}: ppminilm serve --model-dir {entry['model_dir']}\n")
        write(f"deploy {name}: make deploy-model RUN={entry['inference_service']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
