"""The distillation teacher: masked-language-model pre-training on the local corpus.

No pretrained Chinese teacher ships offline, so the local profile trains a small one (BERT-style
MLM: 15% of the real tokens are selected; 80% of those become ``[MASK]``, 10% a random token,
10% stay) for a few minutes on the same corpus the student is later distilled on. On the
cluster ``TeacherConfig.pretrained`` names a local paddlenlp pretrained directory
(``roberta-wwm-ext-large``) and no training happens: the directory is validated by loading it
and copied to the output.

Results are cached: an output directory holding a complete teacher trained with the same
config on the same corpus and vocab is returned as is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle, set_cpu_threads, set_seed
from ppminilm.config import TeacherConfig
from ppminilm.contracts import Provenance
from ppminilm.data.corpus import CorpusStream, corpus_fingerprint, encode_sentences
from ppminilm.data.tokenizer import load_tokenizer, vocab_size
from ppminilm.errors import UserError
from ppminilm.io import copy_dir
from ppminilm.modeling.accounting import count_params
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import (
    WEIGHTS_FILE,
    ModelInfo,
    load_pretrained,
    read_model_info,
    save_model,
)
from ppminilm.training.loop import StepLogger, make_optimizer

logger = logging.getLogger(__name__)

#: BERT's split of the selected tokens: replaced by [MASK] / by a random token / kept.
MASK_REPLACE_PROB = 0.8
RANDOM_REPLACE_PROB = 0.1
#: Loss is ignored at this label (paddle's cross-entropy default).
IGNORE_INDEX = -100


def mask_tokens(
    input_ids: np.ndarray,
    rng: np.random.RandomState,
    *,
    mask_prob: float,
    mask_id: int,
    special_ids: set[int],
    vocab: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select and corrupt tokens for MLM (BERT's 80/10/10 rule).

    Args:
        input_ids: ``[bs, seq]`` ids.
        rng: Random state (the caller seeds it per step for reproducibility).
        mask_prob: Share of real (non-special) tokens selected.
        mask_id: Id of ``[MASK]``.
        special_ids: Ids never selected nor drawn as random replacements (pad, cls, sep...).
        vocab: Vocab size.

    Returns:
        ``(corrupted_ids, masked_positions, labels)``: positions are flat indices into
        ``bs * seq`` (what paddlenlp's MLM head gathers), labels the original ids there.
    """
    ids = input_ids.copy()
    candidates = ~np.isin(ids, list(special_ids))
    selected = (rng.random_sample(ids.shape) < mask_prob) & candidates
    if not selected.any():  # keep every batch trainable: select one real token
        rows, cols = np.nonzero(candidates)
        if len(rows) == 0:
            raise ValueError("batch has no maskable token (only special tokens)")
        k = rng.randint(len(rows))
        selected[rows[k], cols[k]] = True
    labels = ids[selected]
    action = rng.random_sample(labels.shape)
    replaced = np.where(action < MASK_REPLACE_PROB, mask_id, labels)
    allowed = np.setdiff1d(np.arange(vocab, dtype=ids.dtype), np.array(sorted(special_ids)))
    random_ids = allowed[rng.randint(len(allowed), size=labels.shape)]
    replaced = np.where(
        (action >= MASK_REPLACE_PROB) & (action < MASK_REPLACE_PROB + RANDOM_REPLACE_PROB),
        random_ids,
        replaced,
    )
    ids[selected] = replaced
    positions = np.flatnonzero(selected.reshape(-1)).astype("int64")
    return ids, positions, labels.astype("int64")


def _fingerprint(corpus_dir: str | os.PathLike[str], vocab_dir: str | os.PathLike[str]) -> str:
    vocab = (Path(vocab_dir) / "vocab.txt").read_bytes()
    return f"{corpus_fingerprint(corpus_dir)}-{hashlib.sha256(vocab).hexdigest()[:16]}"


def _cached(out_dir: Path, cfg: TeacherConfig, fingerprint: str) -> dict[str, Any] | None:
    """The previous summary if ``out_dir`` holds a complete teacher of this config and data."""
    try:
        info = read_model_info(out_dir)
        prov = Provenance.read(out_dir)
    except UserError:  # a foreign or damaged directory is not a cache hit
        return None
    if prov is None or not (out_dir / WEIGHTS_FILE).is_file():
        return None
    if not (out_dir / "vocab.txt").is_file():
        return None
    if (
        prov.stage != "teacher"
        or prov.config != cfg.to_dict()
        or prov.details.get("data_fingerprint") != fingerprint
        or info.kind != "mlm"
    ):
        return None
    return dict(prov.details.get("summary", {}), cached=True)


def _copy_pretrained(src: Path, out: Path) -> None:
    if out.resolve() != src.resolve():
        copy_dir(src, out, kind="model")


