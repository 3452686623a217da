"""Stage 3: importance, reordering, OFA export and run_prune
(ppminilm.stages.prune)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddleslim import dynabert_net_config, prepare_ofa
from ppminilm.config import ModelArch, PruneConfig
from ppminilm.errors import ConfigError
from ppminilm.modeling.ernie import build_model, encoder_param_count, shrink_to_width
from ppminilm.modeling.export import read_serving_config
from ppminilm.modeling.saved import ModelInfo, load_model, save_model
from ppminilm.stages.prune.importance import compute_importance, reorder_heads_and_neurons
from ppminilm.stages.prune.ofa import _build_ofa, run_prune, submodel_state
from tests.tiny import TINY_ARCH as TINY

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

#: Float32 tolerance for "the same function" comparisons.
ATOL = 1e-5
#: Encoder + pooler parameters of PP-MiniLM 6L-768H at width 0.75 (the seed's 49.1M).
PRUNED_6L768H_PARAMS = 49_115_520


def _batches(
    arch: ModelArch, n: int, batch: int = 4, seq: int = 12, classes: int = 3, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        ids = rs.randint(1, arch.vocab_size, (batch, seq)).astype("int64")
        ids[:, seq - 3 :] = 0
        out.append(
            {
                "input_ids": ids,
                "token_type_ids": np.zeros_like(ids),
                "labels": rs.randint(0, classes, (batch,)).astype("int64"),
            }
        )
    return out


def _logits(model: paddle.nn.Layer, batch: dict[str, np.ndarray]) -> np.ndarray:
    model.eval()
    return model(
        input_ids=paddle.to_tensor(batch["input_ids"]),
        token_type_ids=paddle.to_tensor(batch["token_type_ids"]),
    ).numpy()


def test_reorder_keeps_outputs_and_sorts_by_importance() -> None:
    paddle.seed(3)
    model = build_model(TINY, "classifier", num_classes=3)
    batches = _batches(TINY, 2)
    before = _logits(model, batches[0])
    heads, neurons = compute_importance(model, batches)
    assert heads.shape == (TINY.num_layers, TINY.num_heads)
    assert [n.shape for n in neurons] == [(TINY.intermediate_size,)] * TINY.num_layers
    assert (heads > 0).all() and all((n >= 0).all() for n in neurons)
    reorder_heads_and_neurons(model, heads, neurons)
    np.testing.assert_allclose(_logits(model, batches[0]), before, atol=ATOL)
    # Scoring the reordered model again gives descending scores: important ones come first.
    heads2, neurons2 = compute_importance(model, batches)
    np.testing.assert_allclose(heads2, -np.sort(-heads, axis=1), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(neurons2[0], -np.sort(-neurons[0]), rtol=1e-3, atol=1e-7)


def test_reorder_rejects_mismatched_scores() -> None:
    model = build_model(TINY, "classifier", num_classes=3)
    with pytest.raises(ValueError, match="layer 0: head importance shape"):
        reorder_heads_and_neurons(model, np.ones([2, 5]), [np.ones(64)] * 2)


def test_6l768h_export_step_has_seed_param_count() -> None:
    """Fast check of the export step alone: slicing a 6L-768H state to width 0.75."""
    arch = ModelArch(dropout=0.0)
    paddle.seed(0)
    model = build_model(arch, "classifier", num_classes=2)
    full_state = {k: v.numpy() for k, v in model.state_dict().items()}
    sub = shrink_to_width(model, 0.75)  # only the shapes matter; weights come from full_state
    sub.set_state_dict(submodel_state(full_state, sub.state_dict()))
    assert encoder_param_count(sub) == PRUNED_6L768H_PARAMS
    q = sub.ernie.encoder.layers[0].self_attn.q_proj.weight.numpy()
    q_key = "ernie.encoder.layers.0.self_attn.q_proj.weight"
    np.testing.assert_array_equal(q, full_state[q_key][:, :576])


def test_6l768h_pruned_export_has_seed_param_count(tmp_path: Path) -> None:
    """The real PP-MiniLM shape through importance, reorder, OFA and export at width 0.75."""
    prepare_ofa()
    arch = ModelArch(dropout=0.0)  # 6L-768H, 12 heads, FFN 3072, vocab 21128
    paddle.seed(0)
    model = build_model(arch, "classifier", num_classes=2)
    batches = _batches(arch, 2, batch=2, seq=8, classes=2)
    heads, neurons = compute_importance(model, batches)
    reorder_heads_and_neurons(model, heads, neurons)
    teacher = build_model(arch, "classifier", num_classes=2)
    ofa = _build_ofa(model, teacher, PruneConfig())
    ofa.model.eval()
    ofa.set_net_config(dynabert_net_config(ofa, 0.75))
    narrow, _ = ofa(
        input_ids=paddle.to_tensor(batches[0]["input_ids"]),
        token_type_ids=paddle.to_tensor(batches[0]["token_type_ids"]),
    )
    pruned_arch = arch.replace(width=0.75)
    sub = build_model(pruned_arch, "classifier", num_classes=2)
    sub.set_state_dict(submodel_state(ofa.model.state_dict(), sub.state_dict()))
    assert encoder_param_count(sub) == PRUNED_6L768H_PARAMS
    np.testing.assert_allclose(_logits(sub, batches[0]), narrow.numpy(), atol=1e-4)
    save_model(sub, tmp_path / "m", ModelInfo(pruned_arch, "classifier", "tnews", ["a", "b"]))
    loaded, info = load_model(tmp_path / "m")
    assert info.arch.width == 0.75
    assert encoder_param_count(loaded) == PRUNED_6L768H_PARAMS
    np.testing.assert_allclose(_logits(loaded, batches[0]), narrow.numpy(), atol=1e-4)


# --------------------------------------------------------------------------- run_prune


@pytest.fixture(scope="module")
def tiny_task(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared small local_reviews task dir and an (untrained) tiny classifier for it."""
    from ppminilm.data.tokenizer import load_tokenizer, vocab_size

    root = tmp_path_factory.mktemp("prune")
    task = local_data_dir / "tasks" / "local_reviews"
    labels = json.loads((task / "labels.json").read_text())
    vocab = local_data_dir / "vocab"
    arch = TINY.replace(vocab_size=vocab_size(load_tokenizer(vocab)), max_position=64)
    paddle.seed(0)
    model = build_model(arch, "classifier", num_classes=len(labels))
    save_model(
        model,
        root / "ft",
        ModelInfo(arch, "classifier", "local_reviews", labels),
        tokenizer_dir=vocab,
    )
    encoder = build_model(arch, "encoder")
    save_model(
        encoder,
        root / "enc",
        ModelInfo(arch, "encoder", "local_reviews", labels),
        tokenizer_dir=vocab,
    )
    return {"root": root, "task": task, "model": root / "ft", "encoder": root / "enc"}


