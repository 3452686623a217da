"""The model card (``README.md``) beside every saved model: what it is and how to load it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ppminilm.contracts import PROVENANCE_FILE, Provenance
from ppminilm.modeling.accounting import format_count

#: What each stage's model is, for people.
_STAGE_TEXT = {
    "teacher": "the distillation teacher (pre-trained by masked-language modelling)",
    "distill": "a general-distillation student (task-agnostic encoder)",
    "finetune": "a fine-tuned classifier (one grid point of the recipe's stage 2)",
    "prune": "a width-pruned classifier (OFA/DynaBERT, the recipe's stage 3)",
}


def _accuracy(prov: Provenance) -> str:
    details: Mapping[str, Any] = prov.details
    dev = details.get("dev_acc")
    if not isinstance(dev, int | float):
        return ""
    text = f"dev accuracy {dev * 100:.2f}%"
    majority = details.get("majority_acc")
    if isinstance(majority, int | float) and majority:
        text += f" (majority class {majority * 100:.2f}%)"
    return text + (f", best at step {details['best_step']}" if "best_step" in details else "")


def model_card(
    *, kind: str, task: str, labels: list[str], prov: Provenance, paddlenlp_loadable: bool
) -> str:
    """The Markdown model card of a saved model directory.

    Args:
        kind: ``encoder``, ``classifier`` or ``mlm``.
        task: The model's task (empty for an encoder).
        labels: A classifier's labels in id order.
        prov: Its provenance record (stage, config, parent, params, FLOPs, details).
        paddlenlp_loadable: Whether ``config.json`` was written (unpruned models).
    """
    arch = prov.arch
    shape = f"{arch.get('num_layers')}L-{arch.get('hidden_size')}H"
    width = float(arch.get("width", 1.0))
    if width < 1.0:
        shape += f" width {width:g}"
    what = _STAGE_TEXT.get(prov.stage, f"a model written by stage {prov.stage!r}")
    lines = [f"# {shape} {kind}" + (f" for {task}" if task else ""), "", f"This is {what}."]
    lines += ["", "## Data and recipe", ""]
    if task:
        lines.append(f"- task: `{task}`, labels (id order): {', '.join(map(repr, labels))}")
    if prov.details.get("task_dir"):
        lines.append(f"- task directory: `{prov.details['task_dir']}`")
    lines.append(f"- made by stage `{prov.stage}` from `{prov.parent or 'random init'}`")
    cfg = prov.config
    if prov.stage == "finetune" and cfg:
        lines.append(
            f"- batch size {cfg.get('batch_size')}, learning rate {cfg.get('learning_rate')}, "
            f"max sequence length {cfg.get('max_seq_len')}"
        )
    accuracy = _accuracy(prov)
    if accuracy:
        lines.append(f"- {accuracy}")
    lines.append(f"- the full config and lineage: `{PROVENANCE_FILE}`")
    lines += [
        "",
        "## Size",
        "",
        f"- {prov.params:,} parameters ({format_count(prov.params, 'M')}) in the encoder and "
        f"pooler; {format_count(prov.flops_seq128, 'B')} FLOPs per 128-token sequence",
        "",
        "## Loading",
        "",
        "```python",
        "from ppminilm.modeling.saved import load_model",
        'model, info = load_model("<this directory>")',
        "```",
    ]
    if paddlenlp_loadable:
        auto = {
            "classifier": "AutoModelForSequenceClassification",
            "mlm": "AutoModelForMaskedLM",
        }.get(kind, "AutoModel")
        lines += [
            "",
            "PaddleNLP reads it as an ERNIE model (`config.json`, `model.safetensors`):",
            "",
            "```python",
            f"from paddlenlp.transformers import AutoTokenizer, {auto}",
            f'model = {auto}.from_pretrained("<this directory>")',
            'tokenizer = AutoTokenizer.from_pretrained("<this directory>")',
            "```",
        ]
    else:
        lines += [
            "",
            "PaddleNLP's Auto classes cannot build this model: it keeps fewer attention heads "
            "than hidden size / head size, and paddlenlp's attention asserts "
            "`num_heads x head_dim == hidden_size`. Load it with ppminilm, or serve its static "
            "inference export.",
        ]
    lines += [
        "",
        "## Security",
        "",
        "The weights are safetensors (reading them runs no code). A `.pdparams` file is a "
        "Python pickle: load one only from a source you trust.",
        "",
    ]
    return "\n".join(lines)
