"""What every inference engine offers: one batch in, logits out, plus its INT8 evidence.

An engine opens one inference dir (``serving.json`` validated first, see
:func:`ppminilm.modeling.export.read_serving_config`) with an
:class:`~ppminilm.config.InferConfig`, and is fed exactly like
:class:`ppminilm.inference.Predictor`: ``input_ids`` and ``token_type_ids`` int64
``[batch, seq]``. The benchmark and the predict API only use this interface, so a new engine is
one module here plus one line in :data:`ppminilm.inference.engines.ENGINE_MODULES`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ppminilm.config import InferConfig
from ppminilm.errors import DeviceUnavailableError
from ppminilm.modeling.export import INPUT_NAMES, ServingConfig, read_serving_config

logger = logging.getLogger(__name__)


class EngineUnavailableError(DeviceUnavailableError):
    """The engine's runtime package is not installed (or cannot run this model here)."""


def check_batch(
    arrays: Mapping[str, np.ndarray], serving: ServingConfig, source: str | Path
) -> dict[str, np.ndarray]:
    """The model inputs of one batch, as contiguous int64 ``[batch, seq]`` arrays.

    Raises:
        ValueError: If an input is missing, not 2-D, shaped unlike the others, or longer than
            the model's ``max_seq_len``.
    """
    out: dict[str, np.ndarray] = {}
    shape = None
    for name in serving.input_names:
        if name not in arrays:
            raise ValueError(f"missing input {name!r}; the model takes {list(serving.input_names)}")
        value = np.ascontiguousarray(arrays[name], dtype=np.int64)
        if value.ndim != 2 or (shape is not None and value.shape != shape):
            raise ValueError(
                f"input {name!r} has shape {list(value.shape)}; expected [batch, seq] like the "
                "other inputs"
            )
        shape = value.shape
        if value.shape[1] > serving.max_seq_len:
            raise ValueError(
                f"input {name!r} has {value.shape[1]} tokens; the model at {source} takes at "
                f"most max_seq_len={serving.max_seq_len}"
            )
        out[name] = value
    return out


class Engine(abc.ABC):
    """One opened model on one engine.

    Attributes:
        name: Engine name (one of :data:`ppminilm.config.ENGINES`).
        model_dir: The inference dir.
        cfg: The settings it was opened with.
        serving: Its ``serving.json``.
    """

    name: ClassVar[str] = ""

    def __init__(self, model_dir: str | Path, cfg: InferConfig) -> None:
        self.model_dir = Path(model_dir)
        self.cfg = cfg
        self.serving = read_serving_config(self.model_dir)

    @property
    def labels(self) -> list[str]:
        """Label strings in id order."""
        return list(self.serving.labels)

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """The runtime's version string."""

    @abc.abstractmethod
    def run(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits ``[batch, num_labels]`` for one batch (see :func:`check_batch`)."""

    @abc.abstractmethod
    def int8_check(self, batch: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Evidence of which kernels run INT8 (engine-specific fields plus ``checked``,
        ``runs_int8`` and ``summary``, one line for a table). ``batch`` is a sample input for
        engines that can only tell from a profiled run."""

    def logits(self, arrays: Mapping[str, np.ndarray], batch_size: int) -> np.ndarray:
        """Logits for every row of ``arrays``, ``batch_size`` rows per run."""
        n = len(arrays[INPUT_NAMES[0]])
        return np.concatenate(
            [
                self.run({k: arrays[k][start : start + batch_size] for k in INPUT_NAMES})
                for start in range(0, n, batch_size)
            ]
        )

    def describe(self) -> dict[str, Any]:
        """Engine, runtime version and the settings that decide its speed (JSON-able)."""
        return {
            "engine": self.name,
            "version": self.version,
            "precision": self.cfg.precision,
            "threads": self.cfg.num_threads,
        }


def finish_engine_dir(
    target: Path,
    source_dir: Path,
    serving: ServingConfig,
    *,
    engine: str,
    precision: str,
    provenance: Mapping[str, Any],
) -> None:
    """Write ``serving.json`` (``engine``/``precision`` set), tokenizer files and provenance
    into an engine's model dir converted from ``source_dir`` (the model files are the
    caller's)."""
    import dataclasses

    from ppminilm.compat.versions import package_versions
    from ppminilm.io import read_json_file, write_json
    from ppminilm.modeling.export import write_serving_config
    from ppminilm.modeling.saved import PROVENANCE_FILE, ModelFormatError, copy_tokenizer_files

    write_serving_config(target, dataclasses.replace(serving, engine=engine, precision=precision))
    copy_tokenizer_files(source_dir, target)
    parent: dict[str, Any] = {}
    if (source_dir / PROVENANCE_FILE).is_file():
        parent = read_json_file(source_dir / PROVENANCE_FILE, ModelFormatError)
    record: dict[str, Any] = {
        **{k: parent[k] for k in ("params", "flops_seq128", "arch") if k in parent},
        "engine": engine,
        "precision": precision,
        "parent": str(source_dir),
        "versions": package_versions(),
        **dict(provenance),
    }
    write_json(target / PROVENANCE_FILE, record)
