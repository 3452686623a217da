"""OpenVINO as an engine: it reads our exported Paddle program directly, NNCF quantizes it.

Which file is read (``shared_core().read_model``):

* ``serving.json`` engine ``openvino``: ``inference.xml``/``.bin`` (OpenVINO IR, e.g. the NNCF
  INT8 model of :func:`quantize_openvino` or the FP32 IR of :func:`convert_openvino`);
* engine ``onnxruntime``: ``inference.onnx`` through OpenVINO's ONNX frontend (this is how
  OpenVINO runs our own Paddle PTQ model: PaddleSlim QDQ export -> paddle2onnx);
* engine ``paddle``: ``inference.pdmodel`` through OpenVINO's Paddle frontend, FP32 programs
  only. It cannot convert PaddleSlim's fake-quant ops, neither the old format
  (``fake_quantize_range_abs_max``) nor the QDQ one (``dequantize_linear``: "dims of scale should
  not be greater than 2"), so a Paddle PTQ dir is refused with that explanation.

Compilation: ``INFERENCE_NUM_THREADS`` = ``num_threads``, one stream, latency hint, and the
precision hint: ``f32`` for fp32 (OpenVINO's default on a BF16-capable CPU would be bf16),
``bf16`` for bf16 (refused on CPUs without BF16). For int8 the quantized layers run INT8 and
the rest runs at OpenVINO's default (no hint: bf16 on CPUs with AVX-512 BF16/AMX, else f32),
what a user of OpenVINO gets; ``rest_hint='f32'`` gives the like-for-like row (the rest in
FP32, as Paddle INT8 runs it).

INT8 evidence: the compiled model's runtime graph, where every executed node records its
``layerType`` and ``runtimePrecision``; compute nodes (FullyConnected, MatMul, Convolution and
the fused attention ``Subgraph``) running ``i8``/``u8`` are counted.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Mapping
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
from ppminilm.io import staged_dir
from ppminilm.modeling.export import ENGINE_FILES, read_serving_config
from ppminilm.modeling.saved import ModelFormatError

logger = logging.getLogger(__name__)

#: What to pip install for this engine (pinned in requirements/constraints.txt).
PIP_HINT = "pip install openvino nncf (the project's `peers` extra)"
#: Precision hint per precision (None: OpenVINO's default, see the module docstring).
PRECISION_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "int8": None}
#: Runtime-graph layer types that do the GEMM work (``Subgraph``: fused attention/MLP blocks).
COMPUTE_LAYERS = ("FullyConnected", "MatMul", "Convolution", "Subgraph", "Gemm")
INT8_PRECISIONS = ("i8", "u8")
#: Calibration examples per NNCF sample (one example each: subset_size counts examples).
NNCF_SAMPLE_BATCH = 1


def import_openvino() -> Any:
    """``import openvino``, or :class:`EngineUnavailableError` naming the package."""
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailableError(
            f"engine 'openvino' is not installed ({exc}); {PIP_HINT}"
        ) from exc
    return openvino


@functools.cache
def shared_core() -> Any:
    """The process's one ``ov.Core``: created on first use, kept until the process exits.

    Trap (openvino 2026.4.1, seen in ``make test``): each ``ov.Core`` loads its own CPU plugin,
    and the plugin gives the loading thread an alternate signal stack (``sigaltstack``),
    remembering the thread's previous one, which it puts back when it is unloaded. Cores released
    out of order (A, then B, then A released, then B) leave the thread on A's unmapped stack, and
    the next signal whose handler runs on the alternate stack (every Python handler, since
    CPython installs them with ``SA_ONSTACK``: the kubelet's SIGTERM, Ctrl-C) kills the process
    with SIGSEGV instead of running the handler. So every engine, conversion and NNCF run of ours
    goes through this one Core; the transient Cores NNCF makes inside it are released before it
    (last in, first out), which leaves the stacks in order.
    ``tests/unit/test_engines.py::test_openvino_cores_released_out_of_order_break_signals``
    checks the trap is still there and that our engines survive it.
    """
    return import_openvino().Core()


def model_file(model_dir: str | Path) -> Path:
    """The file OpenVINO reads for an inference dir (see the module docstring).

    Raises:
        ModelFormatError: For a Paddle PTQ program (fake-quant ops OpenVINO cannot convert).
    """
    from ppminilm.inference.predictor import program_is_quantized

    d = Path(model_dir)
    serving = read_serving_config(d)
    if serving.engine == "paddle" and program_is_quantized(d):
        raise ModelFormatError(
            f"{d}: a PaddleSlim PTQ program; OpenVINO's Paddle frontend cannot convert its "
            "fake-quant ops. Quantize the FP32 model with quantize_openvino (NNCF) instead, or "
            "export a QDQ PTQ model (onnx_format=True) to ONNX and open that"
        )
    return d / ENGINE_FILES[serving.engine][0]


def compile_properties(cfg: InferConfig, rest_hint: str | None = None) -> dict[str, Any]:
    """``compile_model`` properties for a config (threads, one stream, precision hint)."""
    props: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": cfg.num_threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    hint = rest_hint or PRECISION_HINTS[cfg.precision]
    if hint:
        props["INFERENCE_PRECISION_HINT"] = hint
    return props


def runtime_precisions(compiled: Any) -> Counter[tuple[str, str]]:
    """``(layerType, runtimePrecision)`` counts of a compiled model's executed graph."""
    counts: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        counts[(layer, prec)] += 1
    return counts


def int8_evidence(counts: Mapping[tuple[str, str], int], precision: str) -> dict[str, Any]:
    """INT8 check fields from :func:`runtime_precisions` counts."""
    int8: dict[str, int] = {}
    other: dict[str, int] = {}
    for (layer, prec), n in sorted(counts.items()):
        if layer not in COMPUTE_LAYERS:
            continue
        if prec in INT8_PRECISIONS:
            int8[layer] = int8.get(layer, 0) + n
        else:
            other[f"{layer} {prec}"] = other.get(f"{layer} {prec}", 0) + n
    runs_int8 = bool(int8)
    if precision != "int8":
        summary = f"- ({precision})"
    elif runs_int8:
        summary = (
            "yes: "
            + ", ".join(f"{layer} x{n}" for layer, n in int8.items())
            + " INT8"
            + (
                "; left: " + ", ".join(f"{k} x{n}" for k, n in other.items())
                if other
                else "; no compute layer left FP"
            )
        )
    else:
        summary = "NO: no compute layer runs i8/u8 (" + ", ".join(other) + ")"
    return {
        "checked": True,
        "runs_int8": runs_int8,
        "int8_layers": int8,
        "other_compute_layers": other,
        "summary": summary,
    }


class OpenVinoEngine(Engine):
    """OpenVINO CPU over an inference dir (IR, ONNX or an FP32 Paddle program)."""

    name = "openvino"

    def __init__(
        self, model_dir: str | Path, cfg: InferConfig, *, rest_hint: str | None = None
    ) -> None:
        """Read and compile the model.

        Args:
            model_dir: Inference dir.
            cfg: ``precision`` (fp32/bf16/int8), ``num_threads``.
            rest_hint: Override the precision hint (e.g. ``bf16`` for the non-INT8 layers).

        Raises:
            EngineUnavailableError: openvino missing, or bf16 asked on a CPU without BF16.
            ValueError: ``int8`` for a model with no quantized layer, or fp16.
        """
        super().__init__(model_dir, cfg)
        ov = import_openvino()
        if cfg.precision not in PRECISION_HINTS:
            raise ValueError(
                f"engine 'openvino' runs precision fp32, bf16 or int8 on cpu, not {cfg.precision!r}"
            )
        self._ov = ov
        core = shared_core()
        hint = rest_hint or PRECISION_HINTS[cfg.precision]
        if hint == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise EngineUnavailableError(
                "OpenVINO bf16: this CPU has no BF16 support (OPTIMIZATION_CAPABILITIES lacks "
                "BF16); use fp32 or int8"
            )
        self.source = model_file(self.model_dir)
        model = core.read_model(str(self.source))
        quantized = any(
            op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops()
        )
        if cfg.precision == "int8" and not quantized:
            raise ValueError(
                f"{self.model_dir}: precision='int8' but the model has no quantized layer "
                "(no FakeQuantize); quantize it first (quantize_openvino)"
            )
        self.properties = compile_properties(cfg, rest_hint)
        self.compiled = core.compile_model(model, "CPU", self.properties)
        # What the plugin actually chose (with no hint: its default for this CPU).
        hint_type = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision_hint = str(getattr(hint_type, "to_string", lambda: hint_type)())
        self.request = self.compiled.create_infer_request()
        self._inputs = [p.get_any_name() for p in self.compiled.inputs]
        missing = sorted(set(self._inputs) - set(self.serving.input_names))
        if missing:
            raise ModelFormatError(
                f"{self.source}: inputs {self._inputs} but serving.json 'input_names' lists "
                f"{self.serving.input_names}"
            )
        self._check = int8_evidence(runtime_precisions(self.compiled), cfg.precision)

    @property
    def version(self) -> str:
        return str(self._ov.get_version())

    def run(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = check_batch(arrays, self.serving, self.model_dir)
        result = self.request.infer({name: feed[name] for name in self._inputs})
        return np.asarray(result[self.compiled.outputs[0]])

    def int8_check(self, batch: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        return dict(self._check)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            source=str(self.source),
            properties=dict(self.properties),
            precision_hint=self.precision_hint,
        )
        return out


# --------------------------------------------------------------------------- conversion


def _calibration_items(calib: Mapping[str, np.ndarray], examples: int) -> list[dict[str, Any]]:
    n = min(examples, len(calib["input_ids"]))
    if n <= 0:
        raise ValueError("NNCF calibration needs at least one calibration example")
    return [
        {
            k: np.ascontiguousarray(calib[k][i : i + NNCF_SAMPLE_BATCH])
            for k in ("input_ids", "token_type_ids")
        }
        for i in range(0, n, NNCF_SAMPLE_BATCH)
    ]


def quantize_openvino(
    fp32_dir: str | Path,
    calib: Mapping[str, np.ndarray],
    out_dir: str | Path,
    *,
    calib_examples: int,
) -> dict[str, Any]:
    """NNCF post-training INT8 quantization of an FP32 inference dir into OpenVINO IR.

    Calibrates on the first ``calib_examples`` rows of ``calib`` (the train sample the Paddle
    PTQ calibrated on), with NNCF's transformer scheme (``ModelType.TRANSFORMER``: smooth quant,
    attention matmuls quantized, layer norms and softmax kept float).

    Args:
        fp32_dir: FP32 inference dir (Paddle program or OpenVINO IR).
        calib: Encoded calibration inputs (``input_ids``, ``token_type_ids``).
        out_dir: Output dir (``inference.xml``/``.bin``, ``serving.json`` with engine
            ``openvino`` and precision ``int8``, tokenizer files, provenance), all or nothing.
        calib_examples: Calibration examples to use.

    Returns:
        ``model_dir``, ``calib_examples``, ``seconds``, ``nncf`` version.
    """
    ov = import_openvino()
    try:
        import nncf
    except ImportError as exc:
        raise EngineUnavailableError(f"NNCF is not installed ({exc}); {PIP_HINT}") from exc
    t0 = time.perf_counter()
    src = Path(fp32_dir)
    serving = read_serving_config(src)
    if serving.precision != "fp32":
        raise ModelFormatError(
            f"{src}/serving.json: precision {serving.precision!r}; NNCF quantizes an fp32 model"
        )
    items = _calibration_items(calib, calib_examples)
    model = shared_core().read_model(str(model_file(src)))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
    )
    with staged_dir(out_dir, replace=True, kind="openvino-int8") as tmp:
        xml, _ = ENGINE_FILES["openvino"]
        ov.save_model(quantized, str(tmp / xml), compress_to_fp16=False)
        finish_engine_dir(
            tmp,
            src,
            serving,
            engine="openvino",
            precision="int8",
            provenance={
                "stage": "quantize-openvino",
                "method": "NNCF post-training quantization (ModelType.TRANSFORMER)",
                "calib_examples": len(items) * NNCF_SAMPLE_BATCH,
            },
        )
    seconds = round(time.perf_counter() - t0, 2)
    logger.info(
        "NNCF INT8 of %s (%d calib examples): %.1f s -> %s", src, len(items), seconds, out_dir
    )
    return {
        "model_dir": str(out_dir),
        "calib_examples": len(items) * NNCF_SAMPLE_BATCH,
        "seconds": seconds,
        "nncf": nncf.__version__,
    }


def convert_openvino(fp32_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert an FP32 Paddle inference dir to OpenVINO IR (``serving.json`` engine openvino)."""
    ov = import_openvino()
    src = Path(fp32_dir)
    serving = read_serving_config(src)
    model = shared_core().read_model(str(model_file(src)))
    with staged_dir(out_dir, replace=True, kind="openvino") as tmp:
        ov.save_model(model, str(tmp / ENGINE_FILES["openvino"][0]), compress_to_fp16=False)
        finish_engine_dir(
            tmp,
            src,
            serving,
            engine="openvino",
            precision=serving.precision,
            provenance={"stage": "convert-openvino"},
        )
    return Path(out_dir)
