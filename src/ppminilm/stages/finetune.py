"""Stage 2: fine-tune one (task, batch size, learning rate) grid point on a classification task.

The model starts from a saved model directory (an encoder from distillation, an MLM teacher or
a classifier) or from random initialisation (``scratch``), trains with AdamW + linear warm-up,
evaluates on the dev split every ``eval_steps`` and at each epoch end, and saves the best dev
checkpoint as a ``classifier`` model directory (see :mod:`ppminilm.modeling.saved`).

Training uses the whole train split; selection (the best checkpoint) sees dev only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle, set_cpu_threads, set_seed
from ppminilm.config import FinetuneConfig, ModelArch
from ppminilm.contracts import EvalPoint, FinetuneResult
from ppminilm.data import DataError, TaskData, TaskSpec, load_task_dir
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import (
    MODEL_CONFIG_FILE,
    ModelFormatError,
    ModelInfo,
    load_model,
    read_model_info,
    save_model,
)
from ppminilm.modeling.weights import WEIGHT_FILES, find_weights
from ppminilm.training.loop import (
    StepLogger,
    accuracy,
    iterate_batches,
    majority_accuracy,
    make_optimizer,
    num_batches,
    predict_logits,
    to_tensors,
)

logger = logging.getLogger(__name__)

#: ``init_model`` value (optionally followed by ``:<ModelArch JSON>``) for random initialisation.
SCRATCH = "scratch"
#: Batch size used for dev-set evaluation (no gradients, so larger than training batches).
EVAL_BATCH_SIZE = 128


@dataclass
class InitSpec:
    """Where the weights of a fine-tuning run come from.

    Attributes:
        model_dir: Saved model directory, or None for random initialisation.
        arch: Architecture for random initialisation (None when loading ``model_dir``).
    """

    model_dir: Path | None
    arch: ModelArch | None

    @property
    def description(self) -> str:
        """Short text for logs and provenance."""
        return str(self.model_dir) if self.model_dir else f"{SCRATCH} (random init)"


def parse_init(init_model: str | Path | None, arch: ModelArch | None = None) -> InitSpec:
    """Interpret the ``init_model`` argument of :func:`run_finetune`.

    Args:
        init_model: A saved model directory (ours, or a PaddleNLP ``save_pretrained``
            directory of an ERNIE/BERT/RoBERTa/PP-MiniLM model); ``"scratch"`` or None (random
            init with ``arch``); or ``"scratch:<json ModelArch>"`` (random init with that
            shape).
        arch: Architecture for ``scratch`` without JSON.

    Returns:
        The parsed spec.

    Raises:
        ValueError: If scratch is asked without an architecture or the JSON is malformed.
        ModelFormatError: If the directory is not a saved model (names the missing file).
    """
    text = "" if init_model is None else str(init_model)
    if text == "" or text == SCRATCH:
        if arch is None:
            raise ValueError(
                "init model 'scratch' needs an architecture: pass arch= (or "
                "'scratch:<ModelArch JSON>')"
            )
        return InitSpec(None, arch)
    if text.startswith(SCRATCH + ":"):
        raw = text[len(SCRATCH) + 1 :]
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"init model {text!r}: the architecture after 'scratch:' is not "
                f"valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        return InitSpec(None, ModelArch.from_dict(data))
    path = Path(text)
    if not path.is_dir():
        raise FileNotFoundError(
            f"init model {path}: no such directory (expected a saved model dir with "
            f"{MODEL_CONFIG_FILE} + {' or '.join(WEIGHT_FILES)}, a PaddleNLP save_pretrained "
            "dir, or 'scratch')"
        )
    read_model_info(path)  # raises ModelFormatError naming the file
    find_weights(path)
    return InitSpec(path, None)


def _load_tokenizer(init: InitSpec, tokenizer_dir: str | Path | None) -> tuple[Any, Path]:
    from ppminilm.data.tokenizer import load_tokenizer

    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else init.model_dir
    if tok_dir is None:
        raise ValueError(
            "random init ('scratch') needs tokenizer_dir (a directory with "
            "vocab.txt, e.g. the data stage's vocab/)"
        )
    if not (tok_dir / "vocab.txt").is_file():
        raise ModelFormatError(f"{tok_dir}: no vocab.txt (expected a tokenizer directory)")
    return load_tokenizer(tok_dir), tok_dir


def _build_classifier(
    init: InitSpec, labels: Sequence[str], task: str, vocab: int
) -> tuple[paddle.nn.Layer, ModelInfo]:
    """Random or loaded classifier with a head for ``labels``."""
    if init.model_dir is None:
        assert init.arch is not None
        arch = init.arch
        if arch.vocab_size != vocab:
            # A scratch model's embedding table is sized to the tokenizer it will read.
            logger.info(
                "scratch model: vocab_size %d -> %d (tokenizer size)", arch.vocab_size, vocab
            )
            arch = arch.replace(vocab_size=vocab)
        model = build_model(arch, "classifier", num_classes=len(labels))
        return model, ModelInfo(arch=arch, kind="classifier", task=task, labels=list(labels))
    saved = read_model_info(init.model_dir)
    if vocab > saved.arch.vocab_size:
        raise ModelFormatError(
            f"{init.model_dir}: tokenizer has {vocab} tokens but the model's embedding table "
            f"(vocab_size in {MODEL_CONFIG_FILE}) has {saved.arch.vocab_size}"
        )
    model, info = load_model(init.model_dir, kind="classifier")
    keep_head = saved.kind == "classifier" and list(saved.labels) == list(labels)
    if not keep_head:
        # A head trained for other labels (or no head at all) is not a starting point: a fresh
        # one with this task's label count replaces it.
        hidden = info.arch.hidden_size
        model.classifier = paddle.nn.Linear(hidden, len(labels))
        model.num_labels = len(labels)
        if saved.kind == "classifier":
            logger.info(
                "init classifier labels %s differ from task labels %s: new head",
                saved.labels,
                list(labels),
            )
    return model, ModelInfo(arch=info.arch, kind="classifier", task=task, labels=list(labels))


def encode_split(
    tokenizer: Any,
    examples: Sequence[Mapping[str, Any]],
    task: str | TaskSpec,
    labels: Sequence[str],
    max_seq_len: int,
) -> dict[str, np.ndarray]:
    """Encode examples into model inputs plus integer ``labels``.

    Args:
        tokenizer: A tokenizer from :func:`ppminilm.data.tokenizer.load_tokenizer`.
        examples: Labelled examples in the task's field names.
        task: Task name or spec (a custom task's spec maps its text fields).
        labels: Label strings in id order.
        max_seq_len: Sequence length (pad/truncate).

    Returns:
        ``input_ids``, ``token_type_ids`` (int64 [n, max_seq_len]) and ``labels`` (int64 [n]).
    """
    from ppminilm.data.tokenizer import encode_examples

    ids = {label: i for i, label in enumerate(labels)}
    encoded = encode_examples(tokenizer, examples, task, max_seq_len)
    out = {k: np.asarray(encoded[k], dtype="int64") for k in ("input_ids", "token_type_ids")}
    out["labels"] = np.asarray([ids[str(ex["label"])] for ex in examples], dtype="int64")
    return out


def _evaluate(model: paddle.nn.Layer, dev: Mapping[str, np.ndarray]) -> float:
    return accuracy(predict_logits(model, dev, batch_size=EVAL_BATCH_SIZE), dev["labels"])


def _snapshot(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def run_finetune(
    task_dir: str | Path,
    init_model: str | Path | None,
    out_dir: str | Path,
    cfg: FinetuneConfig,
    *,
    tokenizer_dir: str | Path | None = None,
    arch: ModelArch | None = None,
) -> FinetuneResult:
    """Fine-tune one grid point and save the best dev checkpoint.

    Args:
        task_dir: Task directory (see :mod:`ppminilm.data`); its task must equal ``cfg.task``.
        init_model: Saved model directory (encoder, MLM or classifier; a classifier head for
            other labels is replaced), ``"scratch"``/None (random init with ``arch``) or
            ``"scratch:<ModelArch JSON>"``.
        out_dir: Where the best checkpoint is saved (classifier model directory).
        cfg: Batch size, learning rate, epochs (``cfg.epochs``) or ``max_steps``, eval cadence.
        tokenizer_dir: Directory with ``vocab.txt``; default: the init model directory.
        arch: Architecture for random initialisation (its ``vocab_size`` follows the
            tokenizer).

    Returns:
        The run's result: best dev accuracy and step, majority-class accuracy, sizes, steps,
        every evaluation, the mean loss of the first/last logging window, seconds, model dir.

    Raises:
        DataError: On a missing/invalid task directory or a task other than ``cfg.task``.
        ModelFormatError: If the init model directory lacks files or does not fit.
        ValueError: On a bad init spec or configuration.
    """
    t0 = time.perf_counter()
    init = parse_init(init_model, arch)
    data: TaskData = load_task_dir(task_dir, task=cfg.task)
    tokenizer, tok_dir = _load_tokenizer(init, tokenizer_dir)
    from ppminilm.data.tokenizer import vocab_size

    set_seed(cfg.seed)
    set_cpu_threads(cfg.num_threads)
    model, info = _build_classifier(init, data.labels, data.task, vocab_size(tokenizer))
    if cfg.max_seq_len > info.arch.max_position:
        raise ValueError(
            f"FinetuneConfig.max_seq_len={cfg.max_seq_len} exceeds the model's "
            f"max_position={info.arch.max_position}"
        )
    train = encode_split(tokenizer, data.train, data.spec, data.labels, cfg.max_seq_len)
    dev = encode_split(tokenizer, data.dev, data.spec, data.labels, cfg.max_seq_len)
    majority = majority_accuracy(dev["labels"])

    per_epoch = num_batches(len(train["labels"]), cfg.batch_size)
    if cfg.max_steps > 0:
        total, epochs = cfg.max_steps, math.ceil(cfg.max_steps / per_epoch)
    else:
        total, epochs = cfg.epochs * per_epoch, cfg.epochs
    optimizer, scheduler = make_optimizer(
        model,
        cfg.learning_rate,
        total,
        warmup_proportion=cfg.warmup_proportion,
        weight_decay=cfg.weight_decay,
    )
    logger.info(
        "fine-tune %s from %s: %d train / %d dev, bs %d, lr %g, %d epoch(s) = %d "
        "steps; dev majority-class acc %.4f",
        data.task,
        init.description,
        len(train["labels"]),
        len(dev["labels"]),
        cfg.batch_size,
        cfg.learning_rate,
        epochs,
        total,
        majority,
    )

    step_log = StepLogger(total=total, every=cfg.logging_steps, name=f"finetune {data.task}")
    losses: list[float] = []
    evals: list[EvalPoint] = []
    best: dict[str, Any] = {"acc": -1.0, "step": 0, "state": None}

    def evaluate(step: int, epoch: int) -> None:
        acc = _evaluate(model, dev)
        evals.append(EvalPoint(step=step, epoch=epoch, dev_acc=acc))
        improved = acc > best["acc"]  # strict: ties keep the earlier checkpoint
        if improved:
            best.update(acc=acc, step=step, state=_snapshot(model))
        logger.info(
            "eval step %d/%d (epoch %d) | dev acc %.4f | best %.4f @ step %d",
            step,
            total,
            epoch,
            acc,
            best["acc"],
            best["step"],
        )

    model.train()
    step = 0
    for epoch in range(1, epochs + 1):
        for batch in iterate_batches(train, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch):
            t = to_tensors(batch)
            logits = model(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"])
            loss = paddle.nn.functional.cross_entropy(logits, t["labels"])
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.clear_grad()
            step += 1
            losses.append(float(loss))
            step_log.update(step, losses[-1], lr=optimizer.get_lr())
            if step % cfg.eval_steps == 0:
                evaluate(step, epoch)
            if step >= total:
                break
        if not evals or evals[-1].step != step:
            evaluate(step, epoch)
        if step >= total:
            break

    model.set_state_dict(best["state"])
    window = max(1, min(cfg.logging_steps, len(losses) // 4))
    save_model(
        model,
        out_dir,
        info,
        tokenizer_dir=tok_dir,
        provenance={
            "stage": "finetune",
            "config": cfg.to_dict(),
            "parent": init.description,
            "task_dir": str(task_dir),
            "best_step": best["step"],
            "dev_acc": best["acc"],
            "majority_acc": majority,
            "evals": [e.to_dict() for e in evals],
        },
    )
    result = FinetuneResult(
        task=data.task,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        best_dev_acc=best["acc"],
        best_step=best["step"],
        majority_acc=majority,
        train_examples=len(train["labels"]),
        dev_examples=len(dev["labels"]),
        steps=step,
        epochs=epochs,
        init=init.description,
        evals=tuple(evals),
        train_loss_start=float(np.mean(losses[:window])),
        train_loss_end=float(np.mean(losses[-window:])),
        seconds=round(time.perf_counter() - t0, 2),
        model_dir=str(out_dir),
    )
    logger.info(
        "fine-tune %s bs %d lr %g: best dev acc %.4f at step %d (majority %.4f), %.1f s",
        data.task,
        cfg.batch_size,
        cfg.learning_rate,
        best["acc"],
        best["step"],
        majority,
        result.seconds,
    )
    return result


__all__ = ["SCRATCH", "DataError", "InitSpec", "encode_split", "parse_init", "run_finetune"]
