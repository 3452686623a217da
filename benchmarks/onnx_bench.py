"""The alternative a user would pick: paddle2onnx export + onnxruntime FP32 and dynamic INT8.

paddle2onnx 1.3.1 writes the weights of a Paddle static model as ``Constant`` nodes, and
``onnxruntime.quantization.quantize_dynamic`` only quantizes a ``MatMul`` whose weight is an
initializer: on the raw export it silently quantizes nothing (checked: 0 ``MatMulInteger``).
ORT's own pre-processing (``quant_pre_process``: ORT graph optimization, which folds the
constants into initializers) comes first, as ORT's quantization docs advise.

INT8 evidence for ORT: the quantized graph's ``MatMulInteger``/``DynamicQuantizeLinear`` node
counts, and the ``MatMulInteger`` kernels that one profiled run really executed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle  # noqa: F401

# paddle2onnx imports paddle: the project's import order (zlib first) must come first.
from ppminilm.modeling.export import MODEL_PREFIX

logger = logging.getLogger(__name__)

#: ONNX opset for the export (paddle2onnx upgrades it when an op needs more).
ONNX_OPSET = 13
#: Graph ops that carry the INT8 arithmetic of a dynamically quantized model.
ORT_INT8_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "ConvInteger")
#: Kernels that run INT8 GEMMs once ORT's optimizer has fused the graph (contrib ops included).
ORT_INT8_KERNELS = (
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "ConvInteger",
)


#: Batches run under the ORT profiler (the first includes allocation; times are averaged).
PROFILED_RUNS = 2


class OnnxUnavailableError(RuntimeError):
    """paddle2onnx/onnxruntime (or onnxruntime.quantization's deps) are not installed."""


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def export_onnx(model_dir: str | Path, onnx_path: str | Path) -> Path:
    """Export a Paddle static inference dir to ONNX with paddle2onnx.

    Args:
        model_dir: Inference dir (``inference.pdmodel``/``.pdiparams``).
        onnx_path: Output ``.onnx`` file (written atomically).

    Returns:
        The ONNX file.
    """
    try:
        import paddle2onnx
    except ImportError as exc:
        raise OnnxUnavailableError(f"paddle2onnx is not installed ({exc})") from exc
    d = Path(model_dir)
    data = paddle2onnx.export(
        str(d / f"{MODEL_PREFIX}.pdmodel"),
        str(d / f"{MODEL_PREFIX}.pdiparams"),
        save_file=None,
        opset_version=ONNX_OPSET,
        verbose=False,
        enable_onnx_checker=True,
    )
    out = Path(onnx_path)
    _write_atomic(out, data)
    logger.info("paddle2onnx %s: %s -> %s", paddle2onnx.__version__, d, out)
    return out


def graph_op_counts(onnx_path: str | Path) -> dict[str, int]:
    """Node count per op type of an ONNX graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def quantize_onnx_dynamic(fp32_path: str | Path, int8_path: str | Path) -> dict[str, Any]:
    """ORT pre-processing + ``quantize_dynamic`` (INT8 weights, dynamic u8 activations).

    Returns:
        ``int8_path``, ``matmul_fp32`` (MatMul nodes left in FP32) and ``int8_nodes`` (counts of
        :data:`ORT_INT8_OPS` in the quantized graph).

    Raises:
        OnnxUnavailableError: If ``onnxruntime.quantization`` cannot be imported (it needs
            ``ml_dtypes``, which onnxruntime does not declare).
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise OnnxUnavailableError(
            f"onnxruntime.quantization cannot be imported ({exc}); `pip install ml_dtypes`"
        ) from exc
    out = Path(int8_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ort-quant-", dir=out.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        staged = Path(tmp) / out.name
        quantize_dynamic(str(pre), str(staged), weight_type=QuantType.QInt8)
        os.replace(staged, out)
    counts = graph_op_counts(out)
    int8_nodes = {op: counts[op] for op in ORT_INT8_OPS if op in counts}
    if not int8_nodes:
        raise RuntimeError(f"{out}: quantize_dynamic left no INT8 op in the graph ({counts})")
    return {"int8_path": str(out), "matmul_fp32": counts.get("MatMul", 0), "int8_nodes": int8_nodes}


class OrtRunner:
    """An onnxruntime CPU session fed like :class:`ppminilm.inference.benchmark.Predictor`."""

    def __init__(self, onnx_path: str | Path, num_threads: int, profile_prefix: str = "") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxUnavailableError(f"onnxruntime is not installed ({exc})") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.version = ort.__version__
        self._inputs = [i.name for i in self.session.get_inputs()]

    def run(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits for one batch (inputs matched by name)."""
        feed = {name: np.ascontiguousarray(batch[name], dtype=np.int64) for name in self._inputs}
        return np.asarray(self.session.run(None, feed)[0])

    def end_profiling(self) -> Path:
        """Stop profiling; the JSON trace file."""
        return Path(self.session.end_profiling())


def op_times_from_trace(trace_path: str | Path, runs: int = 1) -> dict[str, dict[str, float]]:
    """Per-op-type kernel count and milliseconds per run from an ORT profiling trace.

    Args:
        trace_path: The JSON trace of a profiled session.
        runs: ``session.run`` calls the trace holds (counts and times are divided by it).
    """
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


def ort_profile(
    onnx_path: str | Path, batch: Mapping[str, np.ndarray], num_threads: int, work_dir: str | Path
) -> dict[str, Any]:
    """Profile two runs of one batch: which kernels really ran, and their time.

    Returns:
        ``op_times`` (see :func:`op_times_from_trace`; per batch, mean of the two runs),
        ``int8_kernels_run`` (executed :data:`ORT_INT8_KERNELS` per batch), ``trace``.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    runner = OrtRunner(onnx_path, num_threads, profile_prefix=str(work / Path(onnx_path).stem))
    for _ in range(PROFILED_RUNS):
        runner.run(batch)
    trace = runner.end_profiling()
    times = op_times_from_trace(trace, runs=PROFILED_RUNS)
    executed = {op: int(times[op]["count"]) for op in ORT_INT8_KERNELS if op in times}
    return {"op_times": times, "int8_kernels_run": executed, "trace": str(trace)}
