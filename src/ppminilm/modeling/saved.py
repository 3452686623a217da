"""The saved-model format: save, load, provenance, tokenizer files, pretrained directories.

Saved-model directory (the ``Model`` artifact)::

    model_state.pdparams   Paddle weights
    model_config.json      {"arch": ModelArch, "kind": ..., "task": ..., "labels": [...]}
    vocab.txt, tokenizer_config.json   tokenizer (copied from the data stage)
    provenance.json        how it was made: stage config, parent, versions, params, FLOPs
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppminilm.compat.paddle import paddle
from ppminilm.compat.versions import package_versions
from ppminilm.config import ModelArch
from ppminilm.contracts import (
    MODEL_CONFIG_FILE,
    PROVENANCE_FILE,
    WEIGHTS_FILE,
    Lineage,
    Provenance,
)
from ppminilm.errors import UserError
from ppminilm.io import atomic_write_json, read_json_file, staged_dir, write_json
from ppminilm.modeling.accounting import count_flops, count_params
from ppminilm.modeling.ernie import KINDS, build_model, encoder_param_count

logger = logging.getLogger(__name__)


class ModelFormatError(UserError):
    """A model directory is missing files or its files disagree with each other."""


# --------------------------------------------------------------------------- save / load


@dataclass
class ModelInfo:
    """What ``model_config.json`` records about a saved model."""

    arch: ModelArch
    kind: str = "encoder"
    task: str = ""
    labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "kind": self.kind,
            "task": self.task,
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model_config.json") -> ModelInfo:
        try:
            arch = ModelArch.from_dict(data["arch"])
            kind = str(data.get("kind", "encoder"))
        except KeyError as exc:
            raise ModelFormatError(f"{source}: missing field {exc.args[0]!r}") from exc
        if kind not in KINDS:
            raise ModelFormatError(f"{source}: field 'kind'={kind!r}; expected one of {KINDS}")
        return cls(
            arch=arch,
            kind=kind,
            task=str(data.get("task", "")),
            labels=[str(x) for x in data.get("labels", [])],
        )


def save_model(
    model: paddle.nn.Layer,
    out_dir: str | Path,
    info: ModelInfo,
    *,
    tokenizer_dir: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Save weights, model config, tokenizer files and provenance, all or nothing.

    Args:
        model: The model to save.
        out_dir: Target directory (created; files are written to a temp dir first).
        info: Architecture, kind, task and labels.
        tokenizer_dir: Directory with ``vocab.txt`` (and tokenizer config) to copy along.
        provenance: Extra provenance fields (stage, config, parent artifact, metrics).

    Returns:
        The output directory.
    """
    target = Path(out_dir)
    with staged_dir(target, replace=True, kind="model") as tmp:
        paddle.save(model.state_dict(), str(tmp / WEIGHTS_FILE))
        write_json(tmp / MODEL_CONFIG_FILE, info.to_dict())
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
        write_provenance(tmp, info.arch, provenance or {})
    logger.info(
        "saved %s model (%s params) to %s", info.kind, f"{encoder_param_count(model):,}", target
    )
    return target


TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Copy the tokenizer files (vocab.txt and configs) that exist in ``src`` to ``dst``.

    Raises:
        ModelFormatError: If ``src`` has no ``vocab.txt``.
    """
    src, dst = Path(src), Path(dst)
    if not (src / "vocab.txt").is_file():
        raise ModelFormatError(f"{src}: no vocab.txt (expected a tokenizer directory)")
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


#: Fields of :class:`~ppminilm.contracts.Provenance` a caller may set; others go to ``details``.
_PROVENANCE_FIELDS = ("stage", "config", "parent", "format", "precision", "lineage")


def make_provenance(arch: ModelArch, fields: Mapping[str, Any]) -> Provenance:
    """The provenance record of a model of ``arch``: params, FLOPs, versions and ``fields``.

    Args:
        arch: The model's architecture (params and FLOPs are computed from it).
        fields: ``stage``, ``config``, ``parent``, ``format``, ``precision``, ``lineage``;
            any other key is a stage-specific detail.
    """
    known = {k: fields[k] for k in _PROVENANCE_FIELDS if k in fields}
    details = {k: v for k, v in fields.items() if k not in _PROVENANCE_FIELDS}
    return Provenance(
        stage=str(known.pop("stage", "")),
        params=count_params(arch),
        flops_seq128=count_flops(arch),
        arch=arch.to_dict(),
        versions=package_versions(),
        details=details,
        **known,
    )


def write_provenance(out_dir: str | Path, arch: ModelArch, fields: Mapping[str, Any]) -> Path:
    """Write ``provenance.json`` (see :func:`make_provenance`) into a directory being staged."""
    return write_json(Path(out_dir) / PROVENANCE_FILE, make_provenance(arch, fields).to_dict())


def add_lineage(model_dir: str | Path, lineage: Lineage) -> Provenance:
    """Lay ``lineage`` over the lineage in a model's ``provenance.json`` (atomic rewrite).

    Raises:
        ModelFormatError: If the directory has no provenance record.
    """
    record = Provenance.read(model_dir)
    if record is None:
        raise ModelFormatError(f"{model_dir}: no {PROVENANCE_FILE} to add the lineage to")
    record.lineage = record.lineage.merged(lineage)
    atomic_write_json(Path(model_dir) / PROVENANCE_FILE, record.to_dict())
    return record


def read_lineage(model_dir: str | Path) -> Lineage:
    """The lineage recorded in a model's ``provenance.json`` (empty when there is none)."""
    record = Provenance.read(model_dir)
    return record.lineage if record is not None else Lineage()


