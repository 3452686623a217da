"""``ppminilm`` command line: every stage runs here without Kubeflow.

Subcommands live in sibling modules; each defines ``register(subparsers)`` and is discovered
automatically, so a stage's CLI ships with the stage.
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

logger = logging.getLogger("ppminilm")

#: Exit code when the user's input is wrong; storage failures exit with 10-16
#: (``StorageError.exit_code``).
EXIT_USAGE = 2


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
    """Build the top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="ppminilm",
        description="PP-MiniLM compression recipe: distil, fine-tune, prune, quantize, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit code.
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
    from ppminilm.storage.errors import StorageError

    try:
        return int(func(args) or 0)
    except StorageError as exc:
        # Infrastructure: storage unreachable, bad credentials, missing bucket... each has its
        # own exit code (see storage_errors) so CI and retries can tell them apart.
        logger.error("%s", exc)
        return exc.exit_code
    except (ValueError, FileNotFoundError) as exc:
        # User mistakes (bad config, bad data, missing files): one clear line, no traceback.
        logger.error("%s", exc)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
