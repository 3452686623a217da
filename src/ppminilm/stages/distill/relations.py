"""MiniLMv2 self-attention relation losses plus PP-MiniLM's sample-to-sample relations.

The student learns the teacher's *relations* between its query, key and value vectors rather
than the vectors themselves, so teacher and student hidden sizes may differ: both are re-split
into the same number ``R`` of relation heads (``d' = H / R`` differs, the relation shapes do
not). For each of Q, K and V, three relations are compared with KL(teacher || student):

* token relation ``[bs, R, seq, seq]``: how each token relates to every other token;
* head relation ``[bs, seq, R, R]``: how the relation heads of one token relate;
* sample relation ``[seq, R, bs, bs]``: how the samples of the batch relate at one position.

Each relation is ``softmax(x x^T / sqrt(d'))`` over its last axis.

Padding (where upstream's masks are no-ops, this module masks properly):

* a padded *key* never receives probability mass: its logit is replaced by ``MASK_LOGIT``
  before the softmax (token relation: padded tokens of the same sample; sample relation: the
  samples that are padding at that position; head relation: heads of one token, never padded);
* a padded *query row* (a row whose token is padding) contributes nothing to the loss.

Normalisation: upstream divides the summed KL of Q+K+V by ``R * seq * bs``, the number of
query rows. Here the divisor is ``R * n_valid`` with ``n_valid`` the number of non-padding
tokens in the batch, i.e. the number of rows that actually count. For the token and sample
relations each valid (sample, position) pair owns ``R`` rows; for the head relation each valid
token owns ``R`` rows of length ``R``. The loss is therefore a mean KL per valid row, and is
unchanged when pad tokens are appended to every sequence.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from ppminilm.compat.paddle import paddle

#: Logit given to masked keys: finite (so 0 * log p stays 0 instead of NaN) and far below any
#: real score, so exp() underflows to exactly 0 in float32.
MASK_LOGIT = -1e9

#: Relation kinds in the order their weights are given.
RELATION_KINDS = ("token", "head", "sample")


@dataclass
class RelationWeights:
    """Weights of the three relation kinds: ``(1 - alpha - beta)``, ``alpha``, ``beta``."""

    alpha: float = 0.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if (
            not (0.0 <= self.alpha <= 1.0 and 0.0 <= self.beta <= 1.0)
            or self.alpha + self.beta > 1.0 + 1e-9
        ):
            raise ValueError(
                f"relation weights need 0 <= alpha, beta and alpha + beta <= 1; "
                f"got alpha={self.alpha}, beta={self.beta}"
            )

    def as_dict(self) -> dict[str, float]:
        """Weight per relation kind."""
        return {
            "token": max(0.0, 1.0 - self.alpha - self.beta),
            "head": self.alpha,
            "sample": self.beta,
        }


def split_relation_heads(x: paddle.Tensor, num_relation_heads: int) -> paddle.Tensor:
    """Re-split ``[bs, seq, H]`` projections into ``[bs, R, seq, H/R]`` relation heads.

    Works for any ``R`` dividing ``H``, including the model's own head count.

    Raises:
        ValueError: If ``R`` does not divide ``H``.
    """
    bs, seq, hidden = x.shape
    if hidden % num_relation_heads:
        raise ValueError(
            f"num_relation_heads={num_relation_heads} must divide the hidden size "
            f"{hidden} of the captured projection"
        )
    x = paddle.reshape(x, [bs, seq, num_relation_heads, hidden // num_relation_heads])
    return paddle.transpose(x, [0, 2, 1, 3])


def _relation_log_probs(x: paddle.Tensor, key_mask: paddle.Tensor | None) -> paddle.Tensor:
    """``log_softmax(x x^T / sqrt(d'))`` over the last axis, masked keys at ``MASK_LOGIT``."""
    scores = paddle.matmul(x, x, transpose_y=True) / math.sqrt(x.shape[-1])
    if key_mask is not None:
        scores = paddle.where(key_mask, scores, paddle.full_like(scores, MASK_LOGIT))
    return paddle.nn.functional.log_softmax(scores, axis=-1)


def _row_kl_sum(
    log_p_teacher: paddle.Tensor, log_p_student: paddle.Tensor, row_weight: paddle.Tensor
) -> paddle.Tensor:
    """Sum over rows of ``row_weight * KL(teacher_row || student_row)``."""
    p_teacher = paddle.exp(log_p_teacher)
    row_kl = paddle.sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)
    return paddle.sum(row_kl * row_weight)


def relation_kl(
    student: paddle.Tensor,
    teacher: paddle.Tensor,
    valid: paddle.Tensor,
    num_relation_heads: int,
    kind: str,
) -> paddle.Tensor:
    """Summed KL(teacher || student) of one relation kind for one projection (Q, K or V).

    Args:
        student: Student projection ``[bs, seq, H_s]``.
        teacher: Teacher projection ``[bs, seq, H_t]`` (no gradient needed).
        valid: Bool ``[bs, seq]``, True for real tokens, False for padding.
        num_relation_heads: ``R``; must divide ``H_s`` and ``H_t``.
        kind: ``token``, ``head`` or ``sample``.

    Returns:
        A scalar: KL summed over all valid query rows (not yet normalised).
    """
    # Relations are computed in float32 even under AMP: MASK_LOGIT and exp() need the range.
    s = split_relation_heads(student.astype("float32"), num_relation_heads)  # [bs, R, seq, d's]
    t = split_relation_heads(teacher.astype("float32"), num_relation_heads)
    row_valid = valid.astype("float32")
    if kind == "token":
        key_mask = valid.unsqueeze([1, 2])  # [bs, 1, 1, seq]: key token j of the same sample
        weight = row_valid.unsqueeze(1)  # [bs, 1, seq]: rows of padded query tokens drop out
        return _row_kl_sum(
            _relation_log_probs(t, key_mask), _relation_log_probs(s, key_mask), weight
        )
    if kind == "head":
        s = paddle.transpose(s, [0, 2, 1, 3])  # [bs, seq, R, d']
        t = paddle.transpose(t, [0, 2, 1, 3])
        weight = row_valid.unsqueeze(2)  # [bs, seq, 1] -> every head row of a valid token
        return _row_kl_sum(_relation_log_probs(t, None), _relation_log_probs(s, None), weight)
    if kind == "sample":
        s = paddle.transpose(s, [2, 1, 0, 3])  # [seq, R, bs, d']
        t = paddle.transpose(t, [2, 1, 0, 3])
        valid_t = paddle.transpose(valid, [1, 0])  # [seq, bs]
        key_mask = valid_t.unsqueeze([1, 2])  # [seq, 1, 1, bs]: samples real at this position
        weight = valid_t.astype("float32").unsqueeze(1)  # [seq, 1, bs]
        return _row_kl_sum(
            _relation_log_probs(t, key_mask), _relation_log_probs(s, key_mask), weight
        )
    raise ValueError(f"unknown relation kind {kind!r}; expected one of {RELATION_KINDS}")


def relation_distill_loss(
    student_qkv: tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor],
    teacher_qkv: tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor],
    valid: paddle.Tensor,
    num_relation_heads: int,
    weights: RelationWeights,
) -> tuple[paddle.Tensor, dict[str, paddle.Tensor]]:
    """The PP-MiniLM distillation loss from captured Q/K/V projections.

    ``loss = sum_kind w_kind * (L_q + L_k + L_v) / (R * n_valid)``; kinds with weight 0 are not
    computed at all (the published run uses only sample relations).

    Args:
        student_qkv: Student ``(q, k, v)``, each ``[bs, seq, H_s]``.
        teacher_qkv: Teacher ``(q, k, v)``, each ``[bs, seq, H_t]``.
        valid: Bool ``[bs, seq]``, True for real tokens.
        num_relation_heads: ``R``.
        weights: Relation kind weights.

    Returns:
        ``(loss, parts)``: the scalar loss tensor and the normalised, detached value of each
        computed kind (tensors, so logging costs no device sync unless it reads them).

    Raises:
        ValueError: If the batch has no valid token or shapes disagree.
    """
    if list(valid.shape) != list(student_qkv[0].shape[:2]) or list(valid.shape) != list(
        teacher_qkv[0].shape[:2]
    ):
        raise ValueError(
            f"mask shape {list(valid.shape)} does not match student "
            f"{list(student_qkv[0].shape)} / teacher {list(teacher_qkv[0].shape)}"
        )
    n_valid = int(paddle.sum(valid.astype("int64")).item())
    if n_valid == 0:
        raise ValueError("batch has no non-padding token; cannot compute relation loss")
    norm = float(num_relation_heads * n_valid)
    total = paddle.zeros([], dtype="float32")
    parts: dict[str, paddle.Tensor] = {}
    for kind, w in weights.as_dict().items():
        if w == 0.0:
            continue
        kind_loss = (
            sum(
                (
                    relation_kl(s, t.detach(), valid, num_relation_heads, kind)
                    for s, t in zip(student_qkv, teacher_qkv, strict=True)
                ),
                start=paddle.zeros([], dtype="float32"),
            )
            / norm
        )
        parts[kind] = kind_loss.detach()
        total = total + w * kind_loss
    return total, parts


