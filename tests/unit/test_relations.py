"""Relation losses against an independent NumPy reference, masking, R choices, Q/K/V capture."""

from __future__ import annotations

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.config import ModelArch
from ppminilm.modeling.ernie import build_model
from ppminilm.stages.distill.relations import (
    QKVCapture,
    RelationWeights,
    relation_distill_loss,
    split_relation_heads,
)

#: Float32 Paddle vs float64 NumPy.
REL_TOL = 1e-4
#: Loss of a student that is the teacher.
ZERO_LOSS_TOL = 1e-6
#: Pad-invariance of a real encoder (softmax sums over extra exact zeros, tiny reorderings).
PAD_TOL = 1e-5


# ----------------------------------------------------------------------------- NumPy reference


def _np_softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def _np_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    p, q = _np_softmax(p_logits), _np_softmax(q_logits)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _np_heads(x: np.ndarray, r: int) -> np.ndarray:
    """[bs, seq, H] -> array indexed [b][r][i] -> vector of size H/r (written with loops)."""
    bs, seq, hidden = x.shape
    d = hidden // r
    out = np.zeros((bs, r, seq, d))
    for b in range(bs):
        for h in range(r):
            for i in range(seq):
                out[b, h, i] = x[b, i, h * d : (h + 1) * d]
    return out


def _np_relation_kl_sum(
    s: np.ndarray, t: np.ndarray, valid: np.ndarray, r: int, kind: str
) -> float:
    """Sum of row KLs; padded keys are simply left out of each row, padded rows skipped."""
    S, T = _np_heads(s, r), _np_heads(t, r)
    ds, dt = S.shape[-1], T.shape[-1]
    bs, seq = valid.shape
    total = 0.0
    for b in range(bs):
        for i in range(seq):
            if not valid[b, i]:
                continue
            for h in range(r):
                if kind == "token":
                    keys = [j for j in range(seq) if valid[b, j]]
                    ls = np.array([S[b, h, i] @ S[b, h, j] for j in keys]) / np.sqrt(ds)
                    lt = np.array([T[b, h, i] @ T[b, h, j] for j in keys]) / np.sqrt(dt)
                elif kind == "head":
                    ls = np.array([S[b, h, i] @ S[b, g, i] for g in range(r)]) / np.sqrt(ds)
                    lt = np.array([T[b, h, i] @ T[b, g, i] for g in range(r)]) / np.sqrt(dt)
                else:  # sample: row = sample b at position i, keys = samples real at i
                    keys = [c for c in range(bs) if valid[c, i]]
                    ls = np.array([S[b, h, i] @ S[c, h, i] for c in keys]) / np.sqrt(ds)
                    lt = np.array([T[b, h, i] @ T[c, h, i] for c in keys]) / np.sqrt(dt)
                total += _np_kl(lt, ls)
    return total


def _np_loss(sq, tq, valid, r, alpha, beta) -> float:
    n_valid = int(valid.sum())
    weights = {"token": 1 - alpha - beta, "head": alpha, "sample": beta}
    loss = 0.0
    for kind, w in weights.items():
        if w:
            kl = sum(_np_relation_kl_sum(s, t, valid, r, kind) for s, t in zip(sq, tq))
            loss += w * kl / (r * n_valid)
    return loss


# ----------------------------------------------------------------------------- helpers


def _random_qkv(rng: np.random.Generator, bs: int, seq: int, hidden: int) -> list[np.ndarray]:
    return [rng.normal(size=(bs, seq, hidden)).astype("float32") for _ in range(3)]


def _paddle_loss(sq, tq, valid, r, alpha, beta):
    loss, parts = relation_distill_loss(
        tuple(paddle.to_tensor(x) for x in sq),
        tuple(paddle.to_tensor(x) for x in tq),
        paddle.to_tensor(valid),
        r,
        RelationWeights(alpha, beta),
    )
    return float(loss.item()), {k: float(v.item()) for k, v in parts.items()}


VALID = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (0.2, 0.3), (0.0, 0.0), (1.0, 0.0)])
def test_loss_matches_numpy_reference(alpha: float, beta: float) -> None:
    rng = np.random.default_rng(0)
    # Student hidden 8, teacher hidden 12, R 4: d' is 2 vs 3, relations have equal shapes.
    sq, tq = _random_qkv(rng, 3, 5, 8), _random_qkv(rng, 3, 5, 12)
    got, _ = _paddle_loss(sq, tq, VALID, 4, alpha, beta)
    want = _np_loss(sq, tq, VALID, 4, alpha, beta)
    assert got == pytest.approx(want, rel=REL_TOL)
    assert got > 0


def test_zero_weight_kinds_are_skipped_and_parts_reported() -> None:
    rng = np.random.default_rng(1)
    sq, tq = _random_qkv(rng, 3, 5, 8), _random_qkv(rng, 3, 5, 8)
    _, parts = _paddle_loss(sq, tq, VALID, 2, 0.0, 1.0)
    assert set(parts) == {"sample"}
    _, parts = _paddle_loss(sq, tq, VALID, 2, 0.2, 0.3)
    assert set(parts) == {"token", "head", "sample"}


