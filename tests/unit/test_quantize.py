"""Stage 4: PTQ search, paddle 2.6 PTQ workarounds, INT8 checks (ppminilm.stages.quantize)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import calibration_loader, program_op_types, ptq_zero_dim_fix
from ppminilm.config import CPU_INT8_OPS, QuantConfig
from ppminilm.data import load_task_dir
from ppminilm.inference.benchmark import predict
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import INPUT_NAMES, MODEL_PREFIX, export_static, read_serving_config
from ppminilm.modeling.saved import ModelInfo
from ppminilm.stages.quantize import _quantize_one, run_quantize, select_best
from tests.tiny import TINY_ARCH as TINY

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

#: Symmetric INT8 range of PaddleSlim's quantized weights.
INT8_MAX = 127
MAX_SEQ_LEN = 32


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
    _quantize_one(fp32_model["model"], out, _calib(), algo, 8, 1, QuantConfig(), ["matmul_v2"])
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
    order = ["mse", "avg", "abs_max", "hist"]
    cands = [
        {"algo": "hist", "batch_size": 4, "batch_num": 1, "dev_acc": 0.8},
        {"algo": "mse", "batch_size": 8, "batch_num": 1, "dev_acc": 0.8},
        {"algo": "mse", "batch_size": 4, "batch_num": 1, "dev_acc": 0.8},
        {"algo": "avg", "batch_size": 4, "batch_num": 1, "dev_acc": 0.7},
    ]
    # Ties: the earlier algo, then fewer calibration examples.
    assert select_best(cands, order) == cands[2]
    # Same number of examples: fewer batches (one batch of 8 over two of 4).
    same = [
        {"algo": "mse", "batch_size": 4, "batch_num": 2, "dev_acc": 0.8},
        {"algo": "mse", "batch_size": 8, "batch_num": 1, "dev_acc": 0.8},
    ]
    assert select_best(same, order) == same[1]
    # Accuracy first.
    assert select_best([*cands, {**cands[0], "dev_acc": 0.9}], order)["algo"] == "hist"


#: The seed's calibration (one batch of 4 or of 8) for two algorithms: four candidates.
SEARCH = QuantConfig(
    algos=("avg", "abs_max"), batch_sizes=(4, 8), batch_nums=(1,), max_seq_len=MAX_SEQ_LEN
)


@pytest.fixture(scope="module")
def int8_model(fp32_model: dict[str, Path]) -> tuple[Path, dict]:
    """The tiny FP32 model through the PTQ search: the INT8 directory and the summary."""
    out = fp32_model["root"] / "int8"
    return out, run_quantize(fp32_model["task"], fp32_model["model"], out, SEARCH)


def test_run_quantize_keeps_best_int8_candidate(
    fp32_model: dict[str, Path], int8_model: tuple[Path, dict]
) -> None:
    out, summary = int8_model
    assert [(c["algo"], c["batch_size"], c["batch_num"]) for c in summary["candidates"]] == [
        ("avg", 4, 1), ("avg", 8, 1), ("abs_max", 4, 1), ("abs_max", 8, 1)
    ]  # fmt: skip
    assert [c["calib_examples"] for c in summary["candidates"]] == [4, 8, 4, 8]
    assert summary["quantizable_op_type"] == ["matmul_v2"]
    # Oracle independent of select_best: the highest dev accuracy; on a tie the first
    # candidate in search order (algos as given, then the smaller calibration batch).
    top = max(c["dev_acc"] for c in summary["candidates"])
    best = next(c for c in summary["candidates"] if c["dev_acc"] == top)
    assert summary["best"] == {
        "algo": best["algo"], "batch_size": best["batch_size"], "batch_num": best["batch_num"]
    }  # fmt: skip
    assert summary["int8_dev_acc"] == top
    # And the model written is that candidate: scoring it afresh gives its accuracy.
    dev = load_task_dir(fp32_model["task"]).dev
    predicted = predict(out, dev)
    fresh = sum(p == e["label"] for p, e in zip(predicted, dev, strict=True)) / len(dev)
    assert abs(fresh - top) <= 1 / len(dev) + 1e-9
    check = summary["int8_check"]
    assert check["has_quant_ops"] and check["evaluated_with_mkldnn_int8"]
    assert check["mkldnn_int8_ops"] == list(CPU_INT8_OPS)
    assert isinstance(check["runs_int8"], bool)
    serving = read_serving_config(out)
    fp32 = read_serving_config(fp32_model["model"])
    assert serving.precision == "int8"
    assert (serving.labels, serving.max_seq_len) == (fp32.labels, fp32.max_seq_len)
    prov = json.loads((out / "provenance.json").read_text())
    assert (
        prov["details"]["algo"] == best["algo"]
        and prov["details"]["batch_num"] == best["batch_num"]
    )
    assert prov["details"]["batch_size"] == best["batch_size"]
    assert prov["details"]["calib_examples"] == best["batch_size"] * best["batch_num"]
    assert prov["details"]["calib_split"].startswith("train")
    assert len(json.loads((out / "candidates.json").read_text())) == 4
    assert "| avg | 8 | 1 | 8 |" in (out / "candidates.md").read_text()
    assert not (out / ".candidates").exists()


def test_run_quantize_rejects_an_int8_input(
    fp32_model: dict[str, Path], int8_model: tuple[Path, dict]
) -> None:
    out, _ = int8_model
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


# ----------------------------------------------------------------------------- GPU scoring


def test_gpu_candidates_are_scored_with_tensorrt_int8() -> None:
    from ppminilm.inference.predictor import config_plan
    from ppminilm.stages.quantize import scoring_config

    cfg = scoring_config("gpu", "int8", 32, MAX_SEQ_LEN, 2)
    plan = config_plan(cfg, quantized=True, shape_file="shapes.pbtxt")
    methods = [step.method for step in plan]
    assert "enable_mkldnn_int8" not in methods and "disable_gpu" not in methods
    (trt,) = [step for step in plan if step.method == "enable_tensorrt_engine"]
    assert trt.kwargs["precision_mode"] == paddle.inference.PrecisionType.Int8
    assert trt.kwargs["use_calib_mode"] is False  # the PTQ model's own scales
    assert ("enable_tuned_tensorrt_dynamic_shape", ("shapes.pbtxt", True)) in [
        (s.method, s.args) for s in plan
    ]
    # The CPU branch keeps oneDNN INT8 on the fc ops.
    cpu = config_plan(scoring_config("cpu", "int8", 32, MAX_SEQ_LEN, 2), quantized=True)
    assert ("enable_mkldnn_int8", (set(CPU_INT8_OPS),)) in [(s.method, s.args) for s in cpu]


def test_gpu_scoring_on_a_cpu_build_fails_before_calibrating(
    fp32_model: dict[str, Path], tmp_path: Path
) -> None:
    from ppminilm.errors import DeviceUnavailableError

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this paddle has CUDA")
    cfg = QuantConfig(algos=("abs_max",), batch_nums=(1,), max_seq_len=MAX_SEQ_LEN, device="gpu")
    with pytest.raises(DeviceUnavailableError, match="CPU-only build"):
        run_quantize(fp32_model["task"], fp32_model["model"], tmp_path / "q", cfg)
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="device"):
        QuantConfig(device="tpu")


@pytest.mark.parametrize("mode", ["log", "bar"])
def test_ptq_draws_no_bars_in_a_pipeline_log(
    fp32_model: dict[str, Path],
    tmp_path: Path,
    mode: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tqdm is imported (by paddle's PTQ modules) before the stage runs, as in a pipeline step,
    # so TQDM_DISABLE set at that point is not read (compat.paddleslim.quiet_ptq).
    import paddle.static.quantization.post_training_quantization as ptq_module

    original = ptq_module.tqdm
    monkeypatch.setenv("PPMINILM_PROGRESS", mode)
    one = QuantConfig(
        algos=("abs_max",), batch_sizes=(4,), batch_nums=(1,), max_seq_len=MAX_SEQ_LEN
    )
    run_quantize(fp32_model["task"], fp32_model["model"], tmp_path / "q", one)
    err = capfd.readouterr().err
    if mode == "log":
        assert "Sampling stage" not in err and "Adding quant" not in err, err[-2000:]
    else:  # a person at a terminal keeps them
        assert "Sampling stage" in err
    assert ptq_module.tqdm is original
