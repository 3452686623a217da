"""Model builders, exact parameter/FLOPs accounting, save/load."""

import json

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.config import ModelArch, bert_base_arch
from ppminilm.modeling.accounting import count_flops, count_params, format_count
from ppminilm.modeling.ernie import build_model, encoder_param_count
from ppminilm.modeling.saved import ModelFormatError, ModelInfo, load_model, save_model

# The seed's summary table: (#Params, #FLOPs at seq 128).
SEED_ROWS = [
    (bert_base_arch(), 102_267_648, "102.3M", "10.87B"),
    (ModelArch(), 59_740_416, "59.7M", "5.44B"),
    (ModelArch(width=0.75), 49_115_520, "49.1M", "4.08B"),
]
TINY = ModelArch(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, vocab_size=50)


@pytest.mark.parametrize(("arch", "params", "params_text", "flops_text"), SEED_ROWS)
def test_seed_table_counts(arch, params, params_text, flops_text):
    assert count_params(arch) == params
    assert format_count(count_params(arch), "M") == params_text
    assert format_count(count_flops(arch), "B") == flops_text


@pytest.mark.integration
@pytest.mark.parametrize(("arch", "params"), [(r[0], r[1]) for r in SEED_ROWS])
def test_built_models_match_formula(arch, params):
    assert encoder_param_count(build_model(arch)) == params


@pytest.mark.integration
def test_pruned_shapes():
    model = build_model(ModelArch(width=0.75), "classifier", num_classes=3)
    layer = model.ernie.encoder.layers[0]
    assert layer.self_attn.num_heads == 9
    assert layer.self_attn.q_proj.weight.shape == [768, 576]
    assert layer.linear1.weight.shape == [768, 2304]
    assert model(paddle.to_tensor([[1, 2, 3]])).shape == [1, 3]


def test_save_load_round_trip(tmp_path):
    arch = TINY.replace(width=0.5)
    model = build_model(arch, "classifier", num_classes=3)
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    save_model(
        model,
        tmp_path / "m",
        ModelInfo(arch, "classifier", "tnews", ["a", "b", "c"]),
        tokenizer_dir=tmp_path / "tok",
        provenance={"stage": "test"},
    )
    prov = json.loads((tmp_path / "m" / "provenance.json").read_text())
    assert prov["params"] == count_params(arch) and prov["stage"] == "test"
    assert "paddlepaddle" in prov["versions"]
    loaded, info = load_model(tmp_path / "m")
    x = paddle.to_tensor(np.random.RandomState(0).randint(1, 50, (2, 7)))
    model.eval()
    loaded.eval()
    np.testing.assert_allclose(model(x).numpy(), loaded(x).numpy(), atol=1e-6)
    assert info.labels == ["a", "b", "c"]


def test_encoder_weights_load_into_classifier(tmp_path):
    enc = build_model(TINY, "encoder")
    save_model(enc, tmp_path / "enc", ModelInfo(TINY, "encoder"))
    clf, info = load_model(tmp_path / "enc", kind="classifier")
    assert info.kind == "classifier"
    np.testing.assert_array_equal(
        clf.ernie.embeddings.word_embeddings.weight.numpy(),
        enc.embeddings.word_embeddings.weight.numpy(),
    )


def test_load_errors(tmp_path):
    with pytest.raises(ModelFormatError, match=r"not a model directory.*found nothing"):
        load_model(tmp_path)
    model = build_model(TINY)
    save_model(model, tmp_path / "m", ModelInfo(TINY))
    cfg = json.loads((tmp_path / "m" / "model_config.json").read_text())
    cfg["arch"]["hidden_size"] = 64
    (tmp_path / "m" / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match=r"has shape"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model_config.json").write_text("{\n oops")
    with pytest.raises(ModelFormatError, match=r"model_config.json:2:\d+: invalid JSON"):
        load_model(tmp_path / "m")


def test_failed_save_leaves_nothing(tmp_path):
    class BoomError(Exception):
        pass

    model = build_model(TINY)

    def bad_state_dict():
        raise BoomError

    model.state_dict = bad_state_dict
    with pytest.raises(BoomError):
        save_model(model, tmp_path / "m", ModelInfo(TINY))
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []
