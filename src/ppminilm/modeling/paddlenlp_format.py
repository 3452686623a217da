"""PaddleNLP model directories in, PaddleNLP-loadable model directories out.

**In.** A ``save_pretrained`` directory of an ERNIE, BERT, RoBERTa or PP-MiniLM model --
``config.json`` (or the legacy ``model_config.json`` with ``init_args``/``init_class``), weights
(``model.safetensors`` or ``model_state.pdparams``) and tokenizer files -- is read into this
project's ERNIE-layout model (:class:`~ppminilm.config.ModelArch` + an ERNIE state dict). The
four families share paddlenlp's module names below the base prefix (``embeddings.*``,
``encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``linear1/2``, ``norm1/2``, ``pooler.dense``), so
the mapping strips the prefix and drops task heads, with two exact rewrites:

* RoBERTa (paddlenlp 2.8) numbers positions from ``pad_token_id + 1`` (fairseq style); the
  ERNIE layout numbers them from 0, so the position table is shifted by ``pad_token_id + 1``
  rows (``max_position`` shrinks by as much). Outputs of non-padding tokens are unchanged.
* ERNIE 3.0 (``use_task_id``) adds task-type embedding ``task_id`` to every token; that row is
  folded into the token-type table (both are summed before the embedding layer norm).

Paddlenlp's own class loading the same directory is the reference: the logits agree.

**Out.** :func:`write_paddlenlp_config` writes the ``config.json`` that makes one of our
unpruned model directories (ERNIE layout, ``model.safetensors``) load with
``AutoModel*.from_pretrained``. A width-pruned model cannot: paddlenlp's attention asserts
``num_heads x head_dim == hidden_size``, and pruning keeps 9 of 12 heads at hidden 768; it stays
loadable by :func:`ppminilm.modeling.saved.load_model` and as a static inference model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.config import ModelArch
from ppminilm.contracts import MODEL_CONFIG_FILE, PADDLENLP_CONFIG_FILE
from ppminilm.errors import ConfigError
from ppminilm.io import read_json_file
from ppminilm.modeling.weights import ModelFormatError, find_weights

logger = logging.getLogger(__name__)

#: ``model_type`` values read into the ERNIE layout.
SUPPORTED_MODEL_TYPES = ("ernie", "bert", "roberta", "ppminilm")
#: Class-name prefixes (``init_class`` / ``architectures``) -> model type.
_CLASS_PREFIXES = {"ernie": "ernie", "bert": "bert", "roberta": "roberta", "ppminilm": "ppminilm"}
#: Layer-norm epsilon of the ERNIE layout (paddlenlp's ``ErniePretrainedModel._init_weights``).
ERNIE_LAYER_NORM_EPS = 1e-12
#: Activations the ERNIE layout runs (:class:`ModelArch.hidden_act`).
_ACTIVATIONS = ("relu", "gelu")
#: Prefixes of task-head parameters, dropped when reading (a fresh head is built per task).
_HEAD_PREFIXES = ("classifier.", "cls.", "lm_head.", "qa_outputs.", "dropout.")


@dataclasses.dataclass(frozen=True)
class PaddleNLPDir:
    """A PaddleNLP model directory, read.

    Attributes:
        model_type: ``ernie``, ``bert``, ``roberta`` or ``ppminilm``.
        config: The flat config (legacy ``init_args`` merged in).
        arch: Its shape in the ERNIE layout.
        config_file: The file the config came from.
        weights: The weight file (safetensors preferred).
    """

    model_type: str
    config: dict[str, Any]
    arch: ModelArch
    config_file: Path
    weights: Path


def is_ppminilm_config(data: Any) -> bool:
    """Whether a parsed ``model_config.json`` is this project's (it has ``arch``)."""
    return isinstance(data, Mapping) and "arch" in data


