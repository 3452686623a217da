"""onnxruntime as an engine: paddle2onnx export, dynamic and static (QDQ) INT8, CPU sessions.

An onnxruntime inference dir holds ``inference.onnx`` and a ``serving.json`` with engine
``onnxruntime`` (:func:`export_onnx` writes one from a Paddle inference dir, FP32 or a QDQ PTQ
model). INT8:

* :func:`quantize_ort_dynamic`: ``quantize_dynamic`` (INT8 weights, activations quantized per
  batch at run time).
* :func:`quantize_ort_static`: ``quantize_static`` in QDQ format, calibrated (MinMax) on the
  train sample the Paddle PTQ calibrated on: U8 activations, per-channel S8 weights, every
  MatMul (FC and attention).

paddle2onnx 1.3.1 writes weights as ``Constant`` nodes, and onnxruntime's quantizers only
quantize a ``MatMul`` whose weight is an initializer: on the raw export they silently quantize
nothing (checked: 0 ``MatMulInteger``). ORT's own pre-processing (``quant_pre_process``, which
folds the constants into initializers) runs first, as ORT's quantization docs advise.

INT8 evidence: the quantized graph's node counts, and the INT8 GEMM kernels a profiled run of
one batch really executed (ORT fuses QDQ pairs into ``QLinearMatMul``/``MatMulIntegerToFloat``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.config import InferConfig
from ppminilm.inference.engines.base import (
    Engine,
    EngineUnavailableError,
    check_batch,
    finish_engine_dir,
)
from ppminilm.io import atomic_write_bytes, staged_dir
from ppminilm.modeling.export import ENGINE_FILES, MODEL_PREFIX, read_serving_config
from ppminilm.modeling.saved import ModelFormatError

logger = logging.getLogger(__name__)

PIP_HINT = "pip install onnxruntime paddle2onnx ml_dtypes (the project's dev extra)"
#: ONNX opset for the export (paddle2onnx raises it when an op needs more).
ONNX_OPSET = 13
#: Graph ops that carry INT8 arithmetic or its (de)quantization.
ORT_INT8_OPS = (
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QLinearMatMul",
    "ConvInteger",
    "QuantizeLinear",
    "DequantizeLinear",
)
#: Kernels that run INT8 GEMMs once ORT's optimizer has fused the graph (contrib ops included).
ORT_INT8_KERNELS = (
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "QGemm",
    "QAttention",
    "ConvInteger",
    "QLinearConv",
)
#: Batches run under the profiler (the first includes allocation; times are averaged).
PROFILED_RUNS = 2


def onnx_file(model_dir: str | Path) -> Path:
    """``inference.onnx`` of an onnxruntime inference dir.

    Raises:
        ModelFormatError: If the dir is for another engine.
    """
    serving = read_serving_config(model_dir)
    if serving.engine != "onnxruntime":
        raise ModelFormatError(
            f"{model_dir}/serving.json: engine {serving.engine!r}; onnxruntime needs an ONNX "
            "export (ppminilm.inference.engines.onnxruntime.export_onnx)"
        )
    return Path(model_dir) / ENGINE_FILES["onnxruntime"][0]


def export_onnx(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Export a Paddle inference dir (FP32, or a QDQ PTQ model) to an onnxruntime dir.

    Returns:
        The output dir (``inference.onnx``, ``serving.json`` engine onnxruntime, tokenizer).
    """
    try:
        # paddle2onnx imports paddle: the project's import order (zlib first) comes first.
        from ppminilm.compat.paddle import paddle  # noqa: F401  # isort: skip
        import paddle2onnx  # isort: skip
    except ImportError as exc:
        raise EngineUnavailableError(f"paddle2onnx is not installed ({exc}); {PIP_HINT}") from exc
    src = Path(model_dir)
    serving = read_serving_config(src)
    if serving.engine != "paddle":
        raise ModelFormatError(f"{src}/serving.json: engine {serving.engine!r}; expected paddle")
    data = paddle2onnx.export(
        str(src / f"{MODEL_PREFIX}.pdmodel"),
        str(src / f"{MODEL_PREFIX}.pdiparams"),
        save_file=None,
        opset_version=ONNX_OPSET,
        verbose=False,
        enable_onnx_checker=True,
    )
    with staged_dir(out_dir, replace=True, kind="onnx") as tmp:
        atomic_write_bytes(tmp / ENGINE_FILES["onnxruntime"][0], data)
        finish_engine_dir(
            tmp,
            src,
            serving,
            engine="onnxruntime",
            precision=serving.precision,
            provenance={"stage": "export-onnx", "paddle2onnx": paddle2onnx.__version__},
        )
    logger.info("paddle2onnx %s: %s -> %s", paddle2onnx.__version__, src, out_dir)
    return Path(out_dir)


