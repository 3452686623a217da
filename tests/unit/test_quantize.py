"""Stage 4: PTQ search, paddle 2.6 PTQ workarounds, INT8 checks (ppminilm.stages.quantize)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import calibration_loader, program_op_types, ptq_zero_dim_fix
from ppminilm.config import CPU_INT8_OPS, ModelArch, QuantConfig
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import INPUT_NAMES, MODEL_PREFIX, export_static, read_serving_config
from ppminilm.modeling.saved import ModelInfo
from ppminilm.stages.quantize import _quantize_one, run_quantize, select_best

#: Symmetric INT8 range of PaddleSlim's quantized weights.
INT8_MAX = 127
MAX_SEQ_LEN = 32
TINY = ModelArch(
    num_layers=2,
    hidden_size=32,
    num_heads=4,
    intermediate_size=64,
    vocab_size=60,
    max_position=64,
    dropout=0.0,
)


@pytest.fixture(scope="module")
def fp32_model(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny exported FP32 classifier for the shared local_reviews task."""
    from ppminilm.data.tokenizer import load_tokenizer, vocab_size

    root = tmp_path_factory.mktemp("quant")
    task = local_data_dir / "tasks" / "local_reviews"
    labels = json.loads((task / "labels.json").read_text())
    vocab = local_data_dir / "vocab"
    arch = TINY.replace(vocab_size=vocab_size(load_tokenizer(vocab)))
    paddle.seed(0)
    model = build_model(arch, "classifier", num_classes=len(labels))
    export_static(
        model,
        ModelInfo(arch, "classifier", "local_reviews", labels),
        root / "fp32",
        max_seq_len=MAX_SEQ_LEN,
        tokenizer_dir=vocab,
    )
    return {"root": root, "task": task, "model": root / "fp32"}


def _calib(n: int = 16) -> dict[str, np.ndarray]:
    ids = np.random.RandomState(0).randint(1, TINY.vocab_size, (n, MAX_SEQ_LEN)).astype("int64")
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids)}


def _quantized_weights(model_dir: Path) -> list[np.ndarray]:
    """Values of the persistable (weight) inputs of matmul ops in a saved program."""
    paddle.enable_static()
    try:
        scope = paddle.static.Scope()
        exe = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            prog, _, _ = paddle.static.load_inference_model(str(model_dir / MODEL_PREFIX), exe)
            block = prog.global_block()
            return [
                np.array(scope.find_var(n).get_tensor())
                for op in block.ops
                if op.type in ("matmul", "matmul_v2")
                for n in op.input_arg_names
                if block.var(n).persistable
            ]
    finally:
        paddle.disable_static()


def test_exported_program_uses_matmul_v2(fp32_model: dict[str, Path]) -> None:
    types = program_op_types(fp32_model["model"] / f"{MODEL_PREFIX}.pdmodel")
    assert types["matmul_v2"] > 0


def test_avg_needs_the_zero_dim_fix(fp32_model: dict[str, Path], tmp_path: Path) -> None:
    from paddleslim.quant import quant_post_static

    paddle.enable_static()
    # A fresh program: other tests may have left feed vars of another shape in the default one.
    guard = paddle.static.program_guard(paddle.static.Program(), paddle.static.Program())
    try:
        with guard, pytest.raises(IndexError):  # paddle 2.6 PTQ: var.shape[0] of a 0-D tensor
            quant_post_static(
                executor=paddle.static.Executor(paddle.CPUPlace()),
                model_dir=str(fp32_model["model"]),
                quantize_model_path=str(tmp_path / "q"),
                data_loader=calibration_loader(_calib(), 8, INPUT_NAMES),
                model_filename=f"{MODEL_PREFIX}.pdmodel",
                params_filename=f"{MODEL_PREFIX}.pdiparams",
                batch_size=8,
                batch_nums=1,
                algo="avg",
                quantizable_op_type=["matmul_v2"],
                onnx_format=False,
            )
    finally:
        paddle.disable_static()
    with ptq_zero_dim_fix():
        pass
    from paddle.static.quantization import post_training_quantization as ptq

    assert ptq.utils.load_variable_data.__name__ == "load_variable_data"  # restored