# --------------------------------------------------------------------------- Q/K/V capture


class _StopForwardSignal(Exception):  # noqa: N818 -- control flow, not an error
    """Raised from a hook to skip the rest of a forward pass whose outputs are not needed."""


def attention_layers(model: paddle.nn.Layer) -> list[paddle.nn.Layer]:
    """The self-attention blocks of an ERNIE/BERT/RoBERTa-style paddlenlp model.

    Accepts the base model (``ErnieModel``), a task model wrapping it (``.ernie``, ``.roberta``
    via paddlenlp's ``base_model``) or a ``paddle.DataParallel`` around either.

    Raises:
        ValueError: If the model has no ``encoder.layers[i].self_attn`` with q/k/v projections.
    """
    model = getattr(model, "_layers", model)  # unwrap paddle.DataParallel
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(model).__name__} has no encoder.layers; expected a paddlenlp "
            "ERNIE/BERT/RoBERTa-style model"
        )
    out = []
    for i, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj")):
            raise ValueError(
                f"{type(model).__name__}.encoder.layers[{i}] has no self_attn with "
                "q_proj/k_proj/v_proj"
            )
        out.append(attn)
    return out


class QKVCapture:
    """Captures the Q/K/V projections of one transformer layer with forward post-hooks.

    The model is not modified: hooks on ``self_attn.{q,k,v}_proj`` record their outputs
    (``[bs, seq, H]``, before the split into the model's own heads). With ``stop_early`` the
    forward pass is abandoned once V is captured, which skips the layers above (and the
    attention of the captured layer itself): used for the frozen teacher, whose upper layers
    would only cost time.

    Args:
        model: The model (see :func:`attention_layers`).
        layer: 1-based layer index.
        stop_early: Abort the forward pass after the capture.

    Raises:
        ValueError: If ``layer`` is out of range.
    """

    NAMES = ("q", "k", "v")

    def __init__(self, model: paddle.nn.Layer, layer: int, *, stop_early: bool = False) -> None:
        attns = attention_layers(model)
        if not 1 <= layer <= len(attns):
            raise ValueError(
                f"layer {layer} is out of range: the model has {len(attns)} layers "
                "(layers are 1-based)"
            )
        self.model = model
        self.stop_early = stop_early
        self.hidden_size = int(attns[layer - 1].q_proj.weight.shape[1])
        self._outputs: dict[str, paddle.Tensor] = {}
        attn = attns[layer - 1]
        self._handles = [
            getattr(attn, f"{name}_proj").register_forward_post_hook(self._hook(name))
            for name in self.NAMES
        ]

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def hook(_layer: paddle.nn.Layer, _inputs: object, output: paddle.Tensor) -> None:
            self._outputs[name] = output
            if self.stop_early and len(self._outputs) == len(self.NAMES):
                raise _StopForwardSignal

        return hook

    def __call__(
        self, **inputs: paddle.Tensor
    ) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """Run the model on ``inputs`` and return the captured ``(q, k, v)``."""
        self._outputs = {}
        with contextlib.suppress(_StopForwardSignal):
            self.model(**inputs)
        missing = [n for n in self.NAMES if n not in self._outputs]
        if missing:
            raise RuntimeError(
                f"forward pass did not reach the captured layer's {missing} projections"
            )
        q, k, v = (self._outputs[n] for n in self.NAMES)
        self._outputs = {}
        return q, k, v

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
