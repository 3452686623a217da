"""``engine='auto'``: benchmark the same model on every available CPU engine, keep the fastest.

For one benchmark row (a model at one precision) the candidates are:

* ``paddle``: the model as the pipeline produced it (for INT8, our PaddleSlim PTQ model).
* ``openvino``: FP32/BF16 read the Paddle program directly; INT8 is NNCF post-training
  quantization of the FP32 ``reference`` model (OpenVINO cannot read PaddleSlim's fake-quant
  ops).
* ``onnxruntime``: paddle2onnx export; INT8 is static QDQ quantization of the FP32
  ``reference`` (no BF16 row: onnxruntime's CPU provider has none).

The peers' INT8 calibrates on the train sample the Paddle PTQ model was calibrated on (same
seed, same count: :func:`ptq_calibration`; inputs only), never on the dev split it is scored on.

Every candidate is timed with the same schedule, passes interleaved
(:func:`ppminilm.inference.benchmark.timed_passes`), and scored on the same split. The fastest
candidate whose accuracy is within :data:`MAX_ACC_DROP_POINTS` of the Paddle candidate's wins;
its result is returned as the row's result (``engine`` says which), with every candidate in
``engines`` and the reason in ``engine_choice``. Its model dir, which records the engine in
``serving.json``, can be copied out as the deployable artifact.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.config import ENGINE_AUTO, InferConfig
from ppminilm.contracts import BenchmarkResult
from ppminilm.inference.engines import available_engines
from ppminilm.inference.engines.base import Engine, EngineUnavailableError
from ppminilm.io import copy_dir
from ppminilm.modeling.export import read_serving_config

logger = logging.getLogger(__name__)

#: A peer engine may replace Paddle only at an accuracy at most this far below Paddle's (dev
#: accuracy points; the same budget as the recipe's INT8 accuracy goal).
MAX_ACC_DROP_POINTS = 0.5
#: Calibration examples for the peers' own INT8 when the Paddle PTQ model does not record its
#: own count (``provenance.json`` ``calib_examples``; the peers use the same count).
DEFAULT_CALIB_EXAMPLES = 16


def ptq_calibration(
    model_dir: str | Path, default: int = DEFAULT_CALIB_EXAMPLES
) -> tuple[int, int]:
    """``(examples, seed)`` of the train sample a Paddle PTQ model was calibrated on.

    Read from its ``provenance.json`` (the quantize stage's ``details.calib_examples`` and
    ``config.seed``); the defaults (:data:`DEFAULT_CALIB_EXAMPLES`, ``QuantConfig.seed``) where
    it records none.

    Args:
        model_dir: The Paddle PTQ inference dir.
        default: The count where the provenance records none.
    """
    from ppminilm.config import QuantConfig
    from ppminilm.io import read_json_file
    from ppminilm.modeling.saved import PROVENANCE_FILE, ModelFormatError

    examples, seed = default, QuantConfig().seed
    path = Path(model_dir) / PROVENANCE_FILE
    if path.is_file():
        record = read_json_file(path, ModelFormatError)
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        value = details.get("calib_examples", record.get("calib_examples"))
        if isinstance(value, int) and value > 0:
            examples = value
        if isinstance(config.get("seed"), int):
            seed = config["seed"]
    return examples, seed


def ptq_calib_examples(model_dir: str | Path, default: int = DEFAULT_CALIB_EXAMPLES) -> int:
    """Calibration examples the quantize stage used for a Paddle PTQ model (its provenance)."""
    return ptq_calibration(model_dir, default)[0]


def calibration_sample(
    model_dir: Path, task_dir: str | Path, examples: int, seed: int, max_seq_len: int
) -> dict[str, np.ndarray]:
    """The peers' calibration inputs: the quantize stage's train sample, encoded, no labels."""
    from ppminilm.data import load_task_dir, sample_examples
    from ppminilm.data.tokenizer import encode_examples, load_tokenizer

    data = load_task_dir(task_dir)
    sample = sample_examples(data.train, examples, seed)
    return encode_examples(load_tokenizer(model_dir), sample, data.spec, max_seq_len)


def prepare_candidate(
    engine: str,
    model_dir: Path,
    precision: str,
    work: Path,
    *,
    reference_dir: Path | None,
    calib: dict[str, np.ndarray] | None,
    calib_examples: int,
) -> Path:
    """The inference dir ``engine`` runs for this row (converted/quantized into ``work``).

    Raises:
        EngineUnavailableError: If the engine cannot run this row (e.g. INT8 without an FP32
            reference to quantize, or BF16 on onnxruntime).
    """
    if engine == "paddle":
        return model_dir
    fp32 = model_dir if precision != "int8" else reference_dir
    if fp32 is None:
        raise EngineUnavailableError(
            f"engine {engine!r} INT8 quantizes the FP32 model itself; no FP32 reference given"
        )
    if engine == "openvino":
        if precision != "int8":
            return fp32
        from ppminilm.inference.engines.openvino import quantize_openvino

        assert calib is not None
        quantize_openvino(fp32, calib, work / "openvino_int8", calib_examples=calib_examples)
        return work / "openvino_int8"
    if engine == "onnxruntime":
        if precision == "bf16":
            raise EngineUnavailableError("onnxruntime's CPU provider has no bf16 path")
        from ppminilm.inference.engines.onnxruntime import export_onnx, quantize_ort_static

        onnx_dir = export_onnx(fp32, work / "onnx_fp32")
        if precision != "int8":
            return onnx_dir
        assert calib is not None
        quantize_ort_static(onnx_dir, calib, work / "onnx_int8", calib_examples=calib_examples)
        return work / "onnx_int8"
    raise ValueError(f"unknown engine {engine!r}")


def choose_engine(results: dict[str, dict[str, Any]], baseline: str = "paddle") -> tuple[str, str]:
    """The fastest engine at an accuracy within :data:`MAX_ACC_DROP_POINTS` of ``baseline``'s.

    Args:
        results: Engine -> its benchmark result (``total_s``, ``accuracy``).
        baseline: The engine whose accuracy the others must match.

    Returns:
        ``(engine, reason)``.
    """
    if not results:
        raise ValueError("no engine result to choose from")
    base_acc = results[baseline]["accuracy"] if baseline in results else None
    eligible = {
        name: r
        for name, r in results.items()
        if base_acc is None or (base_acc - r["accuracy"]) * 100 <= MAX_ACC_DROP_POINTS
    }
    best = min(eligible, key=lambda name: eligible[name]["total_s"])
    dropped = sorted(set(results) - set(eligible))
    reason = f"fastest of {sorted(eligible)} ({results[best]['total_s']:.3f} s/pass)"
    if dropped:
        reason += (
            f"; {dropped} excluded: accuracy more than {MAX_ACC_DROP_POINTS} points below "
            f"{baseline}'s"
        )
    return best, reason


def benchmark_engines(
    model_dir: str | Path,
    task_dir: str | Path,
    cfg: InferConfig,
    *,
    reference_dir: str | Path | None = None,
    engines: Sequence[str] | None = None,
    deploy_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    calib_examples: int | None = None,
    test_split: str | None = None,
) -> BenchmarkResult:
    """Benchmark one row on several engines and keep the fastest (see the module docstring).

    Args:
        model_dir: The row's Paddle inference dir (FP32, or our PTQ model for INT8).
        task_dir: Task directory (``dev`` timed and scored; a train sample calibrates the
            peers' INT8).
        cfg: The row's settings (``engine`` is ignored: every candidate runs).
        reference_dir: The FP32 model the INT8 peers quantize themselves (for an INT8 row).
        engines: Candidates (default: every installed engine).
        deploy_dir: If given, the winner's inference dir is copied here.
        work_dir: Where converted models go (default: a temporary directory).
        calib_examples: Calibration examples for the peers' INT8 (default: as many as the
            Paddle PTQ model was calibrated on, :func:`ptq_calib_examples`).
        test_split: If given and labelled, also scored (untimed) on the winning engine
            (``test_accuracy``); no selection sees it.

    Returns:
        The winner's :func:`ppminilm.inference.benchmark.run_benchmark` result, plus
        ``engines`` (each candidate's timing, accuracy and INT8 check, or why it did not run),
        ``engine_choice`` and ``deploy_dir``.
    """
    from ppminilm.inference.benchmark import encode_labelled_split, make_result, timed_passes
    from ppminilm.inference.engines import open_engine
    from ppminilm.inference.predictor import check_max_seq_len, require_device
    from ppminilm.training.loop import iterate_batches

    model_dir = Path(model_dir)
    if cfg.device != "cpu":
        raise ValueError(f"engine {ENGINE_AUTO!r} compares CPU engines; device is {cfg.device!r}")
    serving = read_serving_config(model_dir)
    check_max_seq_len(serving, cfg.max_seq_len, str(model_dir))
    require_device(cfg)
    names = list(engines) if engines is not None else available_engines()
    task, arrays, labels = encode_labelled_split(
        model_dir, serving, task_dir, "dev", cfg.max_seq_len
    )
    batches = list(iterate_batches(arrays, cfg.batch_size))
    calib = None
    recorded, seed = ptq_calibration(model_dir)
    if calib_examples is None:
        calib_examples = recorded
    if cfg.precision == "int8":
        calib = calibration_sample(model_dir, task_dir, calib_examples, seed, cfg.max_seq_len)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ppminilm-engines-") as tmp:
        work = Path(work_dir or tmp)
        opened: dict[str, Engine] = {}
        for name in names:
            try:
                cand = prepare_candidate(
                    name,
                    model_dir,
                    cfg.precision,
                    work / name,
                    reference_dir=Path(reference_dir) if reference_dir else None,
                    calib=calib,
                    calib_examples=calib_examples,
                )
                opened[name] = open_engine(cand, cfg, name)
            except EngineUnavailableError as exc:
                logger.warning("engine %s skipped: %s", name, exc)
                skipped[name] = str(exc)
        if not opened:
            raise EngineUnavailableError(f"no engine could run {model_dir}: {skipped}")
        checks = {name: e.int8_check(batches[0]) for name, e in opened.items()}
        timings = timed_passes(opened, batches, cfg)
        results = {
            name: make_result(
                e.model_dir,
                serving,
                task,
                "dev",
                labels,
                batches,
                cfg,
                e,
                timings[name],
                checks[name],
            )
            for name, e in opened.items()
        }
        best, reason = choose_engine(
            {n: {"total_s": r.total_s, "accuracy": r.accuracy} for n, r in results.items()}
        )
        logger.info("engine auto for %s: %s (%s)", model_dir.name, best, reason)
        tested = None
        if test_split:
            from ppminilm.inference.benchmark import score_split

            best_cfg = cfg.replace(engine=best)
            tested = score_split(task_dir, model_dir, best_cfg, test_split, engine=opened[best])
        deployed = ""
        if deploy_dir:
            deployed = str(copy_dir(opened[best].model_dir, deploy_dir, kind="inference"))
    summary: dict[str, Any] = {
        name: {
            "total_s": r.total_s,
            "throughput": r.throughput,
            "latency_ms": r.latency_ms.to_dict(),
            "accuracy": r.accuracy,
            "int8_check": r.int8_check.get("summary", ""),
            "engine_version": r.engine_version,
        }
        for name, r in results.items()
    }
    summary.update({name: {"skipped": why} for name, why in skipped.items()})
    # The peers' converted models lived in a temporary dir: name the row's own model, and the
    # deployable copy of what actually ran.
    out = results[best].replace(
        model_dir=str(model_dir), engines=summary, engine_choice=reason, deploy_dir=deployed
    )
    if tested is not None:
        out = out.replace(test_accuracy=tested[0], test_examples=tested[1])
    return out


def benchmark_row(
    model_dir: str | Path,
    task_dir: str | Path,
    cfg: InferConfig,
    reference_dir: str | Path | None = None,
    deploy_dir: str | Path | None = None,
    *,
    split: str = "dev",
    work_dir: str | Path | None = None,
    test_split: str | None = None,
) -> BenchmarkResult:
    """One benchmark row on ``cfg.engine`` (the pipeline's benchmark step).

    ``paddle``: :func:`ppminilm.inference.benchmark.run_benchmark` on ``model_dir`` as is
    (CPU or GPU). A peer engine or ``auto`` (CPU): :func:`benchmark_engines` over that engine
    or every installed one.

    Args:
        model_dir: The row's Paddle inference dir.
        task_dir: Task directory.
        cfg: The row's settings.
        reference_dir: FP32 model for the peers' own INT8 (INT8 rows).
        deploy_dir: If given, gets a copy of the inference dir the reported engine ran.
        split: Labelled split to time and score (``dev``; peers always use ``dev``).
        work_dir: Scratch dir (TensorRT shape ranges; converted peer models).
        test_split: If given and labelled, also scored (untimed) on the row's engine
            (``test_accuracy``, ``test_examples``): no selection sees it.

    Returns:
        The benchmark result (``engine`` says which engine it is), plus ``deploy_dir``.
    """
    from ppminilm.inference.benchmark import run_benchmark, score_split

    if cfg.engine == "paddle":
        result = run_benchmark(task_dir, model_dir, cfg, split=split, work_dir=work_dir)
        tested = score_split(task_dir, model_dir, cfg, test_split) if test_split else None
        if tested is not None:
            result = result.replace(test_accuracy=tested[0], test_examples=tested[1])
        if deploy_dir:
            result = result.replace(
                deploy_dir=str(copy_dir(model_dir, deploy_dir, kind="inference"))
            )
        return result
    engines = None if cfg.engine == ENGINE_AUTO else [cfg.engine]
    return benchmark_engines(
        model_dir,
        task_dir,
        cfg,
        reference_dir=reference_dir,
        engines=engines,
        deploy_dir=deploy_dir,
        work_dir=work_dir,
        test_split=test_split,
    )
