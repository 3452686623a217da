"""``ppminilm search``: stage 6, the accuracy-budgeted compression search, from the shell.

Examples::

    ppminilm search check --widths 0.75 0.5 --budget 1.0 --profile cluster
    ppminilm search select --reference bench/fp32.json \\
        --candidates bench/w0.75-fp32.json bench/w0.75-int8.json --timing timing.json \\
        --out task_results.json --frontier frontier.md --budget 1.0 \\
        --models runs/fp32 runs/w0.75-fp32 runs/w0.75-int8 --chosen-out runs/chosen
"""

from __future__ import annotations

import argparse

from ppminilm.cli._common import add_config_flags, add_stage_parser, finish, overrides_of


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search check`` and ``search select``."""
    parser = add_stage_parser(
        subparsers,
        "search",
        "6  compression search: the fastest candidate within an accuracy budget",
    )
    sub = parser.add_subparsers(dest="search_command", metavar="COMMAND", required=True)
    check = add_stage_parser(
        sub, "check", "check widths (whole attention heads) and the budget before a run"
    )
    check.add_argument("--widths", type=float, nargs="+", required=True, help="e.g. 0.75 0.5")
    check.add_argument("--budget", type=float, default=None, help="accepted drop, in points")
    check.add_argument(
        "--imported-student",
        action="store_true",
        help="the run imports a student (its heads are checked by prune instead)",
    )
    add_config_flags(check, "search")
    check.set_defaults(func=_check)

    select = add_stage_parser(
        sub, "select", "choose a task's model from its benchmark results and timing"
    )
    select.add_argument(
        "--reference", required=True, help="benchmark result JSON of the fine-tuned FP32 model"
    )
    select.add_argument(
        "--candidates", nargs="+", required=True, help="benchmark result JSONs of the candidates"
    )
    select.add_argument(
        "--timing", required=True, help="time-rows result JSON (rows keyed by candidate)"
    )
    select.add_argument("--out", required=True, help="task results JSON for the report")
    select.add_argument("--frontier", default=None, help="write the frontier table (Markdown)")
    select.add_argument(
        "--models", nargs="+", default=(), help="inference dirs of the candidates (any order)"
    )
    select.add_argument(
        "--chosen-out", default=None, help="copy the chosen model here (needs --models)"
    )
    select.add_argument("--budget", type=float, default=None, help="accepted drop, in points")
    add_config_flags(select, "search")
    select.set_defaults(func=_select)


def _check(args: argparse.Namespace) -> int:
    from ppminilm.runner import check_search

    summary = check_search(
        widths=args.widths,
        accuracy_budget=args.budget,
        do_distill=not args.imported_student,
        profile=args.profile,
        overrides=overrides_of(args, "search"),
    )
    return finish(summary, args)


def _select(args: argparse.Namespace) -> int:
    from ppminilm.runner import select_candidate

    summary = select_candidate(
        args.reference,
        args.candidates,
        args.timing,
        args.out,
        models=args.models,
        chosen_out=args.chosen_out,
        frontier_md=args.frontier,
        accuracy_budget=args.budget,
        profile=args.profile,
        overrides=overrides_of(args, "search"),
    )
    return finish(summary, args)
