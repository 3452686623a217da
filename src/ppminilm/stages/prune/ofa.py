"""Stage 3: DynaBERT-style OFA width pruning of a fine-tuned classifier.

1. Score heads and FFN neurons on a deterministic sample of train (``cfg.importance_examples``)
   and reorder them so the most important come first (:mod:`ppminilm.stages.prune.importance`;
   the function is unchanged).
2. Convert the reordered model to a PaddleSlim OFA supernet and distil the fine-tuned
   (unpruned) teacher into each width of ``cfg.width_mult_list``: hidden-state MSE on the
   embeddings and every layer output times ``cfg.hidden_mse_weight`` plus soft cross-entropy
   on the logits. Paddle-2.6 fixes and forward patches come from :mod:`ppminilm.compat.paddleslim`.
3. Evaluate the sub-model of each width on dev every ``eval_steps`` and at each epoch end; keep
   the best and export it as a saved model (``arch.width`` = the width, so
   :func:`ppminilm.modeling.saved.load_model` rebuilds it through ``shrink_to_width``) and
   as a static inference model.

Output directory::

    model/        dynamic sub-model of the smallest width (classifier model directory)
    inference/    its static inference model (export.py layout)
    width_<w>/model, width_<w>/inference   the other widths, when several are trained
    prune_summary.json                      the summary returned by run_prune
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle, set_cpu_threads, set_seed
from ppminilm.compat.paddleslim import apply_dynabert_forward, dynabert_net_config, prepare_ofa
from ppminilm.config import PruneConfig, check_widths
from ppminilm.contracts import MODEL_CONFIG_FILE, PRUNE_SUMMARY_FILE
from ppminilm.data import load_task_dir, sample_examples
from ppminilm.io import staged_dir, write_json
from ppminilm.modeling.ernie import build_model, encoder_param_count
from ppminilm.modeling.export import export_static
from ppminilm.modeling.saved import (
    ModelInfo,
    load_model,
    read_model_info,
    save_model,
)
from ppminilm.stages.prune.layout import INFERENCE_SUBDIR, MODEL_SUBDIR, width_subdir
from ppminilm.training.loop import (
    StepLogger,
    accuracy,
    iterate_batches,
    make_optimizer,
    num_batches,
    predict_logits,
)

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 128


def soft_cross_entropy(logits: paddle.Tensor, teacher_logits: paddle.Tensor) -> paddle.Tensor:
    """Cross-entropy of student logits against the teacher's soft labels (batch mean)."""
    targets = paddle.nn.functional.softmax(teacher_logits.detach(), axis=-1)
    return paddle.mean(
        paddle.sum(-targets * paddle.nn.functional.log_softmax(logits, axis=-1), axis=-1)
    )


