"""``ppminilm config show``: every stage's config exactly as a run would resolve it.

Example::

    ppminilm config show --profile cluster --task csl
"""

from __future__ import annotations

import argparse

from ppminilm.cli._common import HelpFormatter, overrides_of
from ppminilm.config import PROFILES, normalize_task, resolve_all
from ppminilm.runner import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``config show``."""
    parser = subparsers.add_parser(
        "config", help="show resolved stage configs", formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser(
        "show",
        help="print every stage's resolved config as JSON",
        description="Print every stage's config as the CLI and the pipeline resolve it: "
        "defaults, the recipe's per-task values, the profile, its per-task layer, --config "
        "overrides and their per-task layer.",
        formatter_class=HelpFormatter,
    )
    show.add_argument(
        "--profile",
        default="local",
        choices=sorted(PROFILES),
        help="config profile: 'local' (tiny models, CPU) or 'cluster' (the recipe's sizes)",
    )
    show.add_argument(
        "--task",
        default=None,
        help="task whose per-task values apply (e.g. csl); without it, none do",
    )
    show.add_argument(
        "--config",
        default=None,
        help="JSON file (or s3:// URI) of stage-keyed overrides, as the pipeline's "
        "'overrides' parameter (a 'per_task' entry included)",
    )
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    task = normalize_task(args.task) if args.task else None
    overrides = overrides_of(args, "finetune")
    configs = resolve_all(args.profile, overrides, task)
    emit(
        {
            "profile": args.profile,
            "task": task,
            "stages": {name: cfg.to_dict() for name, cfg in configs.items()},
        }
    )
    return 0
