"""Static inference-model export (the ``inference model`` artifact) and its serving config.

Layout of an inference model directory::

    inference.pdmodel / inference.pdiparams   static program + weights (paddle.jit.save)
    serving.json          max_seq_len, labels, task, precision, width, input names, arch,
                          engine (the runtime the model files are for, default ``paddle``)
    vocab.txt, tokenizer_config.json          tokenizer
    provenance.json       stage config, parent artifact, versions, params, FLOPs
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppminilm.compat.paddle import paddle
from ppminilm.config import ENGINES, PRECISIONS, ModelArch
from ppminilm.contracts import MODEL_PREFIX, SERVING_FILE
from ppminilm.io import read_json_file, staged_dir, write_json
from ppminilm.modeling.saved import (
    ModelFormatError,
    ModelInfo,
    copy_tokenizer_files,
    write_provenance,
)

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "token_type_ids")
#: The model files an inference dir holds for each engine (``serving.json`` ``engine``):
#: Paddle's static program, OpenVINO IR, or ONNX. Declared once; engines read them from here.
ENGINE_FILES: dict[str, tuple[str, ...]] = {
    "paddle": (f"{MODEL_PREFIX}.pdmodel", f"{MODEL_PREFIX}.pdiparams"),
    "openvino": (f"{MODEL_PREFIX}.xml", f"{MODEL_PREFIX}.bin"),
    "onnxruntime": (f"{MODEL_PREFIX}.onnx",),
}


@dataclass
class ServingConfig:
    """What a predictor needs besides the program: shapes, labels, precision."""

    max_seq_len: int
    labels: list[str]
    task: str = ""
    precision: str = "fp32"
    width: float = 1.0
    arch: dict[str, Any] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    #: The runtime the model files are for (one of ``ENGINES``).
    engine: str = "paddle"

    def validate(self, source: str = SERVING_FILE) -> None:
        """Raise ``ModelFormatError`` naming the field when a value is unusable."""
        if not isinstance(self.max_seq_len, int) or self.max_seq_len <= 0:
            raise ModelFormatError(
                f"{source}: field 'max_seq_len'={self.max_seq_len!r} must be a positive integer"
            )
        if not self.labels or len(self.labels) < 2:
            raise ModelFormatError(
                f"{source}: field 'labels' must list >= 2 labels, got {self.labels!r}"
            )
        if self.precision not in PRECISIONS:
            raise ModelFormatError(
                f"{source}: field 'precision'={self.precision!r}; expected one of {PRECISIONS}"
            )
        if self.engine not in ENGINES:
            raise ModelFormatError(
                f"{source}: field 'engine'={self.engine!r}; expected one of {ENGINES}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_seq_len": self.max_seq_len,
            "labels": list(self.labels),
            "task": self.task,
            "precision": self.precision,
            "width": self.width,
            "arch": dict(self.arch),
            "input_names": list(self.input_names),
            "engine": self.engine,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = SERVING_FILE) -> ServingConfig:
        if not isinstance(data, Mapping):
            raise ModelFormatError(f"{source}: expected a JSON object")
        for key in ("max_seq_len", "labels"):
            if key not in data:
                raise ModelFormatError(f"{source}: missing field {key!r}")
        known = {
            "max_seq_len",
            "labels",
            "task",
            "precision",
            "width",
            "arch",
            "input_names",
            "engine",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFormatError(f"{source}: unknown field(s) {unknown}")
        cfg = cls(**dict(data))
        cfg.validate(source)
        return cfg


def read_serving_config(model_dir: str | Path) -> ServingConfig:
    """Read and validate ``serving.json`` and check the program files exist.

    Raises:
        ModelFormatError: Naming the missing/broken file or field.
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: inference model directory does not exist")
    path = d / SERVING_FILE
    if not path.is_file():
        # Name the program file first when that is missing too: the commoner mistake is
        # pointing at a directory that is not an inference model at all.
        for name in ENGINE_FILES["paddle"]:
            if not (d / name).is_file():
                raise ModelFormatError(f"{d}: missing {name} (not an exported inference model)")
        raise ModelFormatError(f"{d}: missing {SERVING_FILE} (max_seq_len and labels)")
    data = read_json_file(path, ModelFormatError)
    cfg = ServingConfig.from_dict(data, source=str(path))
    for name in ENGINE_FILES[cfg.engine]:
        if not (d / name).is_file():
            raise ModelFormatError(
                f"{d}: missing {name} (serving.json says engine {cfg.engine!r}; "
                "not an exported inference model for it)"
            )
        if (d / name).stat().st_size == 0:
            raise ModelFormatError(
                f"{d / name}: empty file (0 bytes; an interrupted write or copy?)"
            )
    return cfg


def write_serving_config(model_dir: str | Path, cfg: ServingConfig) -> Path:
    """Validate and write ``serving.json``."""
    cfg.validate()
    return write_json(Path(model_dir) / SERVING_FILE, cfg.to_dict())


def input_specs() -> list[Any]:
    """Input specs of the exported program: dynamic batch and sequence length."""
    from paddle.static import InputSpec

    return [InputSpec(shape=[None, None], dtype="int64", name=name) for name in INPUT_NAMES]


def export_static(
    model: paddle.nn.Layer,
    info: ModelInfo,
    out_dir: str | Path,
    *,
    max_seq_len: int,
    tokenizer_dir: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Export a classifier to a static inference model with its serving config.

    Args:
        model: A sequence classifier (dynamic graph); put in eval mode here.
        info: Architecture, task and labels of the model.
        out_dir: Target directory; written to a temp dir and moved into place.
        max_seq_len: Longest input the serving side will feed.
        tokenizer_dir: Directory with ``vocab.txt`` to copy along.
        provenance: Extra provenance fields.

    Returns:
        The output directory.
    """
    if info.kind != "classifier":
        raise ValueError(f"only classifiers are exported for inference, got kind {info.kind!r}")
    target = Path(out_dir)
    with staged_dir(target, replace=True, kind="inference") as tmp:
        model.eval()
        with warnings.catch_warnings():
            # paddle 2.6 warns that full_graph=False ignores input_spec; jit.save uses the spec
            # all the same (the saved program has exactly these inputs, tested).
            warnings.filterwarnings("ignore", message="full_graph=False don't support")
            static = paddle.jit.to_static(model, input_spec=input_specs())
            paddle.jit.save(static, str(tmp / MODEL_PREFIX))
        # jit.save also writes an .pdiparams.info file we do not need to ship.
        info_file = tmp / f"{MODEL_PREFIX}.pdiparams.info"
        if info_file.exists():
            info_file.unlink()
        write_serving_config(
            tmp,
            ServingConfig(
                max_seq_len=max_seq_len,
                labels=list(info.labels),
                task=info.task,
                precision="fp32",
                width=info.arch.width,
                arch=info.arch.to_dict(),
            ),
        )
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
        write_provenance(tmp, info.arch, {"format": "paddle-static", **dict(provenance or {})})
    logger.info("exported static inference model to %s", target)
    return target


def arch_of(serving: ServingConfig) -> ModelArch | None:
    """The architecture recorded in a serving config, if any."""
    return ModelArch.from_dict(serving.arch) if serving.arch else None
