"""Prediction and the end-to-end benchmark, on any engine (:mod:`ppminilm.inference.engines`).

:class:`Predictor` wraps ``paddle.inference`` for one inference dir (``serving.json`` validated
first) and lives in :mod:`ppminilm.inference.predictor` with the config building.
:func:`detect_int8_kernels` proves whether an INT8 model really runs INT8 kernels,
:func:`run_benchmark` times the whole split end to end on ``cfg.engine`` (Paddle by default;
OpenVINO and onnxruntime on CPU; the runner's ``benchmark`` step writes its result).
``engine='auto'`` (time several engines, keep the fastest) is
:func:`ppminilm.inference.engines.select.benchmark_engines`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle
from ppminilm.config import InferConfig
from ppminilm.contracts import SERVING_FILE, BenchmarkResult
from ppminilm.inference.cpuinfo import cpu_model, isa_flags
from ppminilm.inference.engines.base import Engine
from ppminilm.inference.predictor import (
    OPTIMIZED_PROGRAM,
    DeviceUnavailableError,
    Predictor,
    build_config,
    check_max_seq_len,
    config_plan,
    inspect_optimized_program,
    program_is_quantized,
    require_device,
)
from ppminilm.modeling.export import ServingConfig, read_serving_config

__all__ = [
    "DeviceUnavailableError",
    "Predictor",
    "build_config",
    "config_plan",
    "detect_int8_kernels",
    "predict",
    "run_benchmark",
]

logger = logging.getLogger(__name__)


def detect_int8_kernels(model_dir: str | Path, cfg: InferConfig) -> dict[str, Any]:
    """Evidence that a model really runs INT8 kernels under ``cfg`` (CPU/oneDNN).

    Builds a predictor with the same settings that saves its optimized program, then reads the
    op types and ``mkldnn_data_type`` attributes (see the module docstring).

    Args:
        model_dir: An exported inference dir.
        cfg: The settings the benchmark uses (``precision='int8'`` enables oneDNN INT8).

    Returns:
        See :func:`inspect_optimized_program`; on GPU ``{"checked": False, "reason": ...}``.
    """
    if cfg.engine not in ("paddle", "auto"):
        from ppminilm.inference.engines import open_engine

        return open_engine(model_dir, cfg).int8_check()
    if cfg.device != "cpu":
        return {
            "checked": False,
            "quantized_model": program_is_quantized(model_dir),
            "reason": "TensorRT engines are opaque; INT8 use is set by precision_mode",
        }
    with tempfile.TemporaryDirectory(prefix="ppminilm-optim-") as tmp:
        predictor = Predictor(model_dir, cfg, optim_dir=tmp)
        return inspect_optimized_program(Path(tmp) / OPTIMIZED_PROGRAM, predictor.quantized)


# --------------------------------------------------------------------------- prediction


def encode_for_model(
    model_dir: str | Path, items: Sequence[Any], max_seq_len: int, task: str | None = None
) -> dict[str, np.ndarray]:
    """Tokenize texts, text pairs or task examples with the model's own vocab.

    Args:
        model_dir: Inference dir holding ``vocab.txt``.
        items: Strings, ``(text_a, text_b)`` pairs, or JSON examples (dicts) of ``task``.
        max_seq_len: Padded/truncated length.
        task: Task of dict examples (default: ``serving.json``'s task).

    Returns:
        ``{"input_ids", "token_type_ids"}`` int64 ``[n, max_seq_len]``.
    """
    from ppminilm.data.tokenizer import encode_examples, encode_pairs, load_tokenizer

    if not items:
        raise ValueError("nothing to predict: no texts or examples given")
    tokenizer = load_tokenizer(model_dir)
    if all(isinstance(x, Mapping) for x in items):
        task = task or read_serving_config(model_dir).task
        if not task:
            raise ValueError(f"{model_dir}/serving.json has no 'task'; pass task= for examples")
        return encode_examples(tokenizer, list(items), task, max_seq_len)
    pairs: list[tuple[str, str | None]] = []
    for i, x in enumerate(items):
        if isinstance(x, str):
            pairs.append((x, None))
        elif isinstance(x, Sequence) and len(x) == 2 and all(isinstance(t, str) for t in x):
            pairs.append((x[0], x[1]))
        else:
            raise ValueError(
                f"item {i}: expected a string, a (text_a, text_b) pair or an "
                f"example dict, got {type(x).__name__}"
            )
    return encode_pairs(tokenizer, pairs, max_seq_len)


def model_fields(model_dir: str | Path, engine: str | None = None) -> dict[str, Any]:
    """The :class:`~ppminilm.config.InferConfig` fields a model dir implies by itself.

    Its ``max_seq_len``; its engine (``serving.json``) unless ``engine`` is given; the
    precision it was made in for a converted model, else INT8 for a Paddle PTQ program and
    FP32 otherwise. ``ppminilm infer predict`` and ``ppminilm serve`` both start from these,
    so they run a model the same way.
    """
    serving = read_serving_config(model_dir)
    if serving.engine != "paddle":
        precision = serving.precision
    else:
        precision = "int8" if program_is_quantized(model_dir) else "fp32"
    return {
        "max_seq_len": serving.max_seq_len,
        "engine": engine or serving.engine,
        "precision": precision,
    }


def predict(
    model_dir: str | Path,
    items: Sequence[Any],
    cfg: InferConfig | None = None,
    task: str | None = None,
    engine: str | None = None,
) -> list[str]:
    """Predicted label strings for texts, text pairs or task examples.

    Args:
        model_dir: An exported inference dir.
        items: See :func:`encode_for_model`.
        cfg: Inference settings (default: CPU, the model's max_seq_len, and INT8 kernels for a
            quantized model).
        task: Task of dict examples (default: ``serving.json``'s).
        engine: ``paddle``, ``openvino`` or ``onnxruntime`` (default: ``cfg.engine``, or the
            engine the model's ``serving.json`` names when ``cfg`` is None).

    Returns:
        One label string per item.
    """
    from ppminilm.inference.engines import open_engine

    serving = read_serving_config(model_dir)
    if cfg is None:
        quantized = serving.precision == "int8" or (
            serving.engine == "paddle" and program_is_quantized(model_dir)
        )
        cfg = InferConfig(
            max_seq_len=serving.max_seq_len,
            precision="int8" if quantized else "fp32",
            use_trt=False,
            engine=engine or serving.engine,
        )
    runner = open_engine(model_dir, cfg, engine)
    arrays = encode_for_model(model_dir, items, cfg.max_seq_len, task)
    labels = runner.labels
    return [labels[i] for i in runner.logits(arrays, cfg.batch_size).argmax(-1)]


# --------------------------------------------------------------------------- benchmark


def encode_labelled_split(
    model_dir: Path, serving: ServingConfig, task_dir: str | Path, split: str, max_seq_len: int
) -> tuple[str, dict[str, np.ndarray], np.ndarray]:
    """Load, check and tokenize one labelled split with the model's vocab and label order."""
    from ppminilm.data import load_task_dir
    from ppminilm.data.tokenizer import encode_examples, load_tokenizer

    data = load_task_dir(task_dir)
    data.check_model(serving.task, serving.labels, f"{model_dir}/{SERVING_FILE}", same_order=False)
    examples = data.split(split)
    if not examples:
        raise ValueError(f"{task_dir}/{split}.json is empty; nothing to benchmark")
    unlabelled = [i for i, e in enumerate(examples, start=1) if "label" not in e]
    if unlabelled:
        raise ValueError(
            f"{task_dir}/{split}.json:{unlabelled[0]}: field 'label' missing; "
            "the benchmark reports accuracy and needs a labelled split"
        )
    label_ids = {label: i for i, label in enumerate(serving.labels)}
    labels = np.asarray([label_ids[e["label"]] for e in examples], dtype=np.int64)
    arrays = encode_examples(load_tokenizer(model_dir), examples, data.spec, max_seq_len)
    return data.task, arrays, labels


def score_split(
    task_dir: str | Path,
    model_dir: str | Path,
    cfg: InferConfig,
    split: str,
    *,
    engine: Engine | None = None,
) -> tuple[float, int] | None:
    """Accuracy of a model on a split (untimed), or None if the split is absent or unlabelled.

    Used for a labelled test split: scored once, after every selection was made on dev, on the
    engine that produced the row's reported figures.

    Args:
        task_dir: A task directory.
        model_dir: The row's inference dir (its ``serving.json`` gives task and labels).
        cfg: The benchmark's settings (precision, threads, sequence length, engine).
        split: The split (``test``).
        engine: An open engine to score with (e.g. the peer ``engine='auto'`` picked); default
            ``model_dir`` opened on ``cfg.engine``.

    Returns:
        ``(accuracy, examples)`` or None.
    """
    from ppminilm.data import load_task_dir
    from ppminilm.training.loop import iterate_batches

    data = load_task_dir(task_dir)
    examples = data.split(split)
    if not examples or not all("label" in e for e in examples):
        return None
    model_dir = Path(model_dir)
    serving = read_serving_config(model_dir)
    _, arrays, labels = encode_labelled_split(model_dir, serving, task_dir, split, cfg.max_seq_len)
    with tempfile.TemporaryDirectory(prefix="ppminilm-score-") as tmp:
        if engine is None:
            batches = list(iterate_batches(arrays, cfg.batch_size))
            engine = open_for_benchmark(model_dir, cfg, batches, Path(tmp))
        preds = engine.logits(arrays, cfg.batch_size).argmax(-1)
    accuracy = float((preds == labels).mean())
    logger.info(
        "%s on %s/%s (%s): acc %.4f (untimed)",
        model_dir.name,
        data.task,
        split,
        engine.name,
        accuracy,
    )
    return accuracy, len(labels)


def collect_shape_ranges(
    model_dir: str | Path,
    cfg: InferConfig,
    shape_file: str | Path,
    batches: Sequence[Mapping[str, np.ndarray]],
) -> Path:
    """First TensorRT pass: run representative batches and record tensor shape ranges.

    Args:
        model_dir: The inference dir.
        cfg: GPU settings.
        shape_file: Where to write the shape-range file.
        batches: Batches spanning the shapes the timed run will feed (largest and smallest).

    Returns:
        The shape-range file.
    """
    predictor = Predictor(model_dir, cfg, shape_file=str(shape_file), collect_shapes=True)
    for batch in batches:
        predictor.run(batch)
    del predictor  # the file is complete once the predictor is destroyed
    logger.info("collected TensorRT shape ranges into %s", shape_file)
    return Path(shape_file)


def _percentile_ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def run_benchmark(
    task_dir: str | Path,
    model_dir: str | Path,
    cfg: InferConfig,
    *,
    split: str = "dev",
    work_dir: str | Path | None = None,
) -> BenchmarkResult:
    """Time a whole split end to end and score it.

    Tokenizes once up front; each of ``cfg.repeats`` passes runs ``cfg.warmup_batches`` warm-up
    batches (not timed) followed by the timed batches. A pass is the split's batches in order;
    when the split has fewer than ``warmup_batches + 1`` batches they are cycled so at least one
    batch is timed. Accuracy and the confusion matrix come from the first pass, each example
    counted once.

    Args:
        task_dir: A task directory (see :mod:`ppminilm.data`).
        model_dir: An exported inference dir (FP32 or quantized).
        cfg: Device, precision, batch size, threads, warm-up and repeats.
        split: Labelled split to run (``dev`` is the reported one).
        work_dir: Where the TensorRT shape-range file goes when ``cfg.shape_range_file`` is
            relative (default: a temporary directory).

    Returns:
        The :class:`~ppminilm.contracts.BenchmarkResult`: sizes, settings, per-batch latency
        (``p50``/``p95``/``mean`` over all passes), ``total_s`` (median timed seconds per
        pass), throughput (examples/s), accuracy, the confusion matrix (rows true, columns
        predicted), the INT8-kernel evidence and the config used.

    Raises:
        ModelFormatError: On a broken inference dir.
        ValueError: On mismatched task/labels, an unlabelled or empty split, a max_seq_len
            above the model's, or an unusable device/precision.
    """
    from ppminilm.training.loop import iterate_batches

    model_dir = Path(model_dir)
    serving = read_serving_config(model_dir)
    check_max_seq_len(serving, cfg.max_seq_len, str(model_dir))
    require_device(cfg)
    task, arrays, labels = encode_labelled_split(
        model_dir, serving, task_dir, split, cfg.max_seq_len
    )
    batches = list(iterate_batches(arrays, cfg.batch_size))
    with tempfile.TemporaryDirectory(prefix="ppminilm-bench-") as tmp:
        runner = open_for_benchmark(model_dir, cfg, batches, Path(work_dir or tmp))
        int8_check = runner.int8_check(batches[0])
        timing = timed_passes({runner.name: runner}, batches, cfg)[runner.name]
    return make_result(
        model_dir, serving, task, split, labels, batches, cfg, runner, timing, int8_check
    )


def open_for_benchmark(
    model_dir: str | Path, cfg: InferConfig, batches: Sequence[Mapping[str, np.ndarray]], work: Path
) -> Engine:
    """Open ``model_dir`` on ``cfg.engine``; for TensorRT, collect the shape ranges first.

    Args:
        model_dir: The inference dir.
        cfg: The settings (``engine`` a concrete engine, not ``auto``).
        batches: The split's batches (TensorRT shape collection runs the first and last).
        work: Where a relative ``cfg.shape_range_file`` goes.
    """
    from ppminilm.inference.engines import open_engine
    from ppminilm.inference.engines.paddle import PaddleEngine

    if cfg.engine != "paddle":
        return open_engine(model_dir, cfg)
    shape_file = None
    if cfg.device == "gpu" and cfg.use_trt:
        path = Path(cfg.shape_range_file)
        if not path.is_absolute():
            path = work / path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            collect_shape_ranges(model_dir, cfg, path, [batches[0], batches[-1]])
        shape_file = str(path)
    return PaddleEngine(model_dir, cfg, shape_file=shape_file)


def make_result(
    model_dir: Path,
    serving: ServingConfig,
    task: str,
    split: str,
    labels: np.ndarray,
    batches: Sequence[Mapping[str, np.ndarray]],
    cfg: InferConfig,
    runner: Engine,
    timing: Mapping[str, Any],
    int8_check: Mapping[str, Any],
) -> BenchmarkResult:
    """The :class:`~ppminilm.contracts.BenchmarkResult` of one engine's timed passes."""
    timing = dict(timing)
    preds = np.concatenate(timing.pop("first_pass_preds"))
    k = len(serving.labels)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (labels, preds), 1)
    result = BenchmarkResult.from_dict(
        {
            "model_dir": str(model_dir),
            "task": task,
            "split": split,
            "examples": len(labels),
            "batches": len(batches),
            "device": cfg.device,
            "cpu": cpu_model(),
            "cpu_isa": isa_flags(),
            "precision": cfg.precision,
            "threads": cfg.num_threads,
            "batch_size": cfg.batch_size,
            "max_seq_len": cfg.max_seq_len,
            "use_mkldnn": cfg.use_mkldnn,
            "use_trt": cfg.use_trt,
            "warmup_batches": cfg.warmup_batches,
            "repeats": cfg.repeats,
            **timing,
            "accuracy": float((preds == labels).mean()),
            "confusion_matrix": {"labels": list(serving.labels), "matrix": matrix.tolist()},
            "int8_check": dict(int8_check),
            "engine": runner.name,
            "engine_version": runner.version,
            "engine_config": runner.describe(),
            "paddle_version": paddle.__version__,
            "config": cfg.to_dict(),
        }
    )
    logger.info(
        "%s (%s) on %s/%s: %.2f s/pass (median of %d), p50 %.2f ms, %.1f ex/s, acc %.4f",
        model_dir.name,
        runner.name,
        task,
        split,
        result.total_s,
        cfg.repeats,
        result.latency_ms.p50,
        result.throughput,
        result.accuracy,
    )
    return result


def timed_passes(
    engines: Mapping[str, Engine], batches: Sequence[Mapping[str, np.ndarray]], cfg: InferConfig
) -> dict[str, dict[str, Any]]:
    """Run ``cfg.repeats`` passes per engine; time everything after each pass's warm-up.

    With several engines the passes are interleaved (pass 1 of every engine, then pass 2...),
    so a change of machine load hits them alike.

    Returns:
        Engine key -> ``timed_batches``, ``timed_examples``, ``latency_ms``
        (``p50``/``p95``/``p99``/``mean``), ``total_s`` (median pass), ``total_s_per_pass``,
        ``throughput`` and ``first_pass_preds`` (per batch).
    """
    import time

    n = len(batches)
    schedule = [i % n for i in range(max(n, cfg.warmup_batches + 1))]
    latencies: dict[str, list[float]] = {k: [] for k in engines}
    pass_seconds: dict[str, list[float]] = {k: [] for k in engines}
    first_preds: dict[str, dict[int, np.ndarray]] = {k: {} for k in engines}
    timed_examples = sum(len(batches[i]["input_ids"]) for i in schedule[cfg.warmup_batches :])
    for repeat in range(cfg.repeats):
        for key, runner in engines.items():
            preds = first_preds[key]
            for idx in schedule[: cfg.warmup_batches]:
                logits = runner.run(batches[idx])
                preds.setdefault(idx, logits.argmax(-1))
            start = time.perf_counter()
            for idx in schedule[cfg.warmup_batches :]:
                t0 = time.perf_counter()
                logits = runner.run(batches[idx])
                latencies[key].append(time.perf_counter() - t0)
                preds.setdefault(idx, logits.argmax(-1))
            pass_seconds[key].append(time.perf_counter() - start)
            logger.info(
                "%s pass %d/%d: %.3f s", key, repeat + 1, cfg.repeats, pass_seconds[key][-1]
            )
    out: dict[str, dict[str, Any]] = {}
    for key in engines:
        total = float(np.median(pass_seconds[key]))
        lat = latencies[key]
        out[key] = {
            "timed_batches": len(lat) // cfg.repeats,
            "timed_examples": timed_examples,
            "latency_ms": {
                "p50": _percentile_ms(lat, 50),
                "p95": _percentile_ms(lat, 95),
                "p99": _percentile_ms(lat, 99),
                "mean": float(np.mean(lat) * 1e3),
            },
            "total_s": total,
            "total_s_per_pass": pass_seconds[key],
            "throughput": timed_examples / total if total > 0 else 0.0,
            "first_pass_preds": [first_preds[key][i] for i in range(n)],
        }
    return out