def graph_op_counts(onnx_path: str | Path) -> dict[str, int]:
    """Node count per op type of an ONNX graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
        from onnxruntime.quantization import shape_inference  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(
            f"onnxruntime.quantization cannot be imported ({exc}); it needs ml_dtypes, which "
            f"onnxruntime does not declare: {PIP_HINT}"
        ) from exc
    return quantization


def _quantized_dir(
    fp32_dir: Path, out_dir: str | Path, method: str, quantize: Any, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """Pre-process, quantize (``quantize(pre_path, out_path)``), and write the INT8 dir."""
    q = _quantization()
    serving = read_serving_config(fp32_dir)
    src = onnx_file(fp32_dir)
    t0 = time.perf_counter()
    with staged_dir(out_dir, replace=True, kind="onnx-int8") as tmp:
        pre = tmp / "preprocessed.onnx"
        q.shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        target = tmp / ENGINE_FILES["onnxruntime"][0]
        quantize(str(pre), str(target))
        pre.unlink()
        counts = graph_op_counts(target)
        int8_nodes = {op: counts[op] for op in ORT_INT8_OPS if op in counts}
        if not int8_nodes:
            raise RuntimeError(f"{src}: {method} left no INT8 op in the graph ({counts})")
        finish_engine_dir(
            tmp,
            fp32_dir,
            serving,
            engine="onnxruntime",
            precision="int8",
            provenance={"stage": "quantize-onnxruntime", "method": method, **extra},
        )
    return {
        "model_dir": str(out_dir),
        "method": method,
        "int8_nodes": int8_nodes,
        "matmul_fp32": counts.get("MatMul", 0),
        "seconds": round(time.perf_counter() - t0, 2),
        **extra,
    }


def quantize_ort_dynamic(fp32_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Dynamic INT8 (``quantize_dynamic``, S8 weights) of an FP32 onnxruntime dir.

    Returns:
        ``model_dir``, ``method``, ``int8_nodes`` (graph counts), ``matmul_fp32`` (MatMul
        nodes left FP32), ``seconds``.
    """
    q = _quantization()

    def run(pre: str, out: str) -> None:
        q.quantize_dynamic(pre, out, weight_type=q.QuantType.QInt8)

    return _quantized_dir(Path(fp32_dir), out_dir, "dynamic", run, {})