def flatten_legacy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a legacy config's nested ``init_args`` dicts into one level (outer keys win).

    ``{"init_args": [{"hidden_size": 768, "init_class": "PPMiniLMModel"}],
    "init_class": "PPMiniLMForSequenceClassification", "num_classes": 2}`` becomes
    ``{"hidden_size": 768, "init_class": "PPMiniLMForSequenceClassification", ...}``.
    """
    out = {k: v for k, v in data.items() if k != "init_args"}
    for arg in data.get("init_args") or ():
        if isinstance(arg, Mapping):
            for key, value in flatten_legacy(arg).items():
                out.setdefault(key, value)
    return out


def _config_of(model_dir: Path) -> tuple[dict[str, Any], Path]:
    modern = model_dir / PADDLENLP_CONFIG_FILE
    if modern.is_file():
        data = read_json_file(modern, ModelFormatError)
        if not isinstance(data, dict):
            raise ModelFormatError(f"{modern}: expected a JSON object")
        return data, modern
    legacy = model_dir / MODEL_CONFIG_FILE
    if legacy.is_file():
        data = read_json_file(legacy, ModelFormatError)
        if isinstance(data, dict) and not is_ppminilm_config(data):
            return flatten_legacy(data), legacy
    found = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    raise ModelFormatError(
        f"{model_dir}: not a model directory; expected this project's {MODEL_CONFIG_FILE} (with "
        f"'arch') or a PaddleNLP save_pretrained directory ({PADDLENLP_CONFIG_FILE}, or a legacy "
        f"{MODEL_CONFIG_FILE} with init_args) with weights; found {found or 'nothing'}"
    )


def model_type_of(config: Mapping[str, Any], where: str) -> str:
    """The model family named by a config (``model_type``, else the class name).

    Raises:
        ModelFormatError: If it names none of :data:`SUPPORTED_MODEL_TYPES`.
    """
    names = [str(config.get("model_type") or "")]
    names += [str(a) for a in config.get("architectures") or ()]
    names.append(str(config.get("init_class") or ""))
    for name in names:
        low = name.lower()
        for prefix, family in _CLASS_PREFIXES.items():
            if low.startswith(prefix):
                return family
    raise ModelFormatError(
        f"{where}: model type {names[0] or names[1:]!r} is not supported; expected one of "
        f"{SUPPORTED_MODEL_TYPES} (field 'model_type' or 'architectures')"
    )


def _require(config: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in config:
        raise ModelFormatError(f"{where}: missing field {key!r}")
    return config[key]


def arch_of(config: Mapping[str, Any], model_type: str, where: str) -> ModelArch:
    """The ERNIE-layout shape of a PaddleNLP config.

    Raises:
        ModelFormatError: On a missing field or a shape the ERNIE layout cannot run (an
            activation other than relu/gelu, a padding id other than 0).
    """
    act = str(config.get("hidden_act", "gelu"))
    if act not in _ACTIVATIONS:
        raise ModelFormatError(
            f"{where}: field 'hidden_act'={act!r}; the ERNIE layout runs {_ACTIVATIONS}"
        )
    pad = int(config.get("pad_token_id", 0) or 0)
    if pad != 0:
        raise ModelFormatError(
            f"{where}: field 'pad_token_id'={pad}; the ERNIE layout masks id 0 as padding "
            "(every supported Chinese vocabulary puts [PAD] at 0)"
        )
    eps = float(config.get("layer_norm_eps", ERNIE_LAYER_NORM_EPS))
    if eps != ERNIE_LAYER_NORM_EPS:
        logger.warning(
            "%s: layer_norm_eps %g; the ERNIE layout uses %g (outputs differ slightly)",
            where,
            eps,
            ERNIE_LAYER_NORM_EPS,
        )
    positions = int(_require(config, "max_position_embeddings", where))
    if model_type == "roberta":
        positions -= pad + 1  # see the module docstring
    try:
        return ModelArch(
            num_layers=int(_require(config, "num_hidden_layers", where)),
            hidden_size=int(_require(config, "hidden_size", where)),
            num_heads=int(_require(config, "num_attention_heads", where)),
            intermediate_size=int(_require(config, "intermediate_size", where)),
            vocab_size=int(_require(config, "vocab_size", where)),
            max_position=positions,
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            hidden_act=act,
            dropout=float(config.get("hidden_dropout_prob", 0.1)),
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: {exc}") from None


def read_paddlenlp_dir(model_dir: str | Path) -> PaddleNLPDir:
    """Read a PaddleNLP ``save_pretrained`` directory's config and find its weights.

    Raises:
        ModelFormatError: Saying what was expected and what was found.
    """
    root = Path(model_dir)
    config, source = _config_of(root)
    model_type = model_type_of(config, str(source))
    arch = arch_of(config, model_type, str(source))
    return PaddleNLPDir(model_type, config, arch, source, find_weights(root))


def _base_prefix(state: Mapping[str, Any], model_type: str) -> str:
    """The prefix of the encoder's keys (``bert.`` in a task model; empty in a base model)."""
    prefix = f"{model_type}."
    return prefix if any(k.startswith(prefix) for k in state) else ""