def read_model_info(model_dir: str | Path) -> ModelInfo:
    """Read and validate ``model_config.json`` of a saved model.

    Raises:
        ModelFormatError: If the directory or file is missing or malformed.
    """
    path = Path(model_dir) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise ModelFormatError(f"{model_dir}: no {MODEL_CONFIG_FILE}; not a ppminilm model dir")
    data = read_json_file(path, ModelFormatError)
    try:
        return ModelInfo.from_dict(data, source=str(path))
    except ValueError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc


def load_model(model_dir: str | Path, kind: str | None = None) -> tuple[paddle.nn.Layer, ModelInfo]:
    """Rebuild a saved model and load its weights.

    Args:
        model_dir: A directory written by :func:`save_model`.
        kind: Build as this kind instead of the saved one (e.g. load an ``mlm`` or
            ``encoder`` checkpoint into a ``classifier``: the shared encoder weights load, the
            new head stays freshly initialised).

    Returns:
        ``(model, info)``; ``info.kind`` is the kind that was built.

    Raises:
        ModelFormatError: On missing files or weights that do not fit the architecture.
    """
    info = read_model_info(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFormatError(f"{model_dir}: no {WEIGHTS_FILE}")
    build_kind = kind or info.kind
    num_classes = max(len(info.labels), 2)
    model = build_model(info.arch, build_kind, num_classes=num_classes)
    state = paddle.load(str(weights))
    if build_kind != info.kind:
        state = _remap_encoder_state(state, src_kind=info.kind, dst_kind=build_kind)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and list(own[k].shape) != list(v.shape)]
    if mismatched:
        k = mismatched[0]
        raise ModelFormatError(
            f"{weights}: tensor {k!r} has shape {list(state[k].shape)} but the architecture in "
            f"{MODEL_CONFIG_FILE} needs {list(own[k].shape)} ({len(mismatched)} mismatches)"
        )
    missing = [k for k in own if k not in state]
    encoder_missing = [k for k in missing if _is_encoder_key(k, build_kind)]
    if encoder_missing:
        raise ModelFormatError(f"{weights}: missing encoder weights, e.g. {encoder_missing[:3]}")
    model.set_state_dict({k: v for k, v in state.items() if k in own})
    info = ModelInfo(arch=info.arch, kind=build_kind, task=info.task, labels=info.labels)
    return model, info


def _prefix(kind: str) -> str:
    return "" if kind == "encoder" else "ernie."


def _is_encoder_key(key: str, kind: str) -> bool:
    return key.startswith(_prefix(kind)) and not key.startswith(("classifier", "cls"))


def _remap_encoder_state(state: Mapping[str, Any], src_kind: str, dst_kind: str) -> dict[str, Any]:
    src_p, dst_p = _prefix(src_kind), _prefix(dst_kind)
    out = {}
    for key, value in state.items():
        if not key.startswith(src_p) or key.startswith(("classifier", "cls")):
            continue
        out[dst_p + key[len(src_p) :]] = value
    return out


def load_pretrained(path: str | Path, kind: str = "encoder") -> paddle.nn.Layer:
    """Load a paddlenlp pretrained model directory (e.g. ``roberta-wwm-ext-large``) from disk.

    Never downloads: ``path`` must be a local directory with ``config.json`` (or
    ``model_config.json``) and weights, as written by paddlenlp's ``save_pretrained``.

    Args:
        path: Local directory.
        kind: ``encoder`` or ``mlm``.

    Returns:
        The loaded model.

    Raises:
        ModelFormatError: If the path is not a local pretrained directory.
    """
    from paddlenlp.transformers import AutoModel, AutoModelForMaskedLM

    p = Path(path)
    if not p.is_dir():
        raise ModelFormatError(
            f"pretrained model {path!s} is not a local directory (hub downloads are disabled; "
            "download it once and pass its path)"
        )
    if (
        (p / MODEL_CONFIG_FILE).is_file()
        and (p / WEIGHTS_FILE).is_file()
        and not (p / "config.json").is_file()
    ):
        return load_model(p, kind=kind)[0]
    if not (p / "config.json").is_file():
        raise ModelFormatError(f"{p}: no config.json; not a paddlenlp pretrained directory")
    cls = AutoModel if kind == "encoder" else AutoModelForMaskedLM
    return cls.from_pretrained(str(p))