def test_run_prune_exports_dynamic_and_static_submodels(tiny_task: dict[str, Path]) -> None:
    out = tiny_task["root"] / "pruned"
    cfg = PruneConfig(
        width_mult_list=(0.75,),
        batch_size=64,
        num_epochs=2,
        max_seq_len=32,
        learning_rate=1e-3,
        importance_examples=16,
        eval_steps=4,
        logging_steps=4,
    )
    summary = run_prune(tiny_task["task"], tiny_task["model"], out, cfg)
    assert summary["widths"] == [0.75]
    assert len(summary["dev_acc_per_epoch"]) == 2
    assert summary["pruned_dev_acc"] == max(
        e["dev_acc"] for e in summary["per_width"]["0.75"]["evals"]
    )
    assert 0.0 <= summary["unpruned_dev_acc"] <= 1.0
    assert summary["importance_examples"] == 16
    assert summary["params_after"] < summary["params_before"]
    model, info = load_model(out / "model")
    assert info.arch.width == 0.75 and info.kind == "classifier"
    assert encoder_param_count(model) == summary["params_after"]
    serving = read_serving_config(out / "inference")
    assert serving.width == 0.75 and serving.precision == "fp32" and serving.max_seq_len == 32
    assert json.loads((out / "prune_summary.json").read_text())["model_dir"] == str(out / "model")
    assert (out / "model" / "provenance.json").is_file()


