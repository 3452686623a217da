"""CLI help: subcommands in pipeline order, every flag explained with its default."""

from __future__ import annotations

import argparse

from ppminilm.cli import build_parser
from ppminilm.cli._common import HelpFormatter

#: The recipe's commands in the order ``ppminilm --help`` must list them.
PIPELINE_ORDER = [
    "data", "pretrain-teacher", "distill", "finetune", "grid", "select-best", "export",
    "prune", "quantize", "infer", "report",
]  # fmt: skip


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sub
                out.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return out


def test_commands_listed_in_pipeline_order() -> None:
    names = list(_subparsers(build_parser()))
    top = [n for n in names if " " not in n]
    assert [n for n in top if n in PIPELINE_ORDER] == PIPELINE_ORDER
    help_text = build_parser().format_help()
    positions = [help_text.index(f"    {n} ") for n in PIPELINE_ORDER if f"    {n} " in help_text]
    assert positions == sorted(positions)


def test_every_flag_has_help_and_shows_its_default() -> None:
    for name, sub in _subparsers(build_parser()).items():
        assert issubclass(sub.formatter_class, HelpFormatter), name
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name}: {action.option_strings}"
        text = sub.format_help()
        assert "(default:" in text or not any(
            a.default not in (None, argparse.SUPPRESS) for a in sub._actions if a.option_strings
        ), name
