"""The models the bench measures, all built through the project's own stage code.

Speed rows: the seed's shapes with random weights (BERT-base 12L-768H gelu, PP-MiniLM 6L-768H,
6L-768H at width 0.75), vocab 21128 as in the seed so params/FLOPs are the seed's exact figures;
exported by :func:`ppminilm.modeling.export.export_static` and the pruned one quantized by
:func:`ppminilm.stages.quantize.run_quantize`. Their accuracy means nothing (random weights).

Accuracy rows: the local profile's trained 6L student (6L-64H), fine-tuned by
:func:`ppminilm.stages.finetune.run_finetune` (from scratch, or from a pipeline run's distilled
student), width-pruned by :func:`ppminilm.stages.prune.ofa.run_prune` and quantized by
:func:`ppminilm.stages.quantize.run_quantize`, all on the local review task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import set_seed
from ppminilm.config import FinetuneConfig, ModelArch, PruneConfig, QuantConfig, bert_base_arch
from ppminilm.config.profiles import config_for
from ppminilm.data import TaskData, write_task_dir
from ppminilm.modeling.accounting import count_flops, count_params
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import export_static
from ppminilm.modeling.saved import ModelInfo

logger = logging.getLogger(__name__)

#: Width of the pruned rows (the seed's 0.75).
PRUNE_WIDTH = 0.75
#: PTQ for the seed-shape speed row: one algorithm, 4 calibration batches (scales do not change
#: the kernels timed; abs_max needs no search, which keeps the 6L-768H calibration short).
SEED_PTQ = {"algos": ["abs_max"], "batch_nums": [4], "batch_sizes": [4]}
#: Train examples the seed PTQ's task keeps: enough for its calibration sample.
SEED_PTQ_TRAIN_EXAMPLES = 16
#: PTQ for the trained model (accuracy matters here: the MSE scale search).
TRAINED_PTQ = {"algos": ["mse"], "batch_nums": [4]}
#: Fine-tuning learning rate: the best local grid point (profiles.py measurements).
FINETUNE_LR = 1e-3
#: Dev examples the seed PTQ evaluates on (its accuracy is meaningless: keep it short).
SEED_PTQ_DEV_EXAMPLES = 32


@dataclass
class SeedModel:
    """One seed-shape model exported for the speed rows."""

    key: str
    label: str
    arch: ModelArch
    inference_dir: Path

    @property
    def params(self) -> int:
        """Exact seed parameter count (encoder + pooler)."""
        return count_params(self.arch)

    @property
    def flops(self) -> int:
        """Seed FLOPs at sequence length 128."""
        return count_flops(self.arch)


def seed_archs() -> dict[str, tuple[str, ModelArch]]:
    """Key -> (row label, architecture) of the three seed shapes."""
    six = ModelArch()
    return {
        "bert_base": ("BERT-base 12L-768H", bert_base_arch()),
        "6l": ("PP-MiniLM 6L-768H", six),
        "6l_pruned": (f"6L-768H pruned {PRUNE_WIDTH:g}", six.replace(width=PRUNE_WIDTH)),
    }


def export_seed_models(
    out_dir: Path, data: TaskData, vocab_dir: Path, seq_len: int, seed: int = 2021
) -> dict[str, SeedModel]:
    """Export the seed shapes (random weights) as static inference dirs for ``data``'s labels.

    Args:
        out_dir: Parent directory (``<key>/`` per model).
        data: The task whose labels the classifier heads get.
        vocab_dir: Tokenizer files copied along (the local vocab; ids stay below 21128).
        seq_len: ``max_seq_len`` written into ``serving.json``.
        seed: Weight initialisation seed.
    """
    models: dict[str, SeedModel] = {}
    for key, (label, arch) in seed_archs().items():
        set_seed(seed)
        model = build_model(arch, "classifier", len(data.labels))
        info = ModelInfo(arch=arch, kind="classifier", task=data.task, labels=list(data.labels))
        path = export_static(
            model,
            info,
            out_dir / key,
            max_seq_len=seq_len,
            tokenizer_dir=vocab_dir,
            provenance={"stage": "bench", "weights": "random (speed rows only)", "seed": seed},
        )
        del model
        models[key] = SeedModel(key, label, arch, path)
    return models


def quantize_seed_model(
    out_dir: Path, fp32_dir: Path, data: TaskData, seq_len: int, *, onnx_format: bool = False
) -> dict[str, Any]:
    """PTQ of the seed-shape pruned model (a train sample; a short dev slice for the candidate).

    The task is a slice of ``data`` written to ``out_dir/seed_ptq_task`` (its path is the
    returned ``task_dir``).

    Args:
        out_dir: Parent dir (``6l_pruned_int8`` or, QDQ format, ``6l_pruned_int8_qdq``).
        fp32_dir: The pruned FP32 inference dir.
        data: The local task.
        seq_len: ``max_seq_len`` of the calibration inputs.
        onnx_format: PaddleSlim's QDQ format (``quantize_linear``/``dequantize_linear``), the
            one other runtimes can import through ONNX.

    Returns:
        :func:`ppminilm.stages.quantize.run_quantize`'s summary, plus ``task_dir``.
    """
    from ppminilm.stages.quantize import run_quantize

    small = write_task_dir(
        out_dir / "seed_ptq_task",
        data.task,
        {
            "train": data.train[:SEED_PTQ_TRAIN_EXAMPLES],
            "dev": data.dev[:SEED_PTQ_DEV_EXAMPLES],
            "test": data.test[:1],
        },
        labels=list(data.labels),
        source="bench: dev slice for the random-weight seed PTQ",
    )
    cfg = QuantConfig(max_seq_len=seq_len, onnx_format=onnx_format, **SEED_PTQ)  # type: ignore[arg-type]
    name = "6l_pruned_int8_qdq" if onnx_format else "6l_pruned_int8"
    return {**run_quantize(small, fp32_dir, out_dir / name, cfg), "task_dir": str(small)}


def ptq_calibration_inputs(
    fp32_dir: str | Path, int8_dir: str | Path, task_dir: str | Path, seq_len: int
) -> dict[str, np.ndarray]:
    """The train sample our Paddle PTQ model was calibrated on, encoded (inputs only).

    The peers' INT8 variants calibrate on exactly these examples.

    Args:
        fp32_dir: The FP32 inference dir (its tokenizer encodes the sample).
        int8_dir: Our PTQ model (its provenance records the sample's size and seed).
        task_dir: The task directory it was calibrated from.
        seq_len: Encoded length.
    """
    from ppminilm.inference.engines.select import calibration_sample, ptq_calibration

    examples, seed = ptq_calibration(int8_dir)
    return calibration_sample(Path(fp32_dir), task_dir, examples, seed, seq_len)


def find_distilled_student(run_dir: str | Path) -> Path:
    """The newest distilled student (``distill*/student``) under a pipeline output dir.

    Raises:
        FileNotFoundError: If none is there.
    """
    found = sorted(
        Path(run_dir).glob("**/distill*/student/model_config.json"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise FileNotFoundError(
            f"--from-run {run_dir}: no distilled student (expected "
            "<run>/**/distill*/student/model_config.json from `make run`)"
        )
    return found[-1].parent


def train_local_models(
    out_dir: Path,
    task_dir: Path,
    vocab_dir: Path,
    *,
    init: str | Path | None = None,
    finetune_steps: int = 0,
    prune_epochs: int = 1,
    prune_steps: int = 0,
) -> dict[str, Any]:
    """Fine-tune, prune and quantize the local 6L student for the accuracy columns.

    Args:
        out_dir: Parent directory (``finetune/``, ``prune/``, ``quantize/``).
        task_dir: The local review task directory.
        vocab_dir: The local vocab (for a scratch start).
        init: A distilled student dir, or None for random initialisation.
        finetune_steps: Fine-tuning steps (0: the local profile's epochs).
        prune_epochs: OFA distillation epochs of the prune stage.
        prune_steps: If > 0, stop pruning after this many steps (overrides epochs).

    Returns:
        ``arch`` (student), ``init``, ``finetune``/``prune``/``quantize``/``quantize_qdq``
        summaries, and the inference dirs ``fp32_6l``, ``fp32_pruned``, ``int8_pruned``,
        ``int8_pruned_qdq`` (the same PTQ in QDQ format) plus ``seq_len``.
    """
    from ppminilm.config.profiles import stage_config
    from ppminilm.stages.finetune import run_finetune
    from ppminilm.stages.prune.ofa import run_prune
    from ppminilm.stages.quantize import run_quantize

    student = stage_config("distill", "local").student  # type: ignore[attr-defined]
    from ppminilm.data import load_task_dir

    ft_cfg = config_for(
        FinetuneConfig,
        "local",
        {
            "task": load_task_dir(task_dir).task,
            "learning_rate": FINETUNE_LR,
            "max_steps": finetune_steps,
        },
    )
    ft = run_finetune(
        task_dir,
        str(init) if init else "scratch",
        out_dir / "finetune",
        ft_cfg,
        tokenizer_dir=None if init else vocab_dir,
        arch=None if init else student,
    ).to_dict()
    # The FP32 6L row needs a static model of the fine-tuned classifier.
    from ppminilm.modeling.saved import load_model

    model, info = load_model(ft["model_dir"])
    fp32_6l = export_static(
        model,
        info,
        out_dir / "finetune_inference",
        max_seq_len=ft_cfg.max_seq_len,
        tokenizer_dir=ft["model_dir"],
        provenance={"stage": "bench", "parent": ft["model_dir"]},
    )
    del model
    pr_cfg = config_for(
        PruneConfig,
        "local",
        {
            "width_mult_list": [PRUNE_WIDTH],
            "num_epochs": prune_epochs,
            "max_steps": prune_steps,
            # The fine-tuning parameters, as the pipeline takes them from the selected point.
            "batch_size": ft_cfg.batch_size,
            "learning_rate": ft_cfg.learning_rate,
        },
    )
    pr = run_prune(task_dir, ft["model_dir"], out_dir / "prune", pr_cfg)
    q_cfg = config_for(QuantConfig, "local", TRAINED_PTQ)
    qu = run_quantize(task_dir, pr["inference_dir"], out_dir / "quantize", q_cfg)
    # The same PTQ in QDQ format: how OpenVINO (through ONNX) runs our own quantized model.
    qdq_cfg = config_for(QuantConfig, "local", {**TRAINED_PTQ, "onnx_format": True})
    qdq = run_quantize(task_dir, pr["inference_dir"], out_dir / "quantize_qdq", qdq_cfg)
    return {
        "arch": info.arch.to_dict(),
        "init": str(init) if init else "scratch (random init; no distilled student given)",
        "finetune": ft,
        "prune": pr,
        "quantize": qu,
        "fp32_6l": str(fp32_6l),
        "fp32_pruned": pr["inference_dir"],
        "int8_pruned": qu["model_dir"],
        "int8_pruned_qdq": qdq["model_dir"],
        "quantize_qdq": qdq,
        "seq_len": ft_cfg.max_seq_len,
    }