def test_one_supernet_for_every_width_and_take_width(tiny_task: dict[str, Path]) -> None:
    """issue 21: the prune step trains both widths at once; the search takes each out."""
    from ppminilm.contracts import ContractError
    from ppminilm.modeling.saved import read_lineage
    from ppminilm.runner import prune, take_width

    out = tiny_task["root"] / "two-widths"
    summary = prune(
        tiny_task["task"],
        tiny_task["model"],
        out,
        width_mult_list=[0.75, 0.5],
        max_steps=2,
        batch_size=32,
        max_seq_len=32,
        importance_examples=16,
        eval_steps=1,
    )
    assert summary.result["widths"] == [0.5, 0.75]
    assert (out / "model").is_dir() and (out / "width_0.75" / "inference").is_dir()
    for width in (0.5, 0.75):
        taken = take_width(
            out,
            out.parent / f"taken-{width:g}",
            width=width,
            inference_out=out.parent / f"taken-{width:g}-inf",
        )
        serving = read_serving_config(out.parent / f"taken-{width:g}-inf")
        assert serving.width == width and taken.metrics["width"] == width
        assert taken.result["dev_acc"] == summary.result["per_width"][f"{width:g}"]["best_dev_acc"]
        # every width's exports carry the lineage (grid, pruning record)
        assert read_lineage(out.parent / f"taken-{width:g}-inf").prune["widths"] == [0.5, 0.75]
    with pytest.raises(ContractError, match=r"width 0\.25 was not trained"):
        take_width(out, out.parent / "taken-bad", width=0.25)


def test_run_prune_refuses_a_width_with_fractional_heads(tiny_task: dict[str, Path]) -> None:
    from ppminilm.errors import ConfigError

    out = tiny_task["root"] / "fractional"
    with pytest.raises(ConfigError, match=r"keeps 2\.4 of the 4 attention heads of the model in"):
        run_prune(tiny_task["task"], tiny_task["model"], out, PruneConfig(width_mult_list=(0.6,)))
    assert not out.exists()


def test_run_prune_rejects_non_classifier(tiny_task: dict[str, Path]) -> None:
    out = tiny_task["root"] / "bad"
    cfg = PruneConfig(max_steps=1, batch_size=8, learning_rate=1e-3)
    with pytest.raises(ValueError, match="pruning needs a fine-tuned 'classifier'"):
        run_prune(tiny_task["task"], tiny_task["encoder"], out, cfg)
    # The model is checked before the hparams: a wrong model dir is named even when they
    # are unset too.
    with pytest.raises(ValueError, match="pruning needs a fine-tuned 'classifier'"):
        run_prune(tiny_task["task"], tiny_task["encoder"], out, PruneConfig(max_steps=1))
    assert not out.exists()


def test_run_prune_needs_batch_size_and_learning_rate(tiny_task: dict[str, Path]) -> None:
    """run_prune is below the runner: no grid point fills them in, so they must be given."""
    out = tiny_task["root"] / "unset"
    with pytest.raises(ConfigError, match=r"batch_size / learning_rate are unset"):
        run_prune(tiny_task["task"], tiny_task["model"], out, PruneConfig(max_steps=1))
    assert not out.exists()


def test_cli_prune_reports_bad_input_with_exit_2(tiny_task: dict[str, Path]) -> None:
    from ppminilm.cli import EXIT_USAGE, main

    out = tiny_task["root"] / "cli"
    argv = [
        "prune",
        "--task-dir",
        str(tiny_task["task"]),
        "--model-dir",
        str(tiny_task["encoder"]),
        "--out",
        str(out),
        "--max-steps",
        "1",
    ]
    assert main(argv) == EXIT_USAGE
    assert not out.exists()
