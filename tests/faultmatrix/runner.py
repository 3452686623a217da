"""Run fault cases through ``ppminilm.cli.main`` in-process and classify each outcome.

Outcomes (:data:`OUTCOMES`), worst first:

* ``lost``: a file or object that existed before the command changed or vanished, or a failed
  command left new files or objects behind (a half-written artifact);
* ``traceback``: an exception escaped the CLI, or ``Traceback`` appears in its output;
* ``silent-wrong``: the command exited 0 although its input was bad;
* ``unclear``: non-zero exit but the message misses what the case says it must name (the file,
  line, field or service), or the exit code is not the one of the failure's class;
* ``clear``: what the project promises.

Usage: ``python tests/faultmatrix/runner.py [-k SUBSTRING] [-v]`` prints every case's outcome
and the counts per outcome (it starts its own test S3 servers).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``faultmatrix`` and ``s3server`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faultmatrix.fixtures import Fixtures

OUTCOMES = ("lost", "traceback", "silent-wrong", "unclear", "clear")


@dataclass
class Call:
    """What a case runs and what its error must say.

    Attributes:
        argv: Arguments of ``ppminilm``.
        names: Substrings the output must all contain (the file, ``file:line``, the field,
            the service or variable); compared case-insensitively.
        code: The exit code the failure's class has, or None to accept any non-zero code.
        env: Environment changes for the call (None removes a variable).
        buckets: ``(server, bucket)`` pairs whose objects and multipart uploads must not change.
    """

    argv: list[str]
    names: Sequence[str]
    code: int | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)
    buckets: Sequence[tuple[Any, str]] = ()


@dataclass(frozen=True)
class Case:
    """One fault: ``kind`` groups cases in the report; ``build`` prepares its directory."""

    id: str
    kind: str
    build: Callable[[Fixtures, Path], Call]


#: Every case by id, in definition order.
CASES: dict[str, Case] = {}


def case(
    kind: str,
) -> Callable[[Callable[[Fixtures, Path], Call]], Callable[[Fixtures, Path], Call]]:
    """Register a case builder under its function name."""

    def register(fn: Callable[[Fixtures, Path], Call]) -> Callable[[Fixtures, Path], Call]:
        if fn.__name__ in CASES:
            raise RuntimeError(f"fault case {fn.__name__} defined twice")
        CASES[fn.__name__] = Case(fn.__name__, kind, fn)
        return fn

    return register


def load_cases() -> dict[str, Case]:
    """Import the case modules (they register themselves) and return :data:`CASES`."""
    import faultmatrix.cases_checkpoints
    import faultmatrix.cases_config
    import faultmatrix.cases_data
    import faultmatrix.cases_models
    import faultmatrix.cases_storage  # noqa: F401

    return CASES


@dataclass
class Result:
    """A case's outcome, exit code, captured output and why it was classified so."""

    outcome: str
    code: int
    output: str
    detail: str = ""


def _tree_state(root: Path) -> dict[str, str]:
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            state[rel + "/"] = "dir"
    return state


def _bucket_state(server: Any, bucket: str) -> dict[str, str]:
    import minio

    client = minio.Minio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    )
    state = {
        f"s3://{bucket}/{o.object_name}": str(o.etag)
        for o in client.list_objects(bucket, recursive=True)
    }
    uploads = client._list_multipart_uploads(bucket)
    for upload in uploads.uploads:
        state[f"multipart:{upload.object_name}:{upload.upload_id}"] = "in progress"
    return state


def _diff(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[list[str], list[str]]:
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(k for k in after if k not in before)
    return changed, added


@contextlib.contextmanager
def _environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def invoke(argv: Sequence[str], env: Mapping[str, str | None] = {}) -> tuple[int, str]:
    """Run ``ppminilm.cli.main(argv)``; return the exit code and stdout + stderr.

    An exception that escapes ``main`` is formatted into the output as the interpreter
    would print it (exit code 1), so it counts as a traceback.
    """
    from ppminilm.cli import main

    out = io.StringIO()
    with _environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            out.write(traceback.format_exc())
            code = 1
    return int(code), out.getvalue()


def run_case(item: Case, fx: Fixtures, root: Path) -> Result:
    """Prepare ``item`` under ``root`` (created), run it and classify the outcome."""
    root.mkdir(parents=True, exist_ok=True)
    call = item.build(fx, root)
    before = _tree_state(root)
    remote_before = {b: _bucket_state(s, b) for s, b in call.buckets}
    code, output = invoke(call.argv, call.env)
    changed, added = _diff(before, _tree_state(root))
    for server, bucket in call.buckets:
        c, a = _diff(remote_before[bucket], _bucket_state(server, bucket))
        changed += c
        added += a
    if changed:
        return Result("lost", code, output, f"changed or removed: {changed[:5]}")
    if "Traceback" in output:
        return Result("traceback", code, output, "a traceback in the output")
    if code == 0:
        return Result("silent-wrong", code, output, "exit code 0 on a bad input")
    if added:
        return Result("lost", code, output, f"a failed command left new entries: {added[:5]}")
    missing = [n for n in call.names if n.lower() not in output.lower()]
    if missing:
        return Result("unclear", code, output, f"the output does not name {missing}")
    if call.code is not None and code != call.code:
        return Result("unclear", code, output, f"exit code {code}, expected {call.code}")
    return Result("clear", code, output)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix (or the cases whose id contains ``-k``) and print the counts."""
    import argparse

    from s3server import start_auth_s3_server, start_s3_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-k", default="", help="only cases whose id contains this")
    parser.add_argument("-v", action="store_true", help="print the output of non-clear cases")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    cases = [c for c in load_cases().values() if args.k in c.id]
    base = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    s3, s3_auth = start_s3_server(), start_auth_s3_server()
    counts: Counter[str] = Counter()
    try:
        fx = Fixtures(base / "fixtures", s3=s3, s3_auth=s3_auth)
        fx.root.mkdir()
        for item in cases:
            result = run_case(item, fx, base / "cases" / item.id)
            counts[result.outcome] += 1
            print(f"{result.outcome:13s} {item.kind:11s} {item.id:40s} {result.detail}")
            if args.v and result.outcome != "clear":
                print("    " + result.output.strip().replace("\n", "\n    ")[-1500:])
    finally:
        s3.stop()
        s3_auth.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{len(cases)} cases: " + ", ".join(f"{o} {counts[o]}" for o in OUTCOMES))
    return 0


if __name__ == "__main__":
    # Through the package module, so the cases register where ``main`` looks for them.
    from faultmatrix.runner import main as package_main

    raise SystemExit(package_main())
