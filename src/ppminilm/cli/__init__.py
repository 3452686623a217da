"""``ppminilm`` command line: every stage runs here without Kubeflow.

Subcommands live in sibling modules; each defines ``register(subparsers)``. They are listed in
pipeline order (:data:`COMMAND_MODULES`); any other module with a ``register`` is added after.
Stage commands call the same runner functions as the KFP components (:mod:`ppminilm.runner`);
an expected failure prints one line and exits with its class's code (:mod:`ppminilm.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

from ppminilm import __version__
from ppminilm.errors import EXIT_INTERRUPTED, EXIT_USAGE

logger = logging.getLogger("ppminilm")

#: Command modules in pipeline order.
COMMAND_MODULES = (
    "config",
    "data",
    "distill",
    "finetune",
    "compress",
    "infer",
    "search",
    "serve",
    "model",
    "storage",
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler bound to whatever ``sys.stderr`` is when a record is emitted.

    ``main`` may run several times in one process (tests, notebooks) while ``sys.stderr`` is
    swapped underneath; a handler holding the old stream would write to a closed file.
    """

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand, in pipeline order."""
    parser = argparse.ArgumentParser(
        prog="ppminilm",
        description="PP-MiniLM compression recipe: distil, fine-tune, prune, quantize, benchmark. "
        "The number before each command is its recipe stage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names = [n for n in COMMAND_MODULES if n in found] + sorted(set(found) - set(COMMAND_MODULES))
    for name in names:
        register = getattr(importlib.import_module(f"{__name__}.{name}"), "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit code: 0, or the failure's code (2 user error, 3 download, 10-16
        storage, 20 device, 21 cluster job, 130 interrupted, 143 terminated by SIGTERM).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_StderrHandler()],
        force=True,  # importing paddle already installed a root handler; replace it
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    from ppminilm.runner import expected_errors
    from ppminilm.runner.signals import handle_termination

    try:
        with handle_termination(), expected_errors():
            return int(func(args) or 0)
    except SystemExit as exc:  # an expected failure (logged), SIGTERM or a pre-emption (143)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        logger.error("interrupted: stopping; outputs are left as they were")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
