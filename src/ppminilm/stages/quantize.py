"""Stage 4: post-training static INT8 quantization (PaddleSlim ``quant_post_static``) search.

Every ``cfg.algos`` x ``cfg.batch_sizes`` x ``cfg.batch_nums`` candidate is calibrated on a
deterministic sample of train inputs (no labels used; the seed's ``quant_post.py`` calibrates
one batch of 4 or 8 examples, the cluster profile's default), evaluated on dev with Paddle
Inference on the device it will serve on, and the best is kept (ties: order of ``cfg.algos``,
then fewer calibration examples, then fewer batches). The sample is drawn once; a candidate
calibrates on its first ``batch_size x batch_num`` examples, so a smaller calibration sees a
subset of a larger one. ``cfg.device='cpu'``: oneDNN INT8 kernels (``enable_mkldnn_int8``:
without it a PTQ model runs its fake-quant ops in FP32, slower than the FP32 model; restricted
to ``cfg.mkldnn_int8_ops``, by default :data:`ppminilm.config.CPU_INT8_OPS`, which says why).
``cfg.device='gpu'`` (the pipeline's GPU branch, on the T4 pool):
TensorRT INT8 with the model's own scales (``use_calib_mode=False``) and tuned dynamic shapes
collected per candidate, the benchmark's settings; a model that scores well under oneDNN's
fc-only INT8 need not under TensorRT's INT8 attention, so candidates are chosen where they run.

Output directory: the best candidate as an inference model (export.py layout, ``serving.json``
precision ``int8``), plus ``candidates.json``/``candidates.md`` (every candidate's dev accuracy,
op counts and INT8 check) and ``quantize_summary.json``.

Paddle 2.6 workarounds live in :mod:`ppminilm.compat.paddleslim`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddleslim import (
    calibration_loader,
    program_op_types,
    ptq_zero_dim_fix,
    quiet_ptq,
)
from ppminilm.config import CPU_INT8_OPS, InferConfig, ModelArch, QuantConfig
from ppminilm.contracts import (
    CANDIDATES_JSON,
    CANDIDATES_MD,
    QUANT_SUMMARY_FILE,
    SERVING_FILE,
    Lineage,
    Provenance,
)
from ppminilm.data import load_task_dir
from ppminilm.io import staged_dir, write_json
from ppminilm.modeling.export import (
    INPUT_NAMES,
    MODEL_PREFIX,
    ServingConfig,
    read_serving_config,
    write_serving_config,
)
from ppminilm.modeling.saved import ModelFormatError, copy_tokenizer_files, write_provenance
from ppminilm.progress import progress_bars_wanted
from ppminilm.training.loop import accuracy

logger = logging.getLogger(__name__)

#: Examples per predictor run when evaluating on dev.
EVAL_BATCH_SIZE = 32
#: Op types whose presence means the program carries quantized weights/activations.
QUANT_OP_PREFIXES = (
    "fake_quantize",
    "fake_channel_wise",
    "fake_dequantize",
    "quantize_linear",
    "dequantize_linear",
)


def quant_op_counts(model_dir: str | Path) -> dict[str, int]:
    """Counts of quantize/dequantize op types in an inference program."""
    types = program_op_types(Path(model_dir) / f"{MODEL_PREFIX}.pdmodel")
    return {t: n for t, n in sorted(types.items()) if t.startswith(QUANT_OP_PREFIXES)}


def _cpu_infer_config(
    precision: str, batch_size: int, max_seq_len: int, num_threads: int, int8_ops: Sequence[str]
) -> InferConfig:
    """The benchmark's CPU predictor settings, so candidates are scored as they will run."""
    return InferConfig(
        device="cpu",
        precision=precision,
        batch_size=batch_size,
        max_seq_len=max_seq_len,
        num_threads=num_threads,
        use_mkldnn=True,
        use_trt=False,
        int8_op_types=tuple(int8_ops),
    )


def _gpu_infer_config(precision: str, batch_size: int, max_seq_len: int) -> InferConfig:
    """The benchmark's GPU predictor settings: TensorRT at ``precision``, tuned shapes."""
    return InferConfig(
        device="gpu",
        precision=precision,
        batch_size=batch_size,
        max_seq_len=max_seq_len,
        use_mkldnn=False,
        use_trt=True,
    )


def scoring_config(
    device: str,
    precision: str,
    batch_size: int,
    max_seq_len: int,
    num_threads: int,
    int8_ops: Sequence[str] = CPU_INT8_OPS,
) -> InferConfig:
    """How candidates are scored on ``device`` (the settings the benchmark serves them with)."""
    if device == "gpu":
        return _gpu_infer_config(precision, batch_size, max_seq_len)
    return _cpu_infer_config(precision, batch_size, max_seq_len, num_threads, int8_ops)


