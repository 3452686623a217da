"""The saved-model format: save, load, provenance, tokenizer files, pretrained directories.

Saved-model directory (the ``Model`` artifact)::

    model.safetensors      weights, ERNIE layout (safetensors: reading runs no code)
    model_config.json      {"arch": ModelArch, "kind": ..., "task": ..., "labels": [...]}
    config.json            PaddleNLP's config (unpruned models): AutoModel* load the directory
    vocab.txt, tokenizer_config.json   tokenizer (AutoTokenizer loads them)
    provenance.json        how it was made: stage config, parent, versions, params, FLOPs
    README.md              the model card

:func:`load_model` and :func:`read_model_info` also read PaddleNLP ``save_pretrained``
directories of ERNIE/BERT/RoBERTa/PP-MiniLM models (:mod:`ppminilm.modeling.paddlenlp_format`)
and older runs' ``model_state.pdparams``; their weights are checked against the shape and
their vocabulary against the embedding table.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle
from ppminilm.compat.versions import package_versions
from ppminilm.config import ModelArch
from ppminilm.contracts import (
    MODEL_CARD_FILE,
    MODEL_CONFIG_FILE,
    PROVENANCE_FILE,
    WEIGHTS_FILE,
    Lineage,
    Provenance,
)
from ppminilm.io import atomic_write_json, read_json_file, staged_dir, write_json
from ppminilm.modeling.accounting import count_flops, count_params
from ppminilm.modeling.ernie import KINDS, build_model, encoder_param_count
from ppminilm.modeling.paddlenlp_format import (
    ernie_encoder_state,
    is_ppminilm_config,
    read_paddlenlp_dir,
    write_paddlenlp_config,
)
from ppminilm.modeling.weights import ModelFormatError, find_weights, load_weights, save_weights

logger = logging.getLogger(__name__)


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
    """Save weights, model config, tokenizer files, provenance and card, all or nothing.

    An unpruned model also gets PaddleNLP's ``config.json``, so
    ``AutoModelForSequenceClassification.from_pretrained(out_dir)`` (or ``AutoModel`` for an
    encoder) and ``AutoTokenizer.from_pretrained(out_dir)`` load the same directory.

    Args:
        model: The model to save.
        out_dir: Target directory (created; files are written to a temp dir first).
        info: Architecture, kind, task and labels.
        tokenizer_dir: Directory with ``vocab.txt`` (and tokenizer config) to copy along.
        provenance: Extra provenance fields (stage, config, parent artifact, metrics).

    Returns:
        The output directory.
    """
    from ppminilm.modeling.card import model_card

    target = Path(out_dir)
    with staged_dir(target, replace=True, kind="model") as tmp:
        save_weights(model.state_dict(), tmp / WEIGHTS_FILE)
        loadable = write_paddlenlp_config(tmp, info.arch, info.kind, info.labels) is not None
        write_json(tmp / MODEL_CONFIG_FILE, info.to_dict())
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
        record = make_provenance(info.arch, provenance or {})
        write_json(tmp / PROVENANCE_FILE, record.to_dict())
        card = model_card(
            kind=info.kind,
            task=info.task,
            labels=list(info.labels),
            prov=record,
            paddlenlp_loadable=loadable,
        )
        (tmp / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
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
    """Read what a model directory holds: ours (``model_config.json``) or a PaddleNLP one.

    A PaddleNLP directory reads as an ``encoder`` without task or labels (its task head, if
    any, is not carried over: fine-tuning builds one for its own labels).

    Raises:
        ModelFormatError: If the directory is neither, or its config is malformed.
    """
    root = Path(model_dir)
    path = root / MODEL_CONFIG_FILE
    if not root.is_dir():
        raise ModelFormatError(f"{root}: no such model directory")
    data = read_json_file(path, ModelFormatError) if path.is_file() else None
    if is_ppminilm_config(data):
        try:
            return ModelInfo.from_dict(data, source=str(path))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ModelFormatError(f"{path}: {exc}") from exc
    return ModelInfo(arch=read_paddlenlp_dir(root).arch, kind="encoder")


def is_paddlenlp_dir(model_dir: str | Path) -> bool:
    """Whether a directory is a PaddleNLP checkpoint rather than one of ours."""
    path = Path(model_dir) / MODEL_CONFIG_FILE
    return not (path.is_file() and is_ppminilm_config(read_json_file(path, ModelFormatError)))


def _saved_state(model_dir: Path) -> tuple[dict[str, np.ndarray], ModelInfo, str]:
    """The state dict, info and kind the weights are keyed for (ours or PaddleNLP's)."""
    info = read_model_info(model_dir)
    if not is_paddlenlp_dir(model_dir):
        return load_weights(find_weights(model_dir)), info, info.kind
    source = read_paddlenlp_dir(model_dir)
    logger.info(
        "reading %s: a PaddleNLP %s checkpoint (%s) into the ERNIE layout",
        model_dir,
        source.model_type,
        source.weights.name,
    )
    return ernie_encoder_state(load_weights(source.weights), source), info, "encoder"


def check_vocab(model_dir: str | Path, arch: ModelArch) -> None:
    """The directory's ``vocab.txt`` fits the embedding table (when there is one).

    Raises:
        ModelFormatError: If the vocabulary has more tokens than the model has rows.
    """
    vocab = Path(model_dir) / "vocab.txt"
    if not vocab.is_file():
        return
    with vocab.open(encoding="utf-8") as handle:
        size = sum(1 for _ in handle)
    if size > arch.vocab_size:
        raise ModelFormatError(
            f"{vocab}: {size} tokens, but the model's embedding table has {arch.vocab_size} rows "
            "(the vocabulary is not the one this model was trained with)"
        )


def load_model(model_dir: str | Path, kind: str | None = None) -> tuple[paddle.nn.Layer, ModelInfo]:
    """Rebuild a saved model (ours or a PaddleNLP checkpoint) and load its weights.

    Args:
        model_dir: A directory written by :func:`save_model`, or a PaddleNLP
            ``save_pretrained`` directory of an ERNIE/BERT/RoBERTa/PP-MiniLM model.
        kind: Build as this kind instead of the saved one (e.g. load an ``mlm`` or
            ``encoder`` checkpoint into a ``classifier``: the shared encoder weights load, the
            new head stays freshly initialised).

    Returns:
        ``(model, info)``; ``info.kind`` is the kind that was built.

    Raises:
        ModelFormatError: On missing files, weights that do not fit the architecture, or a
            vocabulary larger than the embedding table.
    """
    root = Path(model_dir)
    state, info, state_kind = _saved_state(root)
    check_vocab(root, info.arch)
    build_kind = kind or info.kind
    num_classes = max(len(info.labels), 2)
    model = build_model(info.arch, build_kind, num_classes=num_classes)
    if build_kind != state_kind:
        state = _remap_encoder_state(state, src_kind=state_kind, dst_kind=build_kind)
    own = model.state_dict()
    where = find_weights(root)
    mismatched = [k for k, v in state.items() if k in own and list(own[k].shape) != list(v.shape)]
    if mismatched:
        k = mismatched[0]
        raise ModelFormatError(
            f"{where}: tensor {k!r} has shape {list(state[k].shape)} but the architecture "
            f"needs {list(own[k].shape)} ({len(mismatched)} mismatches)"
        )
    missing = [k for k in own if k not in state]
    encoder_missing = [k for k in missing if _is_encoder_key(k, build_kind)]
    if encoder_missing:
        raise ModelFormatError(f"{where}: missing encoder weights, e.g. {encoder_missing[:3]}")
    if missing and build_kind == state_kind:
        # Built as what it was saved as: every tensor must be there. Only a model built as
        # another kind (an encoder loaded into a classifier) starts with a fresh head.
        raise ModelFormatError(
            f"{where}: lacks {len(missing)} weight(s) of its {state_kind} "
            f"({MODEL_CONFIG_FILE}), e.g. {missing[:3]}; it would run with random ones"
        )
    unexpected = [k for k in state if k not in own and _is_encoder_key(k, build_kind)]
    if unexpected:
        raise ModelFormatError(
            f"{where}: weights the ERNIE layout has no place for, e.g. {unexpected[:3]}"
        )
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
    """Load a pretrained model directory (ours, or PaddleNLP's, e.g. ``roberta-wwm-ext-large``).

    Never downloads: ``path`` must be a local directory (see :func:`load_model`).

    Args:
        path: Local directory.
        kind: ``encoder`` or ``mlm`` (a PaddleNLP checkpoint loads as an encoder).

    Returns:
        The loaded model (ERNIE layout).

    Raises:
        ModelFormatError: If the path is not a local model directory.
    """
    p = Path(path)
    if not p.is_dir():
        raise ModelFormatError(
            f"pretrained model {path!s} is not a local directory (hub downloads are disabled; "
            "download it once and pass its path)"
        )
    if is_paddlenlp_dir(p):
        kind = "encoder"
    return load_model(p, kind=kind)[0]


def same_vocabulary(first: str | Path, second: str | Path, what: str) -> None:
    """Two tokenizer directories hold the same ``vocab.txt`` (teacher and student must).

    Args:
        first: A model or tokenizer directory.
        second: Another.
        what: What the two are, for the message (``teacher and student``).

    Raises:
        ModelFormatError: Naming both files and the first token that differs.
    """
    a, b = Path(first) / "vocab.txt", Path(second) / "vocab.txt"
    for path in (a, b):
        if not path.is_file():
            raise ModelFormatError(f"{path}: no such file ({what} need a vocab.txt each)")
    left = a.read_text(encoding="utf-8").splitlines()
    right = b.read_text(encoding="utf-8").splitlines()
    if left == right:
        return
    first_diff = next(
        (i for i, (x, y) in enumerate(zip(left, right)) if x != y), min(len(left), len(right))
    )
    shown = (
        f"token {first_diff}: {left[first_diff]!r} vs {right[first_diff]!r}"
        if first_diff < min(len(left), len(right))
        else f"{len(left)} vs {len(right)} tokens"
    )
    raise ModelFormatError(
        f"{what} must share a vocabulary: {a} and {b} differ ({shown}); distil a student "
        "with the teacher's tokenizer (vocab_uri = the teacher's directory)"
    )
