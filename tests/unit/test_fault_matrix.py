"""The fault matrix through the CLI: every bad input and fault ends as the promised error.

For each case of :mod:`faultmatrix` (bad configs, flags, data, vocabularies, models,
inference models, checkpoints, outputs, result files, object storage), ``ppminilm.cli.main``
runs in-process on a private copy of real tiny artifacts, and the outcome must be ``clear``:
a non-zero exit with the code of the failure's class, no ``Traceback`` in the output, a
message naming the file / line / field or the service, and nothing previously stored
(files, S3 objects, multipart uploads) changed or left behind.

``python tests/faultmatrix/runner.py`` prints the same matrix as a table of outcomes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import OUTCOMES, load_cases, run_case
from s3server import RunningS3Server

pytestmark = pytest.mark.integration  # builds and trains tiny models for its fixtures

CASES = load_cases()
#: The issue asks for at least this many bad inputs and faults.
MIN_CASES = 60


@pytest.fixture(scope="module")
def fixtures(
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: RunningS3Server,
    s3_auth_server: RunningS3Server,
) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("fault-fixtures"), s3=s3_server, s3_auth=s3_auth_server)


def test_matrix_is_broad() -> None:
    kinds = Counter(c.kind for c in CASES.values())
    assert len(CASES) >= MIN_CASES
    for kind in (
        "config",
        "data",
        "vocab",
        "model",
        "inference",
        "checkpoint",
        "output",
        "storage",
    ):
        assert kinds[kind] >= 4, kinds


@pytest.mark.parametrize("case_id", list(CASES))
def test_fault_is_reported_clearly(case_id: str, fixtures: Fixtures, tmp_path: Path) -> None:
    result = run_case(CASES[case_id], fixtures, tmp_path / case_id)
    assert result.outcome in OUTCOMES
    assert result.outcome == "clear", (
        f"{case_id}: {result.outcome} ({result.detail}), exit code {result.code}\n"
        f"{result.output[-3000:]}"
    )