def test_appending_padding_leaves_loss_unchanged() -> None:
    rng = np.random.default_rng(2)
    sq, tq = _random_qkv(rng, 3, 5, 8), _random_qkv(rng, 3, 5, 12)
    base, _ = _paddle_loss(sq, tq, VALID, 4, 0.2, 0.5)
    # Three extra positions of large garbage values, padding in every sample.
    pad = 3
    sq2 = [np.concatenate([x, 50 * rng.normal(size=(3, pad, 8)).astype("float32")], 1) for x in sq]
    tq2 = [np.concatenate([x, 50 * rng.normal(size=(3, pad, 12)).astype("float32")], 1) for x in tq]
    valid2 = np.concatenate([VALID, np.zeros((3, pad), dtype=bool)], 1)
    padded, _ = _paddle_loss(sq2, tq2, valid2, 4, 0.2, 0.5)
    assert padded == pytest.approx(base, rel=REL_TOL)


def test_teacher_equal_to_student_gives_zero_loss() -> None:
    rng = np.random.default_rng(3)
    q = _random_qkv(rng, 3, 5, 8)
    loss, _ = _paddle_loss(q, q, VALID, 4, 0.2, 0.3)
    assert abs(loss) < ZERO_LOSS_TOL


def test_bad_relation_heads_and_empty_batch_are_errors() -> None:
    with pytest.raises(ValueError, match="must divide the hidden size 8"):
        split_relation_heads(paddle.zeros([2, 3, 8]), 3)
    rng = np.random.default_rng(4)
    sq = _random_qkv(rng, 2, 3, 8)
    with pytest.raises(ValueError, match="no non-padding token"):
        _paddle_loss(sq, sq, np.zeros((2, 3), dtype=bool), 2, 0.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        RelationWeights(0.7, 0.6)


# ----------------------------------------------------------------------------- real models

TINY = ModelArch(
    num_layers=2,
    hidden_size=16,
    num_heads=4,
    intermediate_size=32,
    vocab_size=50,
    max_position=32,
    dropout=0.0,
)
TINY_TEACHER = ModelArch(
    num_layers=3,
    hidden_size=24,
    num_heads=4,
    intermediate_size=48,
    vocab_size=50,
    max_position=32,
    dropout=0.0,
    hidden_act="gelu",
)


def _ids(rng: np.random.Generator, lengths: list[int], seq: int) -> np.ndarray:
    ids = np.zeros((len(lengths), seq), dtype="int64")  # 0 = [PAD]
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, 50, size=n)
    return ids


def _model_loss(student, teacher, ids: np.ndarray, r: int) -> float:
    s_cap, t_cap = QKVCapture(student, 2), QKVCapture(teacher, 2, stop_early=True)
    try:
        inputs = {
            "input_ids": paddle.to_tensor(ids),
            "token_type_ids": paddle.zeros(ids.shape, dtype="int64"),
        }
        with paddle.no_grad():
            loss, _ = relation_distill_loss(
                s_cap(**inputs),
                t_cap(**inputs),
                paddle.to_tensor(ids != 0),
                r,
                RelationWeights(0.2, 0.5),
            )
        return float(loss.item())
    finally:
        s_cap.remove()
        t_cap.remove()


def test_relation_heads_equal_to_model_heads_and_padding_with_real_models() -> None:
    paddle.seed(0)
    student, teacher = build_model(TINY), build_model(TINY_TEACHER)
    student.eval()
    teacher.eval()
    rng = np.random.default_rng(5)
    ids = _ids(rng, [6, 4, 2], 6)
    # R = 4 is the models' own head count (crashes upstream).
    loss = _model_loss(student, teacher, ids, 4)
    assert np.isfinite(loss) and loss > 0
    padded = np.concatenate([ids, np.zeros((3, 4), dtype="int64")], axis=1)
    assert _model_loss(student, teacher, padded, 4) == pytest.approx(loss, rel=PAD_TOL)
    # Teacher distilled onto itself: ~0.
    assert abs(_model_loss(teacher, teacher, ids, 8)) < ZERO_LOSS_TOL


def test_capture_stops_teacher_early_and_rejects_bad_layer() -> None:
    teacher = build_model(TINY_TEACHER)
    calls: list[int] = []
    last_attn = teacher.encoder.layers[2].self_attn
    handle = last_attn.q_proj.register_forward_post_hook(lambda *a: calls.append(1))
    cap = QKVCapture(teacher, 1, stop_early=True)
    q, _k, v = cap(input_ids=paddle.to_tensor(_ids(np.random.default_rng(6), [3], 4)))
    assert list(q.shape) == [1, 4, 24] and list(v.shape) == [1, 4, 24]
    assert not calls, "layers above the captured one ran although stop_early was set"
    handle.remove()
    cap.remove()
    with pytest.raises(ValueError, match="out of range"):
        QKVCapture(teacher, 4)
