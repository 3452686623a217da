"""The paddle 2.6.2 INT8 fused_matmul reproduction, and that the project's INT8 setting avoids it.

If a later paddle fixes the kernel, the first assertion fails: then the deleted fuse pass
(``INT8_MATMUL_UNSAFE_PASSES``) can be brought back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.int8_attention_repro import FUSE_PASS, main, reproduce
from ppminilm.compat.paddle import paddle
from ppminilm.config import CPU_INT8_OPS, InferConfig
from ppminilm.inference.predictor import INT8_MATMUL_UNSAFE_PASSES, config_plan


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {c["case"]: c for c in reproduce(tmp_path_factory.mktemp("repro"))}


@pytest.mark.integration
def test_int8_fused_matmul_with_fused_mask_add_is_wrong_and_nondeterministic(cases) -> None:
    if not paddle.__version__.startswith("2.6."):
        pytest.skip(f"reproduction recorded on paddle 2.6.2, this is {paddle.__version__}")
    for name in ("broadcast", "full"):
        case = cases[name]
        assert "fused_matmul[int8]" in case["int8_ops"]
        assert not case["correct"] and not case["deterministic"], case


@pytest.mark.integration
def test_deleting_the_fuse_pass_gives_correct_int8_matmuls(cases) -> None:
    fixed = cases["broadcast_nofuse"]
    assert fixed["deleted_pass"] == FUSE_PASS
    assert fixed["int8_ops"].count("fused_matmul[int8]") == 2  # both attention matmuls
    assert fixed["correct"] and fixed["deterministic"]


def test_project_int8_config_deletes_exactly_that_pass() -> None:
    assert "fused_matmul" in CPU_INT8_OPS and INT8_MATMUL_UNSAFE_PASSES == (FUSE_PASS,)
    cfg = InferConfig(precision="int8", use_trt=False)
    deleted = [s.args[0] for s in config_plan(cfg, quantized=True) if s.method == "delete_pass"]
    assert deleted == [FUSE_PASS]
    fc_only = InferConfig(precision="int8", use_trt=False, int8_op_types=("fc",))
    assert not [s for s in config_plan(fc_only, quantized=True) if s.method == "delete_pass"]


@pytest.mark.integration
def test_repro_cli_writes_its_evidence(tmp_path: Path) -> None:
    rc = main(["--out", str(tmp_path)])
    assert (tmp_path / "int8_attention_repro.json").is_file()
    assert rc == (0 if paddle.__version__.startswith("2.6.") else 1)
