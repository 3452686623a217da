"""ERNIE-layout model builders and width shrinking (paddlenlp ``ErnieModel`` and heads).

PP-MiniLM is an ERNIE-layout encoder: token, position and 2 segment embeddings, post-LN
transformer layers built on ``paddle.nn.MultiHeadAttention`` (``q_proj``, ``k_proj``,
``v_proj``, ``out_proj``) and ``linear1``/``linear2`` FFN, and a tanh pooler.
"""

from __future__ import annotations

from typing import Any

from ppminilm.compat import paddlenlp
from ppminilm.compat.paddle import paddle
from ppminilm.config import ModelArch

#: Model kinds a saved model can be built as.
KINDS = ("encoder", "classifier", "mlm")


def encoder_param_count(model: paddle.nn.Layer) -> int:
    """Count the parameters of a built model's encoder and pooler (no task head).

    Args:
        model: An ``ErnieModel`` or a model wrapping one as ``.ernie``.

    Returns:
        Number of scalar parameters.
    """
    base = getattr(model, "ernie", model)
    return int(sum(int(p.numel()) for p in base.parameters()))


def ernie_config(arch: ModelArch, num_labels: int = 2, **extra: Any) -> Any:
    """paddlenlp's ``ErnieConfig`` for ``arch`` (``extra``: e.g. ``id2label``)."""
    ErnieConfig = paddlenlp.module("transformers").ErnieConfig

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
        **extra,
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
    transformers = paddlenlp.module("transformers")
    ErnieForMaskedLM = transformers.ErnieForMaskedLM
    ErnieForSequenceClassification = transformers.ErnieForSequenceClassification
    ErnieModel = transformers.ErnieModel

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
    if kind == "classifier" and num_classes < 2:
        raise ValueError(f"a classifier needs >= 2 classes, got {num_classes}")
    cfg = ernie_config(arch, num_labels=num_classes)
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
