"""Head/neuron importance against a reference computed the upstream (PaddleSlim) way.

The reference below is written from PaddleSlim 2.6.0's ``nlp_utils.compute_neuron_head_importance``
as the PP-MiniLM example calls it: gradients are never cleared between batches (each batch adds
``|accumulated gradient|``), and the model's mode is left as loading left it (train mode: dropout
on). Ours clears per batch and scores in eval mode, on a train sample instead of dev (see
:mod:`ppminilm.stages.prune.importance`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import apply_dynabert_forward
from ppminilm.config import FinetuneConfig
from ppminilm.data import load_task_dir, sample_examples
from ppminilm.data.tokenizer import load_tokenizer
from ppminilm.modeling.ernie import encoder_layers
from ppminilm.modeling.saved import load_model
from ppminilm.stages.finetune import encode_split, run_finetune
from ppminilm.stages.prune.importance import compute_importance
from ppminilm.training.loop import iterate_batches
from tests.tiny import TINY_ARCH, TINY_SEQ

pytestmark = pytest.mark.integration

#: Width 0.75 keeps 3 of the 4 heads and 48 of the 64 FFN neurons of the tiny model.
KEEP_HEADS, KEEP_NEURONS = 3, 48
#: Measured (local_reviews, 60 fine-tuning steps, 8 batches of 16): accumulation alone changes
#: no kept head and 1 of 96 kept neurons (agreement 1.00 / 0.98).
MIN_HEAD_AGREEMENT_ACCUMULATION = 5 / 6
MIN_NEURON_AGREEMENT_ACCUMULATION = 0.9


def upstream_importance(
    model: paddle.nn.Layer, batches: list[dict[str, np.ndarray]], train_mode: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Importance as PaddleSlim computes it: no gradient clearing, mode as given."""
    apply_dynabert_forward(model)
    model.train() if train_mode else model.eval()
    layers = encoder_layers(model)
    mask = paddle.ones([len(layers), layers[0].self_attn.num_heads], dtype="float32")
    mask.stop_gradient = False
    heads = np.zeros(mask.shape)
    neurons = [np.zeros(layer.linear1.weight.shape[1]) for layer in layers]
    for batch in batches:
        logits = model(
            input_ids=paddle.to_tensor(batch["input_ids"]),
            token_type_ids=paddle.to_tensor(batch["token_type_ids"]),
            attention_mask=[None, mask],
        )
        paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(batch["labels"])).backward()
        heads += np.abs(mask.grad.numpy())  # the accumulated gradient, every batch
        for layer, score in zip(layers, neurons, strict=True):
            w1, b1, w2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight
            score += np.abs((w1.numpy() * w1.grad.numpy()).sum(0) + b1.numpy() * b1.grad.numpy())
            score += np.abs((w2.numpy() * w2.grad.numpy()).sum(1))
    model.clear_gradients()
    model.eval()
    return heads, neurons


def agreement(a: np.ndarray | list[np.ndarray], b: np.ndarray | list[np.ndarray], k: int) -> float:
    """Share of the top-``k`` per layer that two scorings keep in common."""
    kept_a = [set(np.argsort(-np.asarray(r), kind="stable")[:k]) for r in a]
    kept_b = [set(np.argsort(-np.asarray(r), kind="stable")[:k]) for r in b]
    return sum(len(x & y) for x, y in zip(kept_a, kept_b, strict=True)) / (k * len(kept_a))


@pytest.fixture(scope="module")
def scored(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A briefly fine-tuned tiny classifier (dropout 0.1) and 8 batches of a train sample."""
    task_dir = local_data_dir / "tasks" / "local_reviews"
    out = tmp_path_factory.mktemp("importance") / "ft"
    cfg = FinetuneConfig(
        task="local_reviews",
        batch_size=16,
        learning_rate=1e-3,
        max_steps=60,
        max_seq_len=TINY_SEQ,
        eval_steps=1000,
        logging_steps=1000,
    )
    arch = TINY_ARCH.replace(dropout=0.1)
    run_finetune(task_dir, "scratch", out, cfg, tokenizer_dir=local_data_dir / "vocab", arch=arch)
    data = load_task_dir(task_dir)
    sample = sample_examples(data.train, 128, seed=42)
    enc = encode_split(load_tokenizer(out), sample, data.spec, data.labels, TINY_SEQ)
    return out, list(iterate_batches(enc, 16))


def test_same_formula_when_the_differences_are_neutralised(scored) -> None:
    model_dir, batches = scored
    model, _ = load_model(model_dir)
    ours = compute_importance(model, batches[:1])
    reference = upstream_importance(model, batches[:1], train_mode=False)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-5, atol=1e-10)
    for a, b in zip(ours[1], reference[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_kept_heads_agree_despite_gradient_accumulation(scored) -> None:
    model_dir, batches = scored
    model, _ = load_model(model_dir)
    ours = compute_importance(model, batches)
    reference = upstream_importance(model, batches, train_mode=False)
    assert not np.allclose(ours[0], reference[0])  # the scores do differ...
    assert agreement(ours[0], reference[0], KEEP_HEADS) >= MIN_HEAD_AGREEMENT_ACCUMULATION
    assert agreement(ours[1], reference[1], KEEP_NEURONS) >= MIN_NEURON_AGREEMENT_ACCUMULATION


def test_train_mode_makes_the_upstream_ranking_depend_on_the_dropout_seed(scored) -> None:
    """The measured difference in train mode is dropout noise: upstream's own ranking moves
    with the dropout seed, ours (eval mode) does not."""
    model_dir, batches = scored
    model, _ = load_model(model_dir)
    paddle.seed(1)
    first = upstream_importance(model, batches, train_mode=True)
    paddle.seed(2)
    second = upstream_importance(model, batches, train_mode=True)
    assert agreement(first[1], second[1], KEEP_NEURONS) < 1.0
    ours_a, ours_b = compute_importance(model, batches), compute_importance(model, batches)
    np.testing.assert_array_equal(ours_a[0], ours_b[0])
    assert agreement(ours_a[1], ours_b[1], KEEP_NEURONS) == 1.0
