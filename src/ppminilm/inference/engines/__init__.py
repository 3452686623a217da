"""Inference engines behind one interface: Paddle Inference, OpenVINO, onnxruntime.

``open_engine(model_dir, cfg)`` opens an inference dir on ``cfg.engine`` (or, with
``engine=None``, on the engine its ``serving.json`` names) and returns an :class:`Engine`:
``run(batch) -> logits``, ``int8_check()``, ``describe()``. Engine modules import their runtime
lazily, so a missing package fails only when that engine is asked for, with an
:class:`EngineUnavailableError` naming what to install.

* :mod:`.paddle` -- :class:`ppminilm.inference.Predictor` (oneDNN FP32/BF16/INT8, TensorRT).
* :mod:`.openvino` -- reads our Paddle program, OpenVINO IR or ONNX; NNCF INT8.
* :mod:`.onnxruntime` -- paddle2onnx export, dynamic and static QDQ INT8.
* :mod:`.select` -- ``engine='auto'``: time the candidates and keep the fastest.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ppminilm.config import ENGINE_AUTO, ENGINES, InferConfig
from ppminilm.inference.engines.base import Engine, EngineUnavailableError, check_batch
from ppminilm.modeling.export import read_serving_config

__all__ = [
    "ENGINES",
    "Engine",
    "EngineUnavailableError",
    "available_engines",
    "check_batch",
    "engine_class",
    "open_engine",
]

#: Engine name -> (module, class).
ENGINE_MODULES = {
    "paddle": ("ppminilm.inference.engines.paddle", "PaddleEngine"),
    "openvino": ("ppminilm.inference.engines.openvino", "OpenVinoEngine"),
    "onnxruntime": ("ppminilm.inference.engines.onnxruntime", "OrtEngine"),
}
#: The Python package each engine needs (``available_engines`` checks they import).
ENGINE_PACKAGES = {"paddle": "paddle", "openvino": "openvino", "onnxruntime": "onnxruntime"}


def engine_class(name: str) -> type[Engine]:
    """The :class:`Engine` subclass of an engine name.

    Raises:
        ValueError: For an unknown name.
    """
    if name not in ENGINE_MODULES:
        raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")
    module, cls = ENGINE_MODULES[name]
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def available_engines() -> list[str]:
    """The engines whose runtime package is installed here, in :data:`ENGINES` order."""
    out = []
    for name in ENGINES:
        try:
            importlib.import_module(ENGINE_PACKAGES[name])
        except ImportError:
            continue
        out.append(name)
    return out


def open_engine(
    model_dir: str | Path, cfg: InferConfig | None = None, engine: str | None = None
) -> Engine:
    """Open an inference dir on an engine.

    Args:
        model_dir: Inference dir (``serving.json`` + the engine's model files).
        cfg: Inference settings (default: CPU, the model's ``max_seq_len`` and precision).
        engine: Engine name; default ``cfg.engine``, or the dir's own engine when ``cfg`` is
            None too.

    Raises:
        ValueError: Unknown engine, or ``auto`` (use :mod:`.select`).
        EngineUnavailableError: The engine's package is missing.
        ModelFormatError: The dir is not a model this engine can read.
    """
    serving = read_serving_config(model_dir)
    if cfg is None:
        cfg = InferConfig(
            max_seq_len=serving.max_seq_len,
            precision=serving.precision,
            use_trt=False,
            engine=engine or serving.engine,
        )
    name = engine or cfg.engine
    if name == ENGINE_AUTO:
        raise ValueError(
            "engine 'auto' picks among engines by timing them: use "
            "ppminilm.inference.engines.select.benchmark_engines"
        )
    if cfg.engine != name:
        cfg = cfg.replace(engine=name)
    return engine_class(name)(model_dir, cfg)