def evaluate_inference(
    model_dir: str | Path,
    arrays: dict[str, np.ndarray],
    precision: str,
    batch_size: int,
    num_threads: int,
    int8_ops: Sequence[str] = CPU_INT8_OPS,
    device: str = "cpu",
) -> float:
    """Dev accuracy of an inference dir with Paddle Inference on CPU (oneDNN) or TensorRT.

    Args:
        model_dir: Inference dir (export.py layout).
        arrays: ``input_ids``, ``token_type_ids`` and ``labels``.
        precision: ``fp32``, or ``int8`` (oneDNN INT8 kernels / TensorRT INT8).
        batch_size: Examples per predictor run.
        num_threads: CPU math threads.
        int8_ops: CPU only: op types allowed to run INT8 (empty: every op oneDNN can).
        device: ``cpu`` or ``gpu`` (TensorRT; shape ranges collected first, per model).

    Returns:
        Accuracy in [0, 1].
    """
    import tempfile

    from ppminilm.inference.benchmark import collect_shape_ranges
    from ppminilm.inference.predictor import Predictor

    cfg = scoring_config(
        device, precision, batch_size, arrays["input_ids"].shape[1], num_threads, int8_ops
    )
    if device != "gpu":
        logits = Predictor(model_dir, cfg).logits(arrays, batch_size)
        return accuracy(logits, arrays["labels"])
    inputs = {k: v for k, v in arrays.items() if k != "labels"}
    n = len(arrays["labels"])
    tail = n % batch_size or batch_size
    batches = [{k: v[:batch_size] for k, v in inputs.items()}]
    batches.append({k: v[n - tail :] for k, v in inputs.items()})
    with tempfile.TemporaryDirectory(prefix="ppminilm-trt-") as tmp:
        shape_file = Path(tmp) / cfg.shape_range_file
        collect_shape_ranges(model_dir, cfg, shape_file, batches)
        logits = Predictor(model_dir, cfg, shape_file=str(shape_file)).logits(arrays, batch_size)
    return accuracy(logits, arrays["labels"])


def int8_check(
    model_dir: str | Path, num_threads: int, int8_ops: Sequence[str], device: str = "cpu"
) -> dict[str, Any]:
    """Evidence that a quantized model carries quantized ops and runs INT8 kernels.

    Uses the benchmark's own check (:func:`ppminilm.inference.detect_int8_kernels`: the program
    Paddle Inference optimizes with these settings, INT8 compute ops counted in it). TensorRT
    engines are opaque: on ``gpu`` only the quant ops and the requested precision are recorded.
    """
    from ppminilm.inference.benchmark import detect_int8_kernels
    from ppminilm.modeling.export import read_serving_config

    ops = quant_op_counts(model_dir)
    max_seq_len = read_serving_config(model_dir).max_seq_len
    cfg = scoring_config(device, "int8", EVAL_BATCH_SIZE, max_seq_len, num_threads, int8_ops)
    kernels = detect_int8_kernels(model_dir, cfg)
    return {
        "quant_ops": ops,
        "has_quant_ops": bool(ops),
        "device": device,
        "evaluated_with_mkldnn_int8": device == "cpu",
        "evaluated_with_tensorrt_int8": device == "gpu",
        "mkldnn_int8_ops": list(int8_ops) if device == "cpu" else [],
        "runs_int8": bool(kernels.get("runs_int8")) if kernels.get("checked") else None,
        "kernels": kernels,
    }


def _quantize_one(
    fp32_dir: Path,
    out: Path,
    calib: dict[str, np.ndarray],
    algo: str,
    batch_size: int,
    batch_num: int,
    cfg: QuantConfig,
    op_types: list[str],
) -> None:
    from paddleslim.quant import quant_post_static

    from ppminilm.compat.paddle import paddle

    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        # A fresh program (for the loader's feed vars) and scope per candidate, so candidates
        # never see each other's variables.
        main, startup = paddle.static.Program(), paddle.static.Program()
        with (
            paddle.static.program_guard(main, startup),
            paddle.static.scope_guard(paddle.static.Scope()),
            ptq_zero_dim_fix(),
            quiet_ptq(progress_bars_wanted()),
        ):
            loader = calibration_loader(calib, batch_size, INPUT_NAMES)
            quant_post_static(
                executor=exe,
                model_dir=str(fp32_dir),
                quantize_model_path=str(out),
                data_loader=loader,
                model_filename=f"{MODEL_PREFIX}.pdmodel",
                params_filename=f"{MODEL_PREFIX}.pdiparams",
                save_model_filename=f"{MODEL_PREFIX}.pdmodel",
                save_params_filename=f"{MODEL_PREFIX}.pdiparams",
                batch_size=batch_size,
                batch_nums=batch_num,
                algo=algo,
                hist_percent=cfg.hist_percent,
                quantizable_op_type=op_types,
                weight_quantize_type=cfg.weight_quantize_type,
                onnx_format=cfg.onnx_format,
            )
    finally:
        paddle.disable_static()