class _CalibReader:
    """onnxruntime ``CalibrationDataReader`` over encoded calibration rows (one per sample)."""

    def __init__(self, calib: Mapping[str, np.ndarray], names: list[str], examples: int) -> None:
        n = min(examples, len(calib["input_ids"]))
        if n <= 0:
            raise ValueError("static quantization needs at least one calibration example")
        self.examples = n
        self._rows: Iterator[dict[str, np.ndarray]] = iter(
            [
                {k: np.ascontiguousarray(calib[k][i : i + 1], dtype=np.int64) for k in names}
                for i in range(n)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)

    def rewind(self) -> None:  # not needed by MinMax; present for the reader protocol
        pass


def quantize_ort_static(
    fp32_dir: str | Path,
    calib: Mapping[str, np.ndarray],
    out_dir: str | Path,
    *,
    calib_examples: int,
) -> dict[str, Any]:
    """Static QDQ INT8 of an FP32 onnxruntime dir, calibrated (MinMax) on ``calib``.

    Args:
        fp32_dir: FP32 onnxruntime dir.
        calib: Encoded calibration inputs (a train sample, inputs only).
        out_dir: INT8 onnxruntime dir.
        calib_examples: Calibration rows used (the same count the Paddle PTQ used).

    Returns:
        As :func:`quantize_ort_dynamic`, plus ``calib_examples``.
    """
    q = _quantization()
    names = list(read_serving_config(fp32_dir).input_names)
    reader = _CalibReader(calib, names, calib_examples)

    def run(pre: str, out: str) -> None:
        q.quantize_static(
            pre,
            out,
            reader,
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            calibrate_method=q.CalibrationMethod.MinMax,
        )

    return _quantized_dir(
        Path(fp32_dir), out_dir, "static QDQ", run, {"calib_examples": reader.examples}
    )


def op_times_from_trace(trace_path: str | Path, runs: int = 1) -> dict[str, dict[str, float]]:
    """Per-op-type kernel count and milliseconds per run from an ORT profiling trace."""
    events = json.loads(Path(trace_path).read_text(encoding="utf-8"))
    out: dict[str, dict[str, float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        rec = out.setdefault(op, {"count": 0, "ms": 0.0})
        rec["count"] += 1
        rec["ms"] += event.get("dur", 0) / 1e3
    per_run = {
        op: {"count": rec["count"] / runs, "ms": round(rec["ms"] / runs, 3)}
        for op, rec in out.items()
    }
    return dict(sorted(per_run.items(), key=lambda kv: -kv[1]["ms"]))


def _session(onnx_path: Path, num_threads: int, profile_prefix: str = "") -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EngineUnavailableError(
            f"engine 'onnxruntime' is not installed ({exc}); {PIP_HINT}"
        ) from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OrtEngine(Engine):
    """onnxruntime CPU session over an onnxruntime inference dir."""

    name = "onnxruntime"

    def __init__(self, model_dir: str | Path, cfg: InferConfig) -> None:
        super().__init__(model_dir, cfg)
        if cfg.precision not in ("fp32", "int8"):
            raise ValueError(
                f"engine 'onnxruntime' runs fp32 or int8 on cpu, not {cfg.precision!r}"
            )
        if cfg.precision != self.serving.precision:
            raise ValueError(
                f"{model_dir}: precision={cfg.precision!r} but the ONNX model is "
                f"{self.serving.precision} (onnxruntime runs the graph as it is)"
            )
        self.onnx_path = onnx_file(self.model_dir)
        self.session = _session(self.onnx_path, cfg.num_threads)
        self._inputs = [i.name for i in self.session.get_inputs()]
        import onnxruntime as ort

        self._version = ort.__version__
        self._check: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        return str(self._version)

    def run(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = check_batch(arrays, self.serving, self.model_dir)
        return np.asarray(self.session.run(None, {n: feed[n] for n in self._inputs})[0])

    def profile(self, batch: Mapping[str, np.ndarray], work_dir: str | Path) -> dict[str, Any]:
        """Profile :data:`PROFILED_RUNS` runs of one batch.

        Returns:
            ``op_times`` (per batch), ``int8_kernels_run`` (executed INT8 GEMM kernels per
            batch), ``trace``.
        """
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        session = _session(self.onnx_path, self.cfg.num_threads, str(work / "ort"))
        feed = check_batch(batch, self.serving, self.model_dir)
        for _ in range(PROFILED_RUNS):
            session.run(None, {n: feed[n] for n in self._inputs})
        trace = Path(session.end_profiling())
        times = op_times_from_trace(trace, runs=PROFILED_RUNS)
        executed = {op: int(times[op]["count"]) for op in ORT_INT8_KERNELS if op in times}
        return {"op_times": times, "int8_kernels_run": executed, "trace": str(trace)}

    def int8_check(self, batch: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        if self._check is not None:
            return dict(self._check)
        counts = graph_op_counts(self.onnx_path)
        graph = {op: counts[op] for op in ORT_INT8_OPS if op in counts}
        check: dict[str, Any] = {"checked": False, "graph_int8_nodes": graph}
        if self.cfg.precision != "int8":
            check.update(checked=True, runs_int8=False, summary="- (fp32)")
        elif batch is None:
            check.update(runs_int8=bool(graph), summary="graph only: " + _fmt(graph))
        else:
            with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
                prof = self.profile(batch, tmp)
            ran = prof["int8_kernels_run"]
            check.update(
                checked=True,
                runs_int8=bool(ran),
                int8_kernels_run=ran,
                op_times=prof["op_times"],
                summary=(
                    f"{'yes' if ran else 'NO'}: INT8 kernels run per batch (ORT profile): "
                    f"{_fmt(ran) or 'none'}; graph {_fmt(graph)}; "
                    f"{counts.get('MatMul', 0)} MatMul left FP32"
                ),
            )
        self._check = check
        return dict(check)


def _fmt(counts: Mapping[str, int]) -> str:
    return " + ".join(f"{op} x{n}" for op, n in counts.items())
