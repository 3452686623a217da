"""The paddle-2.6 fixes and DynaBERT forward patches for PaddleSlim OFA
(ppminilm.compat.paddleslim)."""

from __future__ import annotations

import numpy as np
import pytest

from ppminilm.compat import paddleslim as ofa_compat
from ppminilm.compat.paddle import paddle
from ppminilm.config import PruneConfig
from ppminilm.modeling.ernie import build_model
from ppminilm.stages.prune.ofa import _build_ofa, submodel_state
from tests.tiny import TINY_ARCH as TINY

#: Float32 tolerance for "the same function" comparisons.
ATOL = 1e-5


def _inputs(seed: int = 0) -> dict[str, paddle.Tensor]:
    ids = np.random.RandomState(seed).randint(1, TINY.vocab_size, (3, 12)).astype("int64")
    ids[:, 9:] = 0  # padding, so the attention mask matters
    return {
        "input_ids": paddle.to_tensor(ids),
        "token_type_ids": paddle.zeros([3, 12], dtype="int64"),
    }


def _classifier(seed: int = 0) -> paddle.nn.Layer:
    paddle.seed(seed)
    model = build_model(TINY, "classifier", num_classes=3)
    model.eval()
    return model


def test_require_paddle_2_refuses_paddle_3() -> None:
    ofa_compat.require_paddle_2("2.6.2")
    with pytest.raises(ofa_compat.UnsupportedPaddleError, match=r"paddlepaddle 2\.x.*3\.0\.0"):
        ofa_compat.require_paddle_2("3.0.0")


def test_super_layer_norm_runs_on_paddle_26_after_fix() -> None:
    from paddleslim.nas.ofa.layers import SuperLayerNorm

    ofa_compat.fix_super_layer_norm()
    paddle.seed(1)
    norm = SuperLayerNorm(8)
    norm.weight.set_value(paddle.rand([8]) + 0.5)
    norm.bias.set_value(paddle.rand([8]))
    x = paddle.randn([2, 3, 8])
    # Without the fix this call raises "not enough values to unpack" (old _C_ops signature).
    out = norm(x)
    ref = paddle.nn.functional.layer_norm(x, [8], weight=norm.weight, bias=norm.bias)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=ATOL)
    # Narrower input: the leading weights are used, and OFA's export hint is recorded.
    out6 = norm(x[:, :, :6])
    ref6 = paddle.nn.functional.layer_norm(
        x[:, :, :6], [6], weight=norm.weight[:6], bias=norm.bias[:6]
    )
    np.testing.assert_allclose(out6.numpy(), ref6.numpy(), atol=ATOL)
    assert norm.cur_config == {"prune_dim": 6}


def test_dynabert_forward_keeps_outputs_and_applies_head_mask() -> None:
    model = _classifier()
    inputs = _inputs()
    ref = model(**inputs).numpy()
    ofa_compat.apply_dynabert_forward(model)
    ofa_compat.apply_dynabert_forward(model)  # idempotent
    np.testing.assert_allclose(model(**inputs).numpy(), ref, atol=ATOL)
    ones = paddle.ones([TINY.num_layers, TINY.num_heads])
    np.testing.assert_allclose(model(**inputs, attention_mask=[None, ones]).numpy(), ref, atol=ATOL)
    masked = ones.numpy()
    masked[0, 1] = 0.0
    out = model(**inputs, attention_mask=[None, paddle.to_tensor(masked)]).numpy()
    assert np.abs(out - ref).max() > ATOL
    ofa_compat.remove_dynabert_forward(model)
    assert "forward" not in model.ernie.__dict__
    np.testing.assert_allclose(model(**inputs).numpy(), ref, atol=ATOL)


def test_unpatched_attention_cannot_run_a_narrowed_supernet() -> None:
    """Why the patches exist: OFA's narrowed q_proj breaks paddle's own attention reshape."""
    ofa_compat.prepare_ofa()
    model, teacher = _classifier(), _classifier()
    ofa = _build_ofa(model, teacher, PruneConfig())
    ofa.set_net_config(ofa_compat.dynabert_net_config(ofa, 0.75))
    ofa_compat.remove_dynabert_forward(ofa.model)
    with pytest.raises(Exception):  # noqa: B017 -- paddle raises its own error types here
        ofa(**_inputs())


def test_ofa_supernet_widths_match_teacher_and_exported_submodel() -> None:
    ofa_compat.prepare_ofa()
    model, teacher = _classifier(), _classifier()
    ref = teacher(**_inputs()).numpy()
    ofa = _build_ofa(model, teacher, PruneConfig(hidden_mse_weight=0.1))
    ofa.model.eval()
    ofa.set_net_config(ofa_compat.dynabert_net_config(ofa, 1.0))
    student, teacher_out = ofa(**_inputs())
    np.testing.assert_allclose(student.numpy(), ref, atol=ATOL)
    np.testing.assert_allclose(teacher_out.numpy(), ref, atol=ATOL)
    assert float(ofa.calc_distill_loss()) == pytest.approx(0.0, abs=1e-8)

    config = ofa_compat.dynabert_net_config(ofa, 0.75)
    assert config["ernie.encoder.layers.0.self_attn.q_proj"] == {"expand_ratio": 0.75}
    assert config["ernie.encoder.layers.0.linear2"] == {"expand_ratio": 1.0}
    ofa.set_net_config(config)
    narrow, _ = ofa(**_inputs())
    assert float(ofa.calc_distill_loss()) > 0.0
    sub = build_model(TINY.replace(width=0.75), "classifier", num_classes=3)
    sub.set_state_dict(submodel_state(ofa.model.state_dict(), sub.state_dict()))
    sub.eval()
    np.testing.assert_allclose(sub(**_inputs()).numpy(), narrow.numpy(), atol=ATOL)