@pytest.mark.parametrize("algo", ["avg", "abs_max"])
def test_quantized_model_holds_int8_weights(
    algo: str, fp32_model: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / algo
    _quantize_one(
        fp32_model["model"], out, _calib(), algo, 1, QuantConfig(batch_size=8), ["matmul_v2"]
    )
    types = program_op_types(out / f"{MODEL_PREFIX}.pdmodel")
    assert any(t.startswith("fake_quantize") for t in types)
    assert types["fake_channel_wise_dequantize_max_abs"] > 0
    weights = _quantized_weights(out)
    assert weights, "no weight inputs found on matmul ops"
    for w in weights:
        assert np.array_equal(w, np.round(w)), "weights are not integer-valued"
        assert np.abs(w).max() <= INT8_MAX


def test_calibration_loader_needs_static_mode() -> None:
    with pytest.raises(RuntimeError, match="static mode"):
        calibration_loader(_calib(), 8, INPUT_NAMES)


def test_select_best_breaks_ties_deterministically() -> None:
    cands = [
        {"algo": "hist", "batch_num": 4, "dev_acc": 0.8},
        {"algo": "mse", "batch_num": 8, "dev_acc": 0.8},
        {"algo": "mse", "batch_num": 4, "dev_acc": 0.8},
        {"algo": "avg", "batch_num": 4, "dev_acc": 0.7},
    ]
    best = select_best(cands, ["mse", "avg", "abs_max", "hist"])
    assert (best["algo"], best["batch_num"]) == ("mse", 4)


def test_run_quantize_keeps_best_int8_candidate(fp32_model: dict[str, Path]) -> None:
    out = fp32_model["root"] / "int8"
    cfg = QuantConfig(
        algos=("avg", "abs_max"), batch_nums=(1, 2), batch_size=8, max_seq_len=MAX_SEQ_LEN
    )
    summary = run_quantize(fp32_model["task"], fp32_model["model"], out, cfg)
    assert len(summary["candidates"]) == 4
    assert summary["quantizable_op_type"] == ["matmul_v2"]
    best = select_best(summary["candidates"], ["avg", "abs_max"])
    assert summary["best"] == {"algo": best["algo"], "batch_num": best["batch_num"]}
    assert summary["int8_dev_acc"] == best["dev_acc"]
    check = summary["int8_check"]
    assert check["has_quant_ops"] and check["evaluated_with_mkldnn_int8"]
    assert check["mkldnn_int8_ops"] == list(CPU_INT8_OPS)
    assert isinstance(check["runs_int8"], bool)
    serving = read_serving_config(out)
    fp32 = read_serving_config(fp32_model["model"])
    assert serving.precision == "int8"
    assert (serving.labels, serving.max_seq_len) == (fp32.labels, fp32.max_seq_len)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["algo"] == best["algo"] and prov["batch_num"] == best["batch_num"]
    assert prov["calib_examples"] == best["batch_num"] * 8
    assert len(json.loads((out / "candidates.json").read_text())) == 4
    assert "| avg | 1 |" in (out / "candidates.md").read_text()
    assert not (out / ".candidates").exists()


def test_run_quantize_rejects_an_int8_input(fp32_model: dict[str, Path]) -> None:
    out = fp32_model["root"] / "int8"
    if not out.exists():
        pytest.skip("needs the int8 model of the previous test")
    from ppminilm.modeling.saved import ModelFormatError

    with pytest.raises(ModelFormatError, match="precision is 'int8'"):
        run_quantize(fp32_model["task"], out, fp32_model["root"] / "again", QuantConfig())


def test_cli_quantize_reports_missing_model_with_exit_2(fp32_model: dict[str, Path]) -> None:
    from ppminilm.cli import EXIT_USAGE, main

    argv = [
        "quantize",
        "--task-dir",
        str(fp32_model["task"]),
        "--model-dir",
        str(fp32_model["root"] / "missing"),
        "--out",
        str(fp32_model["root"] / "cli"),
    ]
    assert main(argv) == EXIT_USAGE