def run_pretrain_teacher(
    corpus_dir: str | os.PathLike[str],
    vocab_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: TeacherConfig,
) -> dict[str, Any]:
    """Provide the distillation teacher: MLM-train it locally, or take a pretrained directory.

    Args:
        corpus_dir: Directory of ``*.txt`` shards, one sentence a line.
        vocab_dir: Tokenizer directory (``vocab.txt``); ignored with ``cfg.pretrained``.
        out_dir: Output teacher directory (``save_model`` layout, kind ``mlm``, tokenizer and
            provenance included; or a copy of the pretrained directory).
        cfg: Teacher config; with ``cfg.pretrained`` set (a local directory) nothing trains.

    Returns:
        Summary: ``teacher_dir``, ``pretrained`` (bool), ``cached`` (bool), and for a trained
        teacher ``final_loss`` / ``final_mlm_accuracy`` (last logging window), ``steps``,
        ``seconds``, ``params``, ``vocab_size``, ``loss_curve`` (list of ``{step, loss, acc}``).

    Raises:
        ModelFormatError: If ``cfg.pretrained`` is not a loadable local pretrained directory.
        FileNotFoundError: If the corpus or vocab directory is missing.
    """
    out = Path(out_dir)
    if cfg.pretrained:
        src = Path(cfg.pretrained)
        model = load_pretrained(src, kind="encoder")  # validates before the (large) copy
        hidden = int(model.config.hidden_size) if hasattr(model, "config") else None
        del model
        _copy_pretrained(src, out)
        logger.info("teacher: pretrained %s -> %s", src, out)
        return {
            "teacher_dir": str(out),
            "pretrained": True,
            "cached": False,
            "source": str(src),
            "hidden_size": hidden,
        }

    fingerprint = _fingerprint(corpus_dir, vocab_dir)
    cached = _cached(out, cfg, fingerprint)
    if cached is not None:
        logger.info("teacher: %s already holds a teacher of this config; not retraining", out)
        return cached

    started = time.perf_counter()
    tokenizer = load_tokenizer(vocab_dir)
    arch = cfg.arch.replace(vocab_size=vocab_size(tokenizer))
    set_seed(cfg.seed)
    set_cpu_threads(cfg.num_threads)
    model = build_model(arch, "mlm")
    model.train()
    optimizer, scheduler = make_optimizer(
        model,
        cfg.learning_rate,
        cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
    )
    stream = CorpusStream(corpus_dir, cfg.seed)
    special = {int(i) for i in tokenizer.all_special_ids}
    step_log = StepLogger(total=cfg.max_steps, every=cfg.logging_steps, name="teacher")
    curve: list[dict[str, float]] = []
    window_loss, window_acc = [], []
    for step in range(1, cfg.max_steps + 1):
        enc = encode_sentences(tokenizer, stream.next_sentences(cfg.batch_size), cfg.max_seq_len)
        ids, positions, labels = mask_tokens(
            enc["input_ids"],
            np.random.RandomState(cfg.seed * 100003 + step),
            mask_prob=cfg.mask_prob,
            mask_id=int(tokenizer.mask_token_id),
            special_ids=special,
            vocab=arch.vocab_size,
        )
        logits = model(
            input_ids=paddle.to_tensor(ids),
            token_type_ids=paddle.to_tensor(enc["token_type_ids"]),
            masked_positions=paddle.to_tensor(positions),
        )
        label_t = paddle.to_tensor(labels)
        loss = paddle.nn.functional.cross_entropy(logits, label_t.unsqueeze(-1))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.clear_grad()
        acc = float((logits.argmax(-1) == label_t).astype("float32").mean().item())
        window_loss.append(float(loss.item()))
        window_acc.append(acc)
        step_log.update(step, window_loss[-1], lr=optimizer.get_lr(), acc=acc)
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            curve.append(
                {
                    "step": step,
                    "loss": float(np.mean(window_loss)),
                    "acc": float(np.mean(window_acc)),
                }
            )
            window_loss, window_acc = [], []
    summary: dict[str, Any] = {
        "teacher_dir": str(out),
        "pretrained": False,
        "cached": False,
        "final_loss": curve[-1]["loss"],
        "final_mlm_accuracy": curve[-1]["acc"],
        "steps": cfg.max_steps,
        "seconds": round(time.perf_counter() - started, 2),
        "vocab_size": arch.vocab_size,
        "loss_curve": curve,
    }
    summary["params"] = count_params(arch)
    provenance = {
        "stage": "teacher",
        "config": cfg.to_dict(),
        "corpus": str(corpus_dir),
        "vocab": str(vocab_dir),
        "data_fingerprint": fingerprint,
        "summary": summary,
    }
    save_model(
        model,
        out,
        ModelInfo(arch=arch, kind="mlm"),
        tokenizer_dir=Path(vocab_dir),
        provenance=provenance,
    )
    logger.info(
        "teacher trained: MLM loss %.3f, masked-token accuracy %.3f in %.0f s",
        summary["final_loss"],
        summary["final_mlm_accuracy"],
        summary["seconds"],
    )
    return summary
