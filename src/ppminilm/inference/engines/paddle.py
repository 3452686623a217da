"""Paddle Inference as an engine: :class:`ppminilm.inference.Predictor` behind :class:`Engine`.

CPU: oneDNN FP32, BF16 (``enable_mkldnn_bfloat16``) or INT8 for a PaddleSlim PTQ model
(``enable_mkldnn_int8``); GPU: TensorRT. The INT8 evidence is the optimized program the
predictor wrote while it was built (:func:`ppminilm.inference.predictor.inspect_optimized_program`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle
from ppminilm.config import InferConfig
from ppminilm.inference.engines.base import Engine
from ppminilm.inference.predictor import OPTIMIZED_PROGRAM, Predictor, inspect_optimized_program


def int8_summary(check: Mapping[str, Any], precision: str) -> str:
    """One table line for a Paddle INT8 check (``- (fp32)`` for other precisions)."""
    if precision != "int8":
        return f"- ({precision})"
    if not check.get("checked"):
        return "unchecked: " + str(check.get("reason", "no check"))
    if not check.get("runs_int8"):
        return (
            f"NO: FP32 fallback ({check.get('fake_quant_ops', 0)} fake-quant ops left, "
            f"{check.get('int8_ops', 0)} INT8 compute ops)"
        )
    types = ", ".join(f"{t} x{n}" for t, n in check.get("int8_op_types", {}).items())
    return f"yes: {types} INT8; {check['quant_dequant_ops']} quant/dequant; 0 fake-quant"


class PaddleEngine(Engine):
    """Paddle Inference over an exported Paddle inference dir."""

    name = "paddle"

    def __init__(
        self,
        model_dir: str | Path,
        cfg: InferConfig,
        *,
        shape_file: str | None = None,
        inspect: bool = True,
    ) -> None:
        """Build the predictor.

        Args:
            model_dir: Paddle inference dir.
            cfg: Inference settings.
            shape_file: TensorRT shape-range file (GPU).
            inspect: On CPU, save and read the optimized program for :meth:`int8_check`.
        """
        super().__init__(model_dir, cfg)
        self._check: dict[str, Any]
        if cfg.device == "cpu" and inspect:
            with tempfile.TemporaryDirectory(prefix="ppminilm-optim-") as tmp:
                self.predictor = Predictor(model_dir, cfg, optim_dir=tmp)
                self._check = inspect_optimized_program(
                    Path(tmp) / OPTIMIZED_PROGRAM, self.predictor.quantized
                )
        else:
            self.predictor = Predictor(model_dir, cfg, shape_file=shape_file)
            self._check = {
                "checked": False,
                "quantized_model": self.predictor.quantized,
                "reason": (
                    "TensorRT engines are opaque; INT8 use is set by precision_mode"
                    if cfg.device == "gpu"
                    else "not inspected"
                ),
            }
        self._check["summary"] = (
            f"TensorRT {cfg.precision}"
            if cfg.device == "gpu"
            else int8_summary(self._check, cfg.precision)
        )

    @property
    def version(self) -> str:
        return str(paddle.__version__)

    def run(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predictor.run(arrays)

    def int8_check(self, batch: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        return dict(self._check)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            device=self.cfg.device,
            use_mkldnn=self.cfg.use_mkldnn,
            int8_op_types=list(self.cfg.int8_op_types),
        )
        return out
