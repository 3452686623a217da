"""Flags and output shared by the stage commands: profile, ``--config``, the summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppminilm.config import PROFILES, config_overrides, read_config_file
from ppminilm.contracts import StageSummary
from ppminilm.errors import UserError
from ppminilm.io import atomic_write_json, check_file_target, is_remote
from ppminilm.runner import emit


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default; keeps descriptions' line breaks (examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # A flag left at None takes its value from the config (its help says the default).
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def add_stage_parser(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, description: str = ""
) -> argparse.ArgumentParser:
    """A subcommand parser with the project's help formatter."""
    return subparsers.add_parser(  # type: ignore[no-any-return]
        name,
        help=help_text,
        description=description or help_text,
        formatter_class=HelpFormatter,
    )


def add_config_flags(parser: argparse.ArgumentParser, stage: str, summary: bool = True) -> None:
    """``--profile``, ``--config`` and (optionally) ``--summary``."""
    parser.add_argument(
        "--profile",
        default="local",
        choices=sorted(PROFILES),
        help="config profile: 'local' (tiny models, CPU) or 'cluster' (the recipe's sizes)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help=f"JSON file (or s3:// URI) of overrides merged over the profile: {stage} fields "
        '({"max_steps": 10}) or stage-keyed ({"' + stage + '": {...}})',
    )
    if summary:
        parser.add_argument(
            "--summary",
            default=None,
            type=_summary_file,
            help="also write the stage summary JSON to this file",
        )


def _summary_file(value: str) -> str:
    """``--summary``: checked when parsed, so a bad path fails before the stage runs."""
    try:
        check_file_target(value)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def overrides_of(args: argparse.Namespace, stage: str) -> dict[str, Any]:
    """The stage-keyed overrides named by ``--config`` (empty without it).

    The one ``--config`` loader: a local file, or an object-store URI (PaddleJob workers get
    their config from object storage).
    """
    if not args.config:
        return {}
    if is_remote(args.config):
        from ppminilm import storage

        return config_overrides(storage.read_json(args.config), stage, args.config)
    return read_config_file(args.config, stage)


def finish(summary: StageSummary, args: argparse.Namespace) -> int:
    """Print the summary as JSON (and write it to ``--summary``); exit code 0."""
    path = getattr(args, "summary", None)
    if path:
        atomic_write_json(Path(path), summary.to_dict())
    emit(summary)
    return 0