def _encode(task_data: Any, split: str, model_dir: Path, max_seq_len: int) -> dict[str, np.ndarray]:
    from ppminilm.data.tokenizer import load_tokenizer
    from ppminilm.stages.finetune import encode_split

    return encode_split(
        load_tokenizer(model_dir),
        task_data.split(split),
        task_data.spec,
        task_data.labels,
        max_seq_len,
    )


def calibration_inputs(task_data: Any, model_dir: Path, cfg: QuantConfig) -> dict[str, np.ndarray]:
    """The calibration inputs: a deterministic sample of train, encoded, labels left out.

    Its size is the largest ``batch_size x batch_num`` among the candidates.
    """
    from ppminilm.data import sample_examples
    from ppminilm.data.tokenizer import encode_examples, load_tokenizer

    needed = max(cfg.batch_sizes) * max(cfg.batch_nums)
    sample = sample_examples(task_data.train, needed, cfg.seed)
    if len(sample) < needed:
        logger.warning(
            "train has %d examples; calibrating %d needs more (the loader stops early)",
            len(sample),
            needed,
        )
    return encode_examples(load_tokenizer(model_dir), sample, task_data.spec, cfg.max_seq_len)


def run_quantize(
    task_dir: str | Path, model_dir: str | Path, out_dir: str | Path, cfg: QuantConfig
) -> dict[str, Any]:
    """Search PTQ settings for an FP32 inference model and keep the best INT8 model.

    Args:
        task_dir: Task directory (a train sample calibrates, ``dev`` selects).
        model_dir: FP32 static inference dir (export.py layout, e.g. the prune stage's).
        out_dir: Output inference dir (best INT8 candidate), written all or nothing.
        cfg: Algorithms, calibration batch sizes and counts, weight quantization.

    Returns:
        JSON-able summary: ``fp32_dev_acc``, ``int8_dev_acc``, ``best`` (algo, batch_size,
        batch_num), ``candidates`` (each: algo, batch_size, batch_num, calib_examples,
        dev_acc, quant_ops, seconds), ``int8_check``
        (quant ops present, oneDNN INT8 kernels used), ``quantizable_op_type`` (the types
        found in the program), ``calib_examples``, ``model_dir``, ``seconds``.

    Raises:
        ModelFormatError: If ``model_dir`` is not an FP32 inference model.
        ValueError: If labels differ from the task's or no quantizable op is present.
    """
    t0 = time.perf_counter()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if cfg.device == "gpu":  # before any calibration: fail fast without CUDA/TensorRT
        from ppminilm.inference.predictor import require_device

        require_device(_gpu_infer_config("int8", EVAL_BATCH_SIZE, cfg.max_seq_len))
    serving = read_serving_config(model_dir)
    if serving.precision != "fp32":
        raise ModelFormatError(
            f"{model_dir}/serving.json: precision is {serving.precision!r}; "
            "quantization needs an fp32 inference model"
        )
    task_data = load_task_dir(task_dir)
    task_data.check_model(serving.task, serving.labels, f"{model_dir}/{SERVING_FILE}")
    if cfg.max_seq_len > serving.max_seq_len:
        raise ValueError(
            f"QuantConfig.max_seq_len={cfg.max_seq_len} exceeds the model's "
            f"max_seq_len {serving.max_seq_len} ({model_dir}/serving.json)"
        )
    present = program_op_types(model_dir / f"{MODEL_PREFIX}.pdmodel")
    op_types = [t for t in cfg.quantizable_op_type if t in present]
    if not op_types:
        raise ValueError(
            f"{model_dir}: program has none of quantizable_op_type "
            f"{list(cfg.quantizable_op_type)} (its ops: {sorted(present)})"
        )
    logger.info(
        "quantizing op types %s (%s)", op_types, ", ".join(f"{t} x{present[t]}" for t in op_types)
    )
    calib = calibration_inputs(task_data, model_dir, cfg)
    dev = _encode(task_data, "dev", model_dir, cfg.max_seq_len)
    fp32_acc = evaluate_inference(
        model_dir, dev, "fp32", EVAL_BATCH_SIZE, cfg.num_threads, device=cfg.device
    )
    logger.info("fp32 dev acc %.4f", fp32_acc)

    candidates: list[dict[str, Any]] = []
    with staged_dir(out_dir, replace=True, kind="quantize") as tmp:
        work = tmp / ".candidates"
        for algo, batch_size, batch_num in candidate_grid(cfg):
            t1 = time.perf_counter()
            cand = work / candidate_name(algo, batch_size, batch_num)
            _quantize_one(model_dir, cand, calib, algo, batch_size, batch_num, cfg, op_types)
            _finish_dir(cand, model_dir, serving, {})
            acc = evaluate_inference(
                cand,
                dev,
                "int8",
                EVAL_BATCH_SIZE,
                cfg.num_threads,
                cfg.mkldnn_int8_ops,
                device=cfg.device,
            )
            candidates.append(
                {
                    "algo": algo,
                    "batch_size": batch_size,
                    "batch_num": batch_num,
                    "calib_examples": min(len(calib["input_ids"]), batch_size * batch_num),
                    "dev_acc": acc,
                    "quant_ops": quant_op_counts(cand),
                    "seconds": round(time.perf_counter() - t1, 2),
                }
            )
            logger.info(
                "candidate %s, %d batch(es) of %d: int8 dev acc %.4f",
                algo,
                batch_num,
                batch_size,
                acc,
            )
        best = select_best(candidates, list(cfg.algos))
        best_dir = work / candidate_name(best["algo"], best["batch_size"], best["batch_num"])
        check = int8_check(best_dir, cfg.num_threads, cfg.mkldnn_int8_ops, cfg.device)
        if not check["has_quant_ops"] or check["runs_int8"] is False:
            logger.warning("INT8 check failed for %s: %s", best_dir, check)
        calib_size = best["calib_examples"]
        provenance = {
            "stage": "quantize",
            "config": cfg.to_dict(),
            "parent": str(model_dir),
            "task_dir": str(task_dir),
            "algo": best["algo"],
            "batch_size": best["batch_size"],
            "batch_num": best["batch_num"],
            "calib_examples": calib_size,
            "calib_split": "train (sample, inputs only)",
            "dev_acc": best["dev_acc"],
            "fp32_dev_acc": fp32_acc,
        }
        for name in (f"{MODEL_PREFIX}.pdmodel", f"{MODEL_PREFIX}.pdiparams"):
            shutil.copy2(best_dir / name, tmp / name)
        _finish_dir(tmp, model_dir, serving, provenance)
        shutil.rmtree(work)
        summary = {
            "fp32_dev_acc": fp32_acc,
            "int8_dev_acc": best["dev_acc"],
            "best": {
                "algo": best["algo"],
                "batch_size": best["batch_size"],
                "batch_num": best["batch_num"],
            },
            "candidates": candidates,
            "int8_check": check,
            "quantizable_op_type": op_types,
            "calib_examples": calib_size,
            "calib_split": "train (sample, inputs only)",
            "model_dir": str(out_dir),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(tmp / CANDIDATES_JSON, candidates)
        (tmp / CANDIDATES_MD).write_text(
            candidates_markdown(candidates, fp32_acc, best), encoding="utf-8"
        )
        write_json(tmp / QUANT_SUMMARY_FILE, summary)
    logger.info(
        "best %s, %d batch(es) of %d: int8 dev acc %.4f (fp32 %.4f) -> %s",
        best["algo"],
        best["batch_num"],
        best["batch_size"],
        best["dev_acc"],
        fp32_acc,
        out_dir,
    )
    return summary


def candidate_grid(cfg: QuantConfig) -> list[tuple[str, int, int]]:
    """Every ``(algo, batch_size, batch_num)`` candidate, in search order."""
    return [
        (algo, batch_size, batch_num)
        for algo in cfg.algos
        for batch_size in cfg.batch_sizes
        for batch_num in cfg.batch_nums
    ]


def candidate_name(algo: str, batch_size: int, batch_num: int) -> str:
    """Directory name of one candidate: ``mse_bs4_x1``."""
    return f"{algo}_bs{batch_size}_x{batch_num}"


def quantize_arrays(
    model_dir: str | Path,
    out_dir: str | Path,
    calib: dict[str, np.ndarray],
    cfg: QuantConfig,
) -> Path:
    """One PTQ model (``cfg.algos[0]``, ``cfg.batch_nums[0]`` batches of ``cfg.batch_sizes[0]``)
    from encoded calibration arrays.

    For speed rows and device checks whose inputs are ids, not a task directory (no search,
    no dev scoring): same ``quant_post_static`` settings and output layout as
    :func:`run_quantize`.

    Args:
        model_dir: FP32 static inference dir.
        out_dir: Output inference dir (``serving.json`` precision ``int8``), all or nothing.
        calib: ``input_ids`` and ``token_type_ids``, int64 ``[n, seq]``.
        cfg: PTQ settings.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: If the program has none of ``cfg.quantizable_op_type``.
    """
    model_dir = Path(model_dir)
    serving = read_serving_config(model_dir)
    present = program_op_types(model_dir / f"{MODEL_PREFIX}.pdmodel")
    op_types = [t for t in cfg.quantizable_op_type if t in present]
    if not op_types:
        raise ValueError(f"{model_dir}: program has none of {list(cfg.quantizable_op_type)}")
    algo, batch_size, batch_num = cfg.algos[0], cfg.batch_sizes[0], cfg.batch_nums[0]
    with staged_dir(out_dir, replace=True, kind="quantize") as tmp:
        _quantize_one(model_dir, tmp / "model", calib, algo, batch_size, batch_num, cfg, op_types)
        for name in (f"{MODEL_PREFIX}.pdmodel", f"{MODEL_PREFIX}.pdiparams"):
            shutil.move(str(tmp / "model" / name), tmp / name)
        shutil.rmtree(tmp / "model")
        provenance = {"stage": "quantize", "config": cfg.to_dict(), "parent": str(model_dir)}
        chosen = {
            "algo": algo,
            "batch_size": batch_size,
            "batch_num": batch_num,
            "calib_examples": min(len(calib["input_ids"]), batch_size * batch_num),
        }
        _finish_dir(tmp, model_dir, serving, {**provenance, **chosen})
    return Path(out_dir)


def select_best(candidates: list[dict[str, Any]], algo_order: list[str]) -> dict[str, Any]:
    """Highest dev accuracy; ties go to the earlier algo in ``algo_order``, then fewer
    calibration examples, then fewer batches."""
    if not candidates:
        raise ValueError("no quantization candidates to choose from")

    def examples(c: dict[str, Any]) -> int:
        return int(c.get("batch_size", 0)) * int(c["batch_num"])

    return min(
        candidates,
        key=lambda c: (-c["dev_acc"], algo_order.index(c["algo"]), examples(c), c["batch_num"]),
    )


def _finish_dir(
    target: Path, fp32_dir: Path, serving: ServingConfig, provenance: dict[str, Any]
) -> None:
    """serving.json (precision int8, same labels/max_seq_len), vocab and provenance."""
    write_serving_config(
        target,
        ServingConfig(
            max_seq_len=serving.max_seq_len,
            labels=list(serving.labels),
            task=serving.task,
            precision="int8",
            width=serving.width,
            arch=dict(serving.arch),
            input_names=list(serving.input_names),
        ),
    )
    copy_tokenizer_files(fp32_dir, target)
    if provenance:
        if not serving.arch:
            raise ModelFormatError(f"{fp32_dir}/{SERVING_FILE}: no 'arch' (needed for provenance)")
        parent = Provenance.read(fp32_dir)
        lineage = parent.lineage if parent is not None else Lineage()
        fields = {"format": "paddle-static", "precision": "int8", "lineage": lineage}
        write_provenance(target, ModelArch.from_dict(serving.arch), {**fields, **provenance})


def candidates_markdown(
    candidates: list[dict[str, Any]], fp32_acc: float, best: dict[str, Any]
) -> str:
    """A Markdown table of the candidates (best marked) for the report."""
    lines = [
        f"FP32 dev accuracy: {fp32_acc:.4f}; calibration: a sample of train inputs (no labels)",
        "",
        "| algo | calib batch size | calib batches | calib examples | INT8 dev acc "
        "| diff vs FP32 | quant ops | best |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    key = ("algo", "batch_size", "batch_num")
    for c in candidates:
        mark = "yes" if all(c[k] == best[k] for k in key) else ""
        ops = sum(Counter(c["quant_ops"]).values())
        lines.append(
            f"| {c['algo']} | {c['batch_size']} | {c['batch_num']} | {c['calib_examples']} | "
            f"{c['dev_acc']:.4f} | {c['dev_acc'] - fp32_acc:+.4f} | {ops} | {mark} |"
        )
    return "\n".join(lines) + "\n"