def ernie_encoder_state(
    state: Mapping[str, np.ndarray], source: PaddleNLPDir
) -> dict[str, np.ndarray]:
    """A PaddleNLP state dict as an ``ErnieModel`` (encoder, no prefix) state dict.

    Raises:
        ModelFormatError: If the encoder's keys are not where the family keeps them.
    """
    prefix = _base_prefix(state, source.model_type)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not key.startswith(prefix) or key.startswith(_HEAD_PREFIXES):
            continue
        name = key[len(prefix) :]
        if name.startswith(_HEAD_PREFIXES):
            continue
        out[name] = np.asarray(value)
    if "embeddings.word_embeddings.weight" not in out:
        sample = sorted(state)[:3]
        raise ModelFormatError(
            f"{source.weights}: no embeddings.word_embeddings.weight under prefix "
            f"{prefix!r} (keys start {sample}); not a {source.model_type} checkpoint?"
        )
    pad = int(source.config.get("pad_token_id", 0) or 0)
    if source.model_type == "roberta":
        table = out["embeddings.position_embeddings.weight"]
        out["embeddings.position_embeddings.weight"] = table[pad + 1 :]
    task_table = out.pop("embeddings.task_type_embeddings.weight", None)
    if task_table is not None and source.config.get("use_task_id"):
        task_id = int(source.config.get("task_id", 0) or 0)
        out["embeddings.token_type_embeddings.weight"] = (
            out["embeddings.token_type_embeddings.weight"] + task_table[task_id][None, :]
        )
    return out


def head_labels(labels: Sequence[str], num_labels: int) -> dict[str, Any]:
    """``id2label`` / ``label2id`` entries of a classifier's ``config.json``."""
    names = list(labels) or [f"LABEL_{i}" for i in range(num_labels)]
    return {
        "id2label": {i: name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
    }


#: paddlenlp class written as ``architectures`` for each of our model kinds.
ARCHITECTURES = {
    "encoder": "ErnieModel",
    "classifier": "ErnieForSequenceClassification",
    "mlm": "ErnieForMaskedLM",
}


def write_paddlenlp_config(
    out_dir: str | Path, arch: ModelArch, kind: str, labels: Sequence[str]
) -> Path | None:
    """Write ``config.json`` so ``AutoModel*.from_pretrained(out_dir)`` loads our weights.

    Args:
        out_dir: The model directory being written (weights in the ERNIE layout).
        arch: Its shape.
        kind: ``encoder``, ``classifier`` or ``mlm``.
        labels: A classifier's labels in id order (``id2label``).

    Returns:
        The file, or None for a width-pruned model (paddlenlp cannot build it; see the module
        docstring).
    """
    if arch.width < 1.0:
        return None
    from ppminilm.modeling.ernie import ernie_config

    num_labels = max(len(labels), 2)
    config = ernie_config(arch, num_labels=num_labels, **head_labels(labels, num_labels))
    config.architectures = [ARCHITECTURES[kind]]
    config.save_pretrained(str(out_dir))
    return Path(out_dir) / PADDLENLP_CONFIG_FILE


__all__ = [
    "ARCHITECTURES",
    "SUPPORTED_MODEL_TYPES",
    "PaddleNLPDir",
    "arch_of",
    "ernie_encoder_state",
    "flatten_legacy",
    "is_ppminilm_config",
    "model_type_of",
    "read_paddlenlp_dir",
    "write_paddlenlp_config",
]
