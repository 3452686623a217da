"""Training utilities shared by teacher pre-training, distillation, fine-tuning and pruning.

Optimizer + schedule (AdamW, linear warm-up then linear decay, global-norm clipping, no decay on
biases and LayerNorm), mini-batching of encoded arrays, accuracy evaluation and step logging.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle
from ppminilm.progress import format_seconds, progress_bars_wanted

logger = logging.getLogger(__name__)


def make_optimizer(
    model: paddle.nn.Layer,
    learning_rate: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    warmup_proportion: float = 0.0,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> tuple[paddle.optimizer.Optimizer, paddle.optimizer.lr.LRScheduler]:
    """AdamW with linear warm-up and linear decay to zero.

    Args:
        model: Model whose parameters are trained.
        learning_rate: Peak learning rate.
        total_steps: Steps of the whole run (decay reaches 0 here).
        warmup_steps: Warm-up steps; if 0, ``warmup_proportion * total_steps`` is used.
        warmup_proportion: Share of steps used for warm-up when ``warmup_steps`` is 0.
        weight_decay: Decoupled weight decay (not applied to biases and norms).
        max_grad_norm: Global-norm gradient clip; 0 disables clipping.

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after each optimizer step.
    """
    from ppminilm.compat import paddlenlp

    LinearDecayWithWarmup = paddlenlp.module("transformers").LinearDecayWithWarmup

    if total_steps <= 0:
        raise ValueError(
            f"total_steps must be > 0, got {total_steps} (is the training split "
            "empty or the batch size larger than it?)"
        )
    warmup: int | float = warmup_steps or warmup_proportion
    scheduler = LinearDecayWithWarmup(learning_rate, total_steps, warmup)
    decay_names = {
        p.name
        for n, p in model.named_parameters()
        if not any(k in n for k in ("bias", "norm", "layer_norm"))
    }
    clip = paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm > 0 else None
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=model.parameters(),
        weight_decay=weight_decay,
        apply_decay_param_fun=lambda name: name in decay_names,
        grad_clip=clip,
    )
    return optimizer, scheduler


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch for ``n`` examples."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def iterate_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield mini-batches (dicts of NumPy arrays) over aligned arrays.

    Args:
        arrays: Equal-length arrays keyed by name (``input_ids``, ``labels``...).
        batch_size: Examples per batch.
        shuffle: Shuffle with a ``seed``-determined permutation.
        seed: Permutation seed (use the epoch number for a new order each epoch).
        drop_last: Drop the last incomplete batch.

    Raises:
        ValueError: If the arrays differ in length or are empty.
    """
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no examples to batch (empty split)")
    order = np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield {k: v[idx] for k, v in arrays.items()}


def to_tensors(batch: Mapping[str, np.ndarray]) -> dict[str, paddle.Tensor]:
    """Convert a NumPy batch to Paddle tensors."""
    return {k: paddle.to_tensor(v) for k, v in batch.items()}


@paddle.no_grad()
def predict_logits(
    model: paddle.nn.Layer, arrays: Mapping[str, np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Logits of a classifier over encoded inputs (``input_ids``, ``token_type_ids``).

    Returns:
        Array [n, num_classes].
    """
    was_training = model.training
    model.eval()
    outs = []
    inputs = {k: arrays[k] for k in ("input_ids", "token_type_ids")}
    for batch in iterate_batches(inputs, batch_size):
        t = to_tensors(batch)
        logits = model(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"])
        outs.append(logits.numpy())
    if was_training:
        model.train()
    return np.concatenate(outs, axis=0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of argmax predictions equal to the labels."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())


def majority_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent label (the floor to beat)."""
    labels = np.asarray(labels)
    return float(np.bincount(labels).max() / len(labels))


@dataclass
class StepLogger:
    """Training progress: a tqdm bar at a terminal, else a log line every ``every`` steps.

    A log line reads ``name step i/n | loss | lr | rate | ETA``; the loss is the mean since the
    previous line.
    """

    total: int
    every: int = 50
    name: str = "train"

    def __post_init__(self) -> None:
        self._t0 = time.perf_counter()
        self._loss_sum = 0.0
        self._count = 0
        self._bar: Any = None
        if progress_bars_wanted():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.name, unit="step", leave=False)

    def update(self, step: int, loss: float, lr: float | None = None, **extra: float) -> None:
        """Record one step's loss; report when ``step`` is a multiple of ``every`` or the last."""
        self._loss_sum += float(loss)
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            if step >= self.total:
                self._bar.close()
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self._t0
        rate = step / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{self.name} step {step}/{self.total}",
            f"loss {self._loss_sum / max(self._count, 1):.4f}",
        ]
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        parts += [f"{k} {v:.4f}" for k, v in extra.items()]
        parts.append(f"{rate:.2f} step/s")
        if rate > 0 and step < self.total:
            parts.append(f"ETA {format_seconds((self.total - step) / rate)}")
        if self._bar is None:
            logger.info(" | ".join(parts))
        self._loss_sum, self._count = 0.0, 0
