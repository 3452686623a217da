"""Stage 2's export: a fine-tuned classifier to the static ``inference model`` artifact.

The export itself is :func:`ppminilm.modeling.export.export_static`; this stage checks the
source is a fine-tuned classifier and, given a task directory, that the static model predicts
what the dynamic one does on dev (argmax agreement, largest logit difference), through the
same Paddle Inference predictor the benchmark uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.config import InferConfig
from ppminilm.data import load_task_dir
from ppminilm.data.tokenizer import load_tokenizer
from ppminilm.inference.predictor import Predictor
from ppminilm.modeling.export import export_static
from ppminilm.modeling.saved import ModelFormatError, load_model, read_model_info
from ppminilm.stages.finetune import encode_split
from ppminilm.training.loop import accuracy, predict_logits

logger = logging.getLogger(__name__)

#: Examples per predictor run in the dynamic-vs-static check.
EXPORT_CHECK_BATCH_SIZE = 64


def run_export(
    model_dir: str | Path,
    out_dir: str | Path,
    max_seq_len: int,
    *,
    task_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Export a fine-tuned classifier to a static inference model.

    Args:
        model_dir: Classifier model directory (e.g. the grid's best point).
        out_dir: Inference model directory to write (``inference.pdmodel/.pdiparams``,
            ``serving.json``, vocab, ``provenance.json``), all or nothing.
        max_seq_len: Sequence length recorded for serving.
        task_dir: If given, the dev split is run through both the dynamic and the static model
            and the agreement is reported (a check that the export is faithful).

    Returns:
        ``model_dir``, ``out_dir``, ``task``, ``labels``, ``max_seq_len``; with ``task_dir``
        also ``dev_acc_dynamic``, ``dev_acc_static``, ``argmax_agreement`` and
        ``max_abs_logit_diff``.

    Raises:
        ModelFormatError: If ``model_dir`` is not a saved classifier.
    """
    saved = read_model_info(model_dir)
    if saved.kind != "classifier" or len(saved.labels) < 2:
        raise ModelFormatError(
            f"{model_dir}: export needs a fine-tuned classifier with labels, "
            f"got kind {saved.kind!r} with labels {saved.labels}"
        )
    model, info = load_model(model_dir)
    provenance = {"stage": "export", "parent": str(model_dir)}
    export_static(
        model,
        info,
        out_dir,
        max_seq_len=max_seq_len,
        tokenizer_dir=model_dir,
        provenance=provenance,
    )
    summary: dict[str, Any] = {
        "model_dir": str(model_dir),
        "out_dir": str(out_dir),
        "task": info.task,
        "labels": list(info.labels),
        "max_seq_len": max_seq_len,
    }
    if task_dir is not None:
        data = load_task_dir(task_dir, task=info.task)
        dev = encode_split(load_tokenizer(model_dir), data.dev, data.spec, info.labels, max_seq_len)
        dyn = predict_logits(model, dev)
        static = InferConfig(
            max_seq_len=max_seq_len, num_threads=1, use_mkldnn=False, use_trt=False
        )
        sta = Predictor(out_dir, static).logits(dev, EXPORT_CHECK_BATCH_SIZE)
        summary.update(
            dev_acc_dynamic=accuracy(dyn, dev["labels"]),
            dev_acc_static=accuracy(sta, dev["labels"]),
            argmax_agreement=float((dyn.argmax(-1) == sta.argmax(-1)).mean()),
            max_abs_logit_diff=float(np.abs(dyn - sta).max()),
        )
        logger.info(
            "export check on %d dev examples: argmax agreement %.4f, max |logit diff| %.2e",
            len(dev["labels"]),
            summary["argmax_agreement"],
            summary["max_abs_logit_diff"],
        )
    return summary