def submodel_state(
    super_state: Mapping[str, Any], target: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Slice an OFA supernet state dict down to a (smaller) plain model's shapes.

    OFA keeps the important heads/neurons first, so every tensor is cut to its leading
    ``target`` shape; supernet keys carry an extra ``.fn`` for converted layers.

    Args:
        super_state: ``ofa_model.model.state_dict()``.
        target: State dict of the plain sub-model (gives keys and shapes).

    Returns:
        NumPy arrays keyed as ``target``.

    Raises:
        ValueError: If a target tensor has no supernet counterpart or a larger shape.
    """
    plain = {key.replace(".fn.", "."): value for key, value in super_state.items()}
    out: dict[str, np.ndarray] = {}
    for key, ref in target.items():
        if key not in plain:
            raise ValueError(f"supernet has no weights for {key!r}")
        value = plain[key].numpy() if hasattr(plain[key], "numpy") else np.asarray(plain[key])
        shape = list(ref.shape)
        if len(shape) != value.ndim or any(s > v for s, v in zip(shape, value.shape)):
            raise ValueError(f"{key!r}: supernet shape {list(value.shape)} cannot give {shape}")
        out[key] = value[tuple(slice(0, s) for s in shape)].copy()
    return out


def _encode(
    task_data: Any, examples: Any, tokenizer: Any, labels: list[str], max_seq_len: int
) -> dict[str, np.ndarray]:
    from ppminilm.stages.finetune import encode_split

    return encode_split(tokenizer, examples, task_data.spec, labels, max_seq_len)


def _check_inputs(task_data: Any, info: ModelInfo, model_dir: Path, cfg: PruneConfig) -> None:
    if info.kind != "classifier":
        raise ValueError(
            f"{model_dir}: model kind is {info.kind!r}; pruning needs a fine-tuned "
            "'classifier' model directory"
        )
    if info.arch.width < 1.0:
        raise ValueError(f"{model_dir}: model is already pruned (arch.width={info.arch.width})")
    task_data.check_model(info.task, info.labels, f"{model_dir}/{MODEL_CONFIG_FILE}")
    # Before any work: every width must keep whole heads of *this* model (an imported
    # student may have other head counts than the profile's).
    check_widths(
        cfg.width_mult_list,
        info.arch,
        "PruneConfig.width_mult_list",
        model=f"model in {model_dir}",
    )


def _build_ofa(model: paddle.nn.Layer, teacher: paddle.nn.Layer, cfg: PruneConfig) -> Any:
    from paddleslim.nas.ofa import OFA, DistillConfig, RunConfig, utils
    from paddleslim.nas.ofa.convert_super import Convert, supernet

    weights = model.state_dict()
    # expand_ratio [1.0]: the supernet keeps the full shapes; widths are set per step.
    sup = Convert(supernet(expand_ratio=[1.0])).convert(model)
    utils.set_state_dict(sup, weights)
    apply_dynabert_forward(sup)
    apply_dynabert_forward(teacher)
    num_layers = len(sup.ernie.encoder.layers)
    mapping = ["ernie.embeddings"] + [f"ernie.encoder.layers.{i}" for i in range(num_layers)]
    distill = DistillConfig(
        lambda_distill=cfg.hidden_mse_weight, teacher_model=teacher, mapping_layers=mapping
    )
    return OFA(sup, run_config=RunConfig(), distill_config=distill, elastic_order=["width"])


def run_prune(
    task_dir: str | Path, model_dir: str | Path, out_dir: str | Path, cfg: PruneConfig
) -> dict[str, Any]:
    """Prune a fine-tuned classifier to ``cfg.width_mult_list`` widths with OFA distillation.

    Args:
        task_dir: Task directory (``train`` for distillation and, sampled, for importance;
            ``dev`` for model selection).
        model_dir: Fine-tuned classifier model directory (also the teacher).
        out_dir: Output directory (layout in the module docstring), written all or nothing.
        cfg: Widths, optimisation and loss weights (``batch_size`` and ``learning_rate``
            set: the runner fills them in from the selected grid point).

    Returns:
        JSON-able summary: ``widths``, ``unpruned_dev_acc``, ``pruned_dev_acc`` (smallest
        width), ``per_width`` (dev acc per epoch, all evaluations, best acc/step, params,
        dirs), ``params_before``/``params_after``, ``model_dir``/``inference_dir``,
        ``importance_examples``, ``seconds``.

    Raises:
        ValueError: On a model that is not an unpruned classifier of this task.
        ConfigError: If ``cfg.batch_size`` or ``cfg.learning_rate`` is unset.
        UnsupportedPaddleError: On paddle 3.x.
    """
    prepare_ofa()
    t0 = time.perf_counter()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    set_seed(cfg.seed)
    set_cpu_threads(cfg.num_threads)
    task_data = load_task_dir(task_dir)
    # The model first: a wrong model dir is the more basic mistake than unset hparams.
    _check_inputs(task_data, read_model_info(model_dir), model_dir, cfg)
    batch_size, learning_rate = cfg.optimisation()
    model, info = load_model(model_dir)
    from ppminilm.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    labels = list(task_data.labels)
    train = _encode(task_data, task_data.train, tokenizer, labels, cfg.max_seq_len)
    dev = _encode(task_data, task_data.dev, tokenizer, labels, cfg.max_seq_len)
    sample = sample_examples(task_data.train, cfg.importance_examples, cfg.seed)
    scored = _encode(task_data, sample, tokenizer, labels, cfg.max_seq_len)

    unpruned_acc = accuracy(predict_logits(model, dev, EVAL_BATCH_SIZE), dev["labels"])
    params_before = encoder_param_count(model)
    logger.info("unpruned dev acc %.4f (%s encoder params)", unpruned_acc, f"{params_before:,}")

    from ppminilm.stages.prune.importance import compute_importance, reorder_heads_and_neurons

    t_imp = time.perf_counter()
    heads, neurons = compute_importance(model, iterate_batches(scored, batch_size))
    reorder_heads_and_neurons(model, heads, neurons)
    importance_s = time.perf_counter() - t_imp

    teacher, _ = load_model(model_dir)
    teacher.eval()
    ofa_model = _build_ofa(model, teacher, cfg)
    widths = sorted(set(cfg.width_mult_list))
    configs = {w: dynabert_net_config(ofa_model, w) for w in widths}
    subs = {w: build_model(info.arch.replace(width=w), "classifier", len(labels)) for w in widths}

    per_epoch = num_batches(len(train["labels"]), batch_size)
    total = cfg.max_steps or per_epoch * cfg.num_epochs
    epochs = math.ceil(total / per_epoch) if total else 0
    records: dict[float, dict[str, Any]] = {
        w: {
            "evals": [],
            "dev_acc_per_epoch": [],
            "best_dev_acc": -1.0,
            "best_step": 0,
            "best_state": None,
        }
        for w in widths
    }

    def evaluate(step: int, epoch: int, epoch_end: bool) -> None:
        state = ofa_model.model.state_dict()
        for w in widths:
            sub = subs[w]
            sub.set_state_dict(submodel_state(state, sub.state_dict()))
            acc = accuracy(predict_logits(sub, dev, EVAL_BATCH_SIZE), dev["labels"])
            rec = records[w]
            rec["evals"].append({"step": step, "epoch": epoch, "dev_acc": acc})
            if epoch_end:
                rec["dev_acc_per_epoch"].append(acc)
            if acc > rec["best_dev_acc"]:
                rec.update(
                    best_dev_acc=acc,
                    best_step=step,
                    best_state={k: v.numpy().copy() for k, v in sub.state_dict().items()},
                )
            logger.info(
                "width %g step %d epoch %d: dev acc %.4f (best %.4f)",
                w,
                step,
                epoch,
                acc,
                rec["best_dev_acc"],
            )

    t_train = time.perf_counter()
    if total == 0:
        evaluate(0, 0, True)  # no training: export the reordered, sliced model
    else:
        optimizer, scheduler = make_optimizer(
            ofa_model.model,
            learning_rate,
            total,
            warmup_proportion=cfg.warmup_proportion,
            weight_decay=cfg.weight_decay,
        )
        log = StepLogger(total, cfg.logging_steps, name="prune")
        step = 0
        for epoch in range(1, epochs + 1):
            ofa_model.model.train()
            for batch in iterate_batches(train, batch_size, shuffle=True, seed=cfg.seed + epoch):
                inputs = {
                    "input_ids": paddle.to_tensor(batch["input_ids"]),
                    "token_type_ids": paddle.to_tensor(batch["token_type_ids"]),
                }
                step_loss = 0.0
                for w in widths:
                    ofa_model.set_net_config(configs[w])
                    logits, teacher_logits = ofa_model(**inputs)
                    loss = ofa_model.calc_distill_loss() + soft_cross_entropy(
                        logits, teacher_logits
                    )
                    loss.backward()
                    step_loss += float(loss)
                optimizer.step()
                scheduler.step()
                optimizer.clear_grad()
                step += 1
                log.update(step, step_loss / len(widths), scheduler.get_lr())
                if step % cfg.eval_steps == 0 and step % per_epoch and step != total:
                    evaluate(step, epoch, False)
                if step >= total:
                    break
            evaluate(step, epoch, True)
            if step >= total:
                break
    train_s = time.perf_counter() - t_train

    extra = {
        "unpruned_dev_acc": unpruned_acc,
        "params_before": params_before,
        "importance_examples": len(scored["labels"]),
        "importance_split": "train (sample)",
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "train_steps": total,
        "epochs": epochs,
        "seconds": {"importance": round(importance_s, 2), "train": round(train_s, 2)},
    }
    summary = _export_all(records, widths, info, out_dir, model_dir, task_dir, cfg, subs, extra, t0)
    logger.info(
        "pruned dev acc %.4f at width %g (unpruned %.4f); params %s -> %s",
        summary["pruned_dev_acc"],
        widths[0],
        unpruned_acc,
        f"{params_before:,}",
        f"{summary['params_after']:,}",
    )
    return summary


def _export_all(
    records: dict[float, dict[str, Any]],
    widths: list[float],
    info: ModelInfo,
    out_dir: Path,
    model_dir: Path,
    task_dir: str | Path,
    cfg: PruneConfig,
    subs: dict[float, paddle.nn.Layer],
    extra: dict[str, Any],
    t0: float,
) -> dict[str, Any]:
    """Write every width's best sub-model (dynamic + static) and the summary atomically."""
    per_width: dict[str, Any] = {}
    with staged_dir(out_dir, replace=True, kind="prune") as tmp:
        for w in widths:
            rec = records[w]
            sub = subs[w]
            sub.set_state_dict(rec["best_state"])
            sub_info = ModelInfo(
                arch=info.arch.replace(width=w),
                kind="classifier",
                task=info.task,
                labels=list(info.labels),
            )
            rel = width_subdir(widths, w)
            provenance = {
                "stage": "prune",
                "config": cfg.to_dict(),
                "parent": str(model_dir),
                "task_dir": str(task_dir),
                "width": w,
                "dev_acc": rec["best_dev_acc"],
                "best_step": rec["best_step"],
            }
            save_model(
                sub,
                tmp / rel / MODEL_SUBDIR,
                sub_info,
                tokenizer_dir=model_dir,
                provenance=provenance,
            )
            export_static(
                sub,
                sub_info,
                tmp / rel / INFERENCE_SUBDIR,
                max_seq_len=cfg.max_seq_len,
                tokenizer_dir=model_dir,
                provenance=provenance,
            )
            per_width[f"{w:g}"] = {
                "width": w,
                "dev_acc_per_epoch": rec["dev_acc_per_epoch"],
                "evals": rec["evals"],
                "best_dev_acc": rec["best_dev_acc"],
                "best_step": rec["best_step"],
                "params": encoder_param_count(sub),
                "subdir": str(rel),
                "model_dir": str(out_dir / rel / MODEL_SUBDIR),
                "inference_dir": str(out_dir / rel / INFERENCE_SUBDIR),
            }
        primary = per_width[f"{widths[0]:g}"]
        summary = {
            "widths": widths,
            "per_width": per_width,
            "pruned_dev_acc": primary["best_dev_acc"],
            "dev_acc_per_epoch": primary["dev_acc_per_epoch"],
            "params_after": primary["params"],
            "model_dir": primary["model_dir"],
            "inference_dir": primary["inference_dir"],
            "out_dir": str(out_dir),
            **extra,
        }
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / PRUNE_SUMMARY_FILE, summary)
    return summary
