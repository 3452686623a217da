"""Model builders, width shrinking, parameter/FLOPs accounting, and the saved-model format.

PP-MiniLM is an ERNIE-layout encoder (paddlenlp ``ErnieModel``): token, position and 2 segment
embeddings, post-LN transformer layers built on ``paddle.nn.MultiHeadAttention`` (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``) and ``linear1``/``linear2`` FFN, and a tanh pooler.

Saved-model directory (the ``Model`` artifact)::

    model_state.pdparams   Paddle weights
    model_config.json      {"arch": ModelArch, "kind": ..., "task": ..., "labels": [...]}
    vocab.txt, tokenizer_config.json   tokenizer (copied from the data stage)
    provenance.json        how it was made: stage config, parent, versions, params, FLOPs
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppminilm.config import ModelArch, read_json_file
from ppminilm.paddle_env import package_versions, paddle

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model_state.pdparams"
MODEL_CONFIG_FILE = "model_config.json"
PROVENANCE_FILE = "provenance.json"
KINDS = ("encoder", "classifier", "mlm")

#: Sequence length at which the seed's FLOPs figures are quoted.
FLOPS_SEQ_LEN = 128


class ModelFormatError(ValueError):
    """A model directory is missing files or its files disagree with each other."""


# --------------------------------------------------------------------------- accounting


def count_params(arch: ModelArch) -> int:
    """Parameters of the encoder + pooler for an architecture (classifier head excluded).

    embeddings ``V*H + P*H + T*H + 2H`` + per layer (attention ``3(H*h+h) + h*H+H``, FFN
    ``H*i+i + i*H+H``, two layer norms ``4H``) + pooler ``H*H+H``; ``h``/``i`` are the
    attention and FFN widths after pruning.

    Args:
        arch: The model shape (``width`` scales heads and FFN).

    Returns:
        The exact parameter count.
    """
    H = arch.hidden_size
    h = arch.pruned_heads * arch.head_dim
    i = arch.pruned_intermediate
    embeddings = (arch.vocab_size + arch.max_position + arch.type_vocab_size) * H + 2 * H
    attention = 3 * (H * h + h) + h * H + H
    ffn = H * i + i + i * H + H
    per_layer = attention + ffn + 4 * H
    pooler = H * H + H
    return embeddings + arch.num_layers * per_layer + pooler


def count_flops(arch: ModelArch, seq_len: int = FLOPS_SEQ_LEN) -> int:
    """Dense encoder multiply-accumulates for one sequence, as the seed's FLOPs column counts.

    ``seq_len * L * (3*H*h + h*H + 2*H*i)``: the Q/K/V, output and FFN projections only.

    Args:
        arch: The model shape.
        seq_len: Tokens per sequence (the seed quotes 128).

    Returns:
        The FLOPs figure (an integer).
    """
    H = arch.hidden_size
    h = arch.pruned_heads * arch.head_dim
    i = arch.pruned_intermediate
    return seq_len * arch.num_layers * (3 * H * h + h * H + 2 * H * i)


def format_count(value: int, unit: str) -> str:
    """Format a count the way the seed's table does: ``102.3M`` params, ``10.87B`` FLOPs."""
    if unit == "M":
        return f"{value / 1e6:.1f}M"
    if unit == "B":
        return f"{value / 1e9:.2f}B"
    raise ValueError(f"unit must be 'M' or 'B', got {unit!r}")


def encoder_param_count(model: paddle.nn.Layer) -> int:
    """Count the parameters of a built model's encoder and pooler (no task head).

    Args:
        model: An ``ErnieModel`` or a model wrapping one as ``.ernie``.

    Returns:
        Number of scalar parameters.
    """
    base = getattr(model, "ernie", model)
    return int(sum(int(p.numel()) for p in base.parameters()))


# --------------------------------------------------------------------------- builders


def _ernie_config(arch: ModelArch, num_labels: int = 2) -> Any:
    from paddlenlp.transformers import ErnieConfig

    return ErnieConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        intermediate_size=arch.intermediate_size,
        hidden_act=arch.hidden_act,
        hidden_dropout_prob=arch.dropout,
        attention_probs_dropout_prob=arch.dropout,
        max_position_embeddings=arch.max_position,
        type_vocab_size=arch.type_vocab_size,
        use_task_id=False,
        pad_token_id=0,
        num_labels=num_labels,
    )


