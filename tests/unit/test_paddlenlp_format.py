"""PaddleNLP model directories: tiny models paddlenlp itself saves load into the ERNIE layout
with paddlenlp's own outputs; our unpruned models load back with paddlenlp's Auto classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.compat.paddlenlp import module
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import (
    ModelFormatError,
    ModelInfo,
    load_model,
    read_model_info,
    same_vocabulary,
    save_model,
)
from tests.tiny import TINY_ARCH

transformers = module("transformers")
#: A tiny shape every family accepts (paddlenlp's config field names).
SMALL = {
    "vocab_size": 90,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
#: Largest |difference| between paddlenlp's outputs and ours (same float32 math).
ATOL = 1e-5


def _families() -> dict[str, tuple[Any, Any]]:
    from paddlenlp.transformers.ppminilm.configuration import PPMiniLMConfig
    from paddlenlp.transformers.ppminilm.modeling import PPMiniLMModel

    return {
        "ernie": (transformers.ErnieConfig, transformers.ErnieModel),
        "bert": (transformers.BertConfig, transformers.BertModel),
        "roberta": (transformers.RobertaConfig, transformers.RobertaModel),
        "ppminilm": (PPMiniLMConfig, PPMiniLMModel),
    }


def _inputs() -> tuple[Any, Any]:
    rng = np.random.RandomState(0)
    ids = rng.randint(5, SMALL["vocab_size"], (3, 11))
    ids[1, 7:] = 0  # right padding, as our tokenizer pads
    ids[2, 4:] = 0
    types = np.zeros_like(ids)
    types[:, 3:6] = 1
    return paddle.to_tensor(ids), paddle.to_tensor(types)


def _outputs(model: Any) -> list[np.ndarray]:
    model.eval()
    ids, types = _inputs()
    seq, pooled = model(ids, token_type_ids=types)[:2]
    mask = (ids.numpy() != 0)[..., None]
    return [seq.numpy() * mask, pooled.numpy()]  # padding positions carry no meaning


def _saved(tmp_path: Path, family: str, safe: bool, **extra: Any) -> tuple[Path, Any]:
    config_cls, model_cls = _families()[family]
    paddle.seed(7)
    model = model_cls(config_cls(**SMALL, **extra))
    out = tmp_path / family
    model.save_pretrained(str(out), safe_serialization=safe)
    return out, model


@pytest.mark.parametrize("family", ["ernie", "bert", "roberta", "ppminilm"])
@pytest.mark.parametrize("safe", [False, True], ids=["pdparams", "safetensors"])
def test_paddlenlp_checkpoints_load_with_paddlenlps_outputs(
    tmp_path: Path, family: str, safe: bool
) -> None:
    out, reference = _saved(tmp_path, family, safe)
    assert (out / ("model.safetensors" if safe else "model_state.pdparams")).is_file()
    info = read_model_info(out)
    assert info.kind == "encoder" and info.arch.hidden_size == 16
    # RoBERTa numbers positions from pad_token_id + 1: the table is shifted, one row shorter.
    assert info.arch.max_position == (39 if family == "roberta" else 40)
    ours, _ = load_model(out)
    for a, b in zip(_outputs(reference), _outputs(ours), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_ernie3_task_embedding_is_folded_into_token_types(tmp_path: Path) -> None:
    out, reference = _saved(tmp_path, "ernie", True, use_task_id=True, task_id=1)
    ours, _ = load_model(out)
    for a, b in zip(_outputs(reference), _outputs(ours), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_task_model_checkpoint_loads_its_encoder(tmp_path: Path) -> None:
    paddle.seed(3)
    clf = transformers.BertForSequenceClassification(transformers.BertConfig(**SMALL, num_labels=3))
    clf.save_pretrained(str(tmp_path / "clf"))
    encoder, info = load_model(tmp_path / "clf")  # the head is not carried over
    assert info.kind == "encoder" and info.labels == []
    for a, b in zip(_outputs(clf.bert), _outputs(encoder), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)
    as_classifier, info = load_model(tmp_path / "clf", kind="classifier")
    assert info.kind == "classifier"
    np.testing.assert_array_equal(
        as_classifier.ernie.pooler.dense.weight.numpy(), clf.bert.pooler.dense.weight.numpy()
    )


def _legacy(out: Path, family: str, config: dict[str, Any]) -> None:
    """Rewrite a directory in the pre-2.6 layout: model_config.json with nested init_args."""
    base = {"PPMiniLM": "PPMiniLMModel"}.get(family, f"{family.capitalize()}Model")
    (out / "config.json").unlink()
    legacy = {
        "init_args": [{**config, "init_class": base}],
        "init_class": base.replace("Model", "ForSequenceClassification"),
        "num_classes": 2,
    }
    (out / "model_config.json").write_text(json.dumps(legacy), encoding="utf-8")


def test_legacy_model_config_json_with_init_args(tmp_path: Path) -> None:
    out, _ = _saved(tmp_path, "ppminilm", False)
    _legacy(out, "PPMiniLM", dict(SMALL, hidden_act="relu"))
    # The file is one paddlenlp itself still reads (the published ppminilm-6l-768h layout).
    from paddlenlp.transformers.ppminilm.modeling import PPMiniLMModel

    again = PPMiniLMModel.from_pretrained(str(out))
    assert again.config.hidden_act == "relu"
    info = read_model_info(out)
    assert (info.arch.hidden_act, info.arch.num_layers) == ("relu", 2)
    ours, _ = load_model(out)
    for a, b in zip(_outputs(again), _outputs(ours), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_foreign_or_incomplete_dirs_say_what_was_expected(tmp_path: Path) -> None:
    out, _ = _saved(tmp_path, "bert", True)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"no weights; expected model.safetensors or "):
        load_model(broken)
    config = json.loads((out / "config.json").read_text())
    for change, words in (
        ({"model_type": "gpt", "architectures": ["GPTModel"]}, "model type 'gpt' is not supported"),
        ({"pad_token_id": 1}, "field 'pad_token_id'=1"),
        ({"hidden_act": "silu"}, "field 'hidden_act'='silu'"),
        ({"hidden_size": 32, "intermediate_size": 64}, "has shape"),
    ):
        (broken / "config.json").write_text(json.dumps({**config, **change}))
        shutil.copy2(out / "model.safetensors", broken / "model.safetensors")
        with pytest.raises(ModelFormatError, match=words):
            load_model(broken)
    (broken / "config.json").write_text(
        json.dumps({k: v for k, v in config.items() if k != "vocab_size"})
    )
    with pytest.raises(ModelFormatError, match="missing field 'vocab_size'"):
        read_model_info(broken)
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(91)))
    with pytest.raises(ModelFormatError, match="91 tokens, but the model's embedding table has 90"):
        load_model(broken)


def _vocab(path: Path, tokens: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (path / "vocab.txt").write_text("".join(t + "\n" for t in specials + tokens), encoding="utf-8")
    transformers.ErnieTokenizer(vocab_file=str(path / "vocab.txt")).save_pretrained(str(path))
    return path


def test_fine_tuned_models_reload_with_paddlenlp_auto_classes(tmp_path: Path) -> None:
    tok = _vocab(tmp_path / "tok", list("我想问一个问题好的"))
    arch = TINY_ARCH.replace(vocab_size=14)
    paddle.seed(5)
    model = build_model(arch, "classifier", num_classes=3)
    info = ModelInfo(arch=arch, kind="classifier", task="my_intents", labels=["buy", "sell", "x"])
    out = save_model(
        model,
        tmp_path / "ft",
        info,
        tokenizer_dir=tok,
        provenance={"stage": "finetune", "dev_acc": 0.8, "majority_acc": 0.4},
    )
    assert {"config.json", "model.safetensors", "README.md", "provenance.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / "model_state.pdparams").exists()  # nothing we write is a pickle
    auto = transformers.AutoModelForSequenceClassification.from_pretrained(str(out))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    assert auto.config.id2label == {0: "buy", 1: "sell", 2: "x"}
    enc = tokenizer(["我想问一个问题", "好的"], padding=True, return_token_type_ids=True)
    ids = paddle.to_tensor(enc["input_ids"])
    types = paddle.to_tensor(enc["token_type_ids"])
    ours, _ = load_model(out)
    ours.eval()
    auto.eval()
    np.testing.assert_allclose(
        auto(ids, token_type_ids=types).numpy(), ours(ids, token_type_ids=types).numpy(), atol=1e-6
    )
    card = (out / "README.md").read_text()
    assert "AutoModelForSequenceClassification" in card and "dev accuracy 80.00%" in card
    assert "my_intents" in card and "safetensors" in card


def test_pruned_models_are_not_written_for_paddlenlp(tmp_path: Path) -> None:
    arch = TINY_ARCH.replace(width=0.75)
    model = build_model(arch, "classifier", num_classes=2)
    out = save_model(model, tmp_path / "p", ModelInfo(arch, "classifier", "t", ["0", "1"]))
    assert not (out / "config.json").exists()
    assert "cannot build this model" in (out / "README.md").read_text()
    load_model(out)  # ours still loads it


def test_teacher_and_student_must_share_a_vocabulary(tmp_path: Path) -> None:
    a = _vocab(tmp_path / "a", list("甲乙丙"))
    same_vocabulary(a, _vocab(tmp_path / "b", list("甲乙丙")), "teacher and student")
    with pytest.raises(
        ModelFormatError,
        match=r"teacher and student must share a vocabulary.*"
        r"token 6: '乙' vs '丁'",
    ):
        same_vocabulary(a, _vocab(tmp_path / "c", list("甲丁丙")), "teacher and student")
