"""Every engine x precision the bench runs on one pruned model, and how each model is made.

The same builder serves the speed rows (the seed-shape pruned 6L-768H, random weights) and the
accuracy column (the trained local student, pruned), so each row's accuracy is measured on the
very pipeline of conversions that made its speed model. Every INT8 variant calibrates on the
train sample our Paddle PTQ calibrated on (inputs only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.errors import is_expected

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One engine x precision of the pruned model.

    Attributes:
        key: Row key suffix (``paddle_int8``...).
        engine: ``paddle``, ``openvino`` or ``onnxruntime``.
        precision: ``fp32``, ``bf16`` or ``int8``.
        label: The row's engine column.
        options: Extra engine constructor arguments (OpenVINO ``rest_hint``).
    """

    key: str
    engine: str
    precision: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant("paddle_fp32", "paddle", "fp32", "Paddle FP32 (oneDNN)"),
    Variant("paddle_bf16", "paddle", "bf16", "Paddle BF16 (oneDNN bfloat16)"),
    Variant("paddle_int8", "paddle", "int8", "Paddle INT8 (our PTQ, oneDNN)"),
    Variant("ov_fp32", "openvino", "fp32", "OpenVINO FP32 (reads our Paddle model)"),
    Variant("ov_bf16", "openvino", "bf16", "OpenVINO BF16"),
    Variant("ov_int8", "openvino", "int8", "OpenVINO INT8 (NNCF PTQ; rest at OpenVINO's default)"),
    Variant(
        "ov_int8_f32",
        "openvino",
        "int8",
        "OpenVINO INT8 (NNCF PTQ; rest FP32, like Paddle)",
        {"rest_hint": "f32"},
    ),
    Variant("ov_int8_ours", "openvino", "int8", "OpenVINO INT8 (our Paddle PTQ, QDQ -> ONNX)"),
    Variant("ort_fp32", "onnxruntime", "fp32", "onnxruntime FP32"),
    Variant("ort_int8_dynamic", "onnxruntime", "int8", "onnxruntime INT8 (dynamic)"),
    Variant("ort_int8_static", "onnxruntime", "int8", "onnxruntime INT8 (static QDQ)"),
)
BY_KEY = {v.key: v for v in VARIANTS}
#: INT8 variants that are peers of our Paddle PTQ (the goal compares against the fastest).
PEER_INT8 = tuple(v.key for v in VARIANTS if v.precision == "int8" and v.engine != "paddle")


def _try(what: str, errors: dict[str, str], keys: tuple[str, ...], fn: Any) -> Any:
    """Run one build step; an expected failure marks ``keys`` as not run (with the reason)."""
    try:
        return fn()
    except Exception as exc:
        if not (is_expected(exc) or isinstance(exc, ImportError | RuntimeError)):
            raise
        logger.error("%s failed: %s", what, exc)
        for key in keys:
            errors.setdefault(key, f"{what}: {exc}")
        return None


def build_variants(
    fp32_dir: Path,
    int8_dir: Path,
    qdq_dir: Path | None,
    calib: dict[str, np.ndarray],
    calib_examples: int,
    work: Path,
) -> tuple[dict[str, Path], dict[str, str], dict[str, Any]]:
    """Make the model dir of every :data:`VARIANTS` entry.

    Args:
        fp32_dir: The pruned FP32 Paddle inference dir.
        int8_dir: Our Paddle PTQ model of it (old format, what the pipeline ships).
        qdq_dir: Our Paddle PTQ model in QDQ format (``onnx_format=True``), or None.
        calib: The encoded calibration inputs (our PTQ's train sample).
        calib_examples: Calibration examples our Paddle PTQ used (the peers use as many).
        work: Where converted models go.

    Returns:
        ``(dirs, errors, info)``: variant key -> model dir; variant key -> why it is missing;
        ``info`` (quantization summaries by step).
    """
    from ppminilm.inference.engines.onnxruntime import (
        export_onnx,
        quantize_ort_dynamic,
        quantize_ort_static,
    )
    from ppminilm.inference.engines.openvino import quantize_openvino

    dirs: dict[str, Path] = {
        "paddle_fp32": fp32_dir,
        "paddle_bf16": fp32_dir,
        "paddle_int8": int8_dir,
        "ov_fp32": fp32_dir,
        "ov_bf16": fp32_dir,
    }
    errors: dict[str, str] = {}
    info: dict[str, Any] = {}
    ov = _try(
        "NNCF PTQ",
        errors,
        ("ov_int8", "ov_int8_f32"),
        lambda: quantize_openvino(fp32_dir, calib, work / "ov_int8", calib_examples=calib_examples),
    )
    if ov:
        info["nncf"] = ov
        dirs["ov_int8"] = dirs["ov_int8_f32"] = Path(ov["model_dir"])
    if qdq_dir is None:
        errors["ov_int8_ours"] = "no QDQ PTQ model"
    else:
        ours = _try(
            "paddle2onnx of our QDQ PTQ model",
            errors,
            ("ov_int8_ours",),
            lambda: export_onnx(qdq_dir, work / "qdq_onnx"),
        )
        if ours:
            dirs["ov_int8_ours"] = Path(ours)
    onnx = _try(
        "paddle2onnx",
        errors,
        ("ort_fp32", "ort_int8_dynamic", "ort_int8_static"),
        lambda: export_onnx(fp32_dir, work / "onnx_fp32"),
    )
    if onnx:
        dirs["ort_fp32"] = Path(onnx)
        dyn = _try(
            "ORT dynamic quantization",
            errors,
            ("ort_int8_dynamic",),
            lambda: quantize_ort_dynamic(onnx, work / "onnx_int8_dynamic"),
        )
        if dyn:
            info["ort_dynamic"] = dyn
            dirs["ort_int8_dynamic"] = Path(dyn["model_dir"])
        static = _try(
            "ORT static quantization",
            errors,
            ("ort_int8_static",),
            lambda: quantize_ort_static(
                onnx, calib, work / "onnx_int8_static", calib_examples=calib_examples
            ),
        )
        if static:
            info["ort_static"] = static
            dirs["ort_int8_static"] = Path(static["model_dir"])
    return dirs, errors, info