def build_model(arch: ModelArch, kind: str = "encoder", num_classes: int = 2) -> paddle.nn.Layer:
    """Build a randomly initialised model of the given shape.

    Args:
        arch: Model shape; ``width`` < 1 builds the full-width model and shrinks it.
        kind: ``encoder`` (ErnieModel), ``classifier`` (sequence classification) or ``mlm``.
        num_classes: Classes of the classifier head.

    Returns:
        The Paddle layer.

    Raises:
        ValueError: On an unknown kind or fewer than 2 classes.
    """
    from paddlenlp.transformers import ErnieForMaskedLM, ErnieForSequenceClassification, ErnieModel

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
    if kind == "classifier" and num_classes < 2:
        raise ValueError(f"a classifier needs >= 2 classes, got {num_classes}")
    cfg = _ernie_config(arch, num_labels=num_classes)
    cls = {
        "encoder": ErnieModel,
        "classifier": ErnieForSequenceClassification,
        "mlm": ErnieForMaskedLM,
    }[kind]
    model = cls(cfg)
    if arch.width < 1.0:
        shrink_to_width(model, arch.width)
    return model


def encoder_layers(model: paddle.nn.Layer) -> list[Any]:
    """The transformer layers of a model (``ErnieModel`` or a wrapper with ``.ernie``)."""
    base = getattr(model, "ernie", model)
    return list(base.encoder.layers)


def _slice_linear(
    linear: paddle.nn.Linear, out_idx: Any = None, in_idx: Any = None
) -> paddle.nn.Linear:
    weight = linear.weight  # [in, out]
    bias = linear.bias
    w = weight
    if in_idx is not None:
        w = paddle.index_select(w, in_idx, axis=0)
    if out_idx is not None:
        w = paddle.index_select(w, out_idx, axis=1)
    new = paddle.nn.Linear(w.shape[0], w.shape[1], bias_attr=bias is not None)
    new.weight.set_value(w)
    if bias is not None:
        b = bias if out_idx is None else paddle.index_select(bias, out_idx, axis=0)
        new.bias.set_value(b)
    return new


def shrink_to_width(model: paddle.nn.Layer, width: float) -> paddle.nn.Layer:
    """Keep the first ``width`` share of heads and FFN neurons in every layer, in place.

    Pruning reorders heads/neurons by importance first, so "the first k" are the most
    important; on a fresh model this simply builds the pruned shape.

    Args:
        model: Model to shrink (full width).
        width: Share of heads and FFN neurons to keep, in (0, 1].

    Returns:
        The same model object.
    """
    for layer in encoder_layers(model):
        attn = layer.self_attn
        keep_heads = round(attn.num_heads * width)
        if keep_heads < 1:
            raise ValueError(f"width {width} keeps no attention head of {attn.num_heads}")
        head_dim = attn.head_dim
        cols = paddle.arange(keep_heads * head_dim, dtype="int64")
        attn.q_proj = _slice_linear(attn.q_proj, out_idx=cols)
        attn.k_proj = _slice_linear(attn.k_proj, out_idx=cols)
        attn.v_proj = _slice_linear(attn.v_proj, out_idx=cols)
        attn.out_proj = _slice_linear(attn.out_proj, in_idx=cols)
        attn.num_heads = keep_heads
        keep_ffn = round(layer.linear1.weight.shape[1] * width)
        neurons = paddle.arange(keep_ffn, dtype="int64")
        layer.linear1 = _slice_linear(layer.linear1, out_idx=neurons)
        layer.linear2 = _slice_linear(layer.linear2, in_idx=neurons)
    return model


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


def _atomic_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def _publish_dir(tmp: Path, target: Path) -> None:
    """Swap a finished temp dir into place (keeps other files in target if it exists)."""
    if target.exists() and any(target.iterdir()):
        for item in tmp.iterdir():
            dest = target / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)


@contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Write a directory all or nothing: yields a temp dir beside ``out_dir``.

    On normal exit its files are moved into ``out_dir`` (other files there are kept); on an
    exception the temp dir is removed and ``out_dir`` is left as it was.
    """
    target = Path(out_dir)
    tmp = _atomic_dir(target)
    try:
        yield tmp
        _publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    with staged_dir(target) as tmp:
        paddle.save(model.state_dict(), str(tmp / WEIGHTS_FILE))
        (tmp / MODEL_CONFIG_FILE).write_text(
            json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
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


def write_provenance(out_dir: str | Path, arch: ModelArch, extra: Mapping[str, Any]) -> Path:
    """Write ``provenance.json``: params, FLOPs, package versions and the caller's fields."""
    record = {
        "params": count_params(arch),
        "flops_seq128": count_flops(arch),
        "arch": arch.to_dict(),
        "versions": package_versions(),
        **dict(extra),
    }
    path = Path(out_dir) / PROVENANCE_FILE
    path.write_text(
        json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    return path


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
