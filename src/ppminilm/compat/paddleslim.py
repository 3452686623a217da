"""Every workaround PaddleSlim 2.6 needs on paddle 2.6, in one place: OFA and PTQ.

OFA (DynaBERT width pruning). Three kinds of fix, each applied by one function and each
covered by a test in ``tests/unit/test_compat_paddleslim.py`` that fails without it:

1. :func:`require_paddle_2` -- paddleslim 2.6's OFA supernet layers call paddle 2.x internals
   (``paddle._C_ops`` signatures, ``LayerHelper`` static paths); on paddle 3.x they break in
   ways that surface deep inside training. We refuse early with a clear message instead.
2. :func:`fix_super_layer_norm` -- ``paddleslim.nas.ofa.layers.SuperLayerNorm.forward`` calls
   ``paddle._C_ops.layer_norm(x, w, b, eps, begin_norm_axis, False)`` and unpacks three
   outputs: the paddle <= 2.4 signature. Paddle 2.6's op takes five arguments and returns
   fewer outputs, so every converted LayerNorm raises ``ValueError: not enough values to
   unpack``. We replace ``forward`` with one that slices weight/bias the same way and calls the
   public ``paddle.nn.functional.layer_norm``.
3. :func:`apply_dynabert_forward` -- per-instance forward patches of the ERNIE model, its
   ``TransformerEncoder``, ``TransformerEncoderLayer`` and ``MultiHeadAttention`` layers:

   * ``ErnieModel.forward`` reads ``self.pooler.dense.weight.dtype`` and sets
     ``attention_mask.stop_gradient``; after OFA conversion ``pooler.dense`` is a ``Block``
     (weights under ``.fn``) and DynaBERT passes the mask as ``[attention_mask, head_mask]``,
     so both lines fail. The patched forward accepts that pair and threads it down.
   * paddle's ``MultiHeadAttention`` reshapes Q/K/V to ``self.num_heads`` heads; when OFA
     narrows ``q_proj`` to width 0.75 that reshape is wrong. The patched forward derives the
     head count from the projection's actual output size, and multiplies attention weights by
     the per-head mask (whose gradient gives head importance).
   * ``TransformerEncoder``/``TransformerEncoderLayer`` forwards pass the mask pair through.

   Patches go on instances (never on paddle's classes), so unrelated models, e.g. the exported
   sub-model, keep paddle's own forward.

PTQ (``quant_post_static``). Two more, each covered by a test in
``tests/unit/test_quantize.py``:

4. :func:`calibration_loader` -- on paddle 2.6, ``quant_post_static`` only accepts calibration
   data as ``paddle.io.DataLoader(dataset, feed_list=[paddle.static.data(...)],
   return_list=False)`` built in static mode: a generator or a dygraph (``return_list=True``)
   loader fails when the executor feeds the program.
5. :func:`ptq_zero_dim_fix` -- ``algo='avg'`` crashes with ``IndexError: tuple index out of
   range``. PTQ samples the outputs of "observer" ops too (``slice``, ``fill_constant``...),
   and paddle 2.6 jit export produces 0-D tensors there (the scalar ``pad_token_id`` that the
   padding mask compares against; ``shape(x)[i]`` slices). ``PostTrainingQuantization.
   _sample_avg`` does ``var.reshape(var.shape[0], -1)``, which needs at least one dimension.
   While quantizing, we make every sampled value at least 1-D (``np.atleast_1d``): a no-op for
   real activations and weights, and it gives scalars the same max/mean they had.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import paddle, program_desc
from ppminilm.errors import UserError

#: Attribute set on a patched layer, so patching twice is a no-op and tests can check it.
PATCHED_FLAG = "_ppminilm_dynabert"


class UnsupportedPaddleError(UserError, RuntimeError):
    """The installed paddle cannot run paddleslim 2.6's OFA."""


def require_paddle_2(version: str | None = None) -> None:
    """Fail early unless paddle's major version is 2 (paddleslim 2.6 OFA breaks on 3.x).

    Args:
        version: Version string to check (default: the installed ``paddle.__version__``).

    Raises:
        UnsupportedPaddleError: Naming the version found and the one needed.
    """
    found = version if version is not None else paddle.__version__
    major = str(found).split(".")[0]
    # Develop builds report "0.0.0"; treat them as unknown rather than unsupported.
    if major not in ("2", "0"):
        raise UnsupportedPaddleError(
            f"OFA width pruning needs paddlepaddle 2.x (paddleslim 2.6's supernet layers use "
            f"paddle 2 internals), found paddlepaddle {found}; install paddlepaddle==2.6.2"
        )


# --------------------------------------------------------------------------- SuperLayerNorm


def _super_layer_norm_forward(self: Any, input: paddle.Tensor) -> paddle.Tensor:
    """``SuperLayerNorm.forward`` for paddle 2.6: same slicing, public layer_norm call."""
    feature_dim = int(input.shape[-1])
    weight = None
    bias = None
    if self._weight_attr is not False:
        weight = self.weight if self.weight.shape[0] <= feature_dim else self.weight[:feature_dim]
    if self._bias_attr is not False:
        bias = self.bias if self.bias.shape[0] <= feature_dim else self.bias[:feature_dim]
    # OFA's export reads cur_config['prune_dim'] to know how much of the weights to keep.
    self.cur_config = {"prune_dim": feature_dim}
    return paddle.nn.functional.layer_norm(
        input, [feature_dim], weight=weight, bias=bias, epsilon=self._epsilon
    )


def fix_super_layer_norm() -> None:
    """Replace ``SuperLayerNorm.forward`` with the paddle-2.6-compatible version (idempotent)."""
    from paddleslim.nas.ofa import layers

    layers.SuperLayerNorm.forward = _super_layer_norm_forward


# --------------------------------------------------------------------------- DynaBERT forwards


def _split_mask(mask: Any) -> tuple[Any, Any]:
    """``mask`` may be a tensor/None or an ``[attention_mask, head_mask]`` pair."""
    if isinstance(mask, list | tuple):
        if len(mask) != 2:
            raise ValueError(f"expected [attention_mask, head_mask], got {len(mask)} items")
        return mask[0], mask[1]
    return mask, None


def _mha_forward(
    self: Any,
    query: paddle.Tensor,
    key: paddle.Tensor | None = None,
    value: paddle.Tensor | None = None,
    attn_mask: Any = None,
    cache: Any = None,
) -> paddle.Tensor:
    if cache is not None:
        raise ValueError("the DynaBERT attention forward does not support caches")
    key = query if key is None else key
    value = query if value is None else value
    mask, head_mask = _split_mask(attn_mask)
    q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
    # The head count follows the (possibly narrowed) projection, not self.num_heads.
    heads = int(q.shape[-1]) // self.head_dim

    def split_heads(x: paddle.Tensor) -> paddle.Tensor:
        x = paddle.reshape(x, [0, 0, heads, self.head_dim])
        return paddle.transpose(x, [0, 2, 1, 3])

    q, k, v = split_heads(q), split_heads(k), split_heads(v)
    scores = paddle.matmul(q * (self.head_dim**-0.5), k, transpose_y=True)
    if mask is not None:
        scores = scores + mask
    weights = paddle.nn.functional.softmax(scores)
    if self.dropout:
        weights = paddle.nn.functional.dropout(
            weights, self.dropout, training=self.training, mode="upscale_in_train"
        )
    if head_mask is not None:
        weights = weights * paddle.reshape(head_mask[:heads], [1, heads, 1, 1])
    out = paddle.matmul(weights, v)
    out = paddle.transpose(out, [0, 2, 1, 3])
    out = paddle.reshape(out, [0, 0, heads * self.head_dim])
    return self.out_proj(out)


def _encoder_layer_forward(
    self: Any,
    src: paddle.Tensor,
    src_mask: Any = None,
    cache: Any = None,
    output_attentions: bool = False,
) -> paddle.Tensor:
    residual = src
    if self.normalize_before:
        src = self.norm1(src)
    src = residual + self.dropout1(self.self_attn(src, src, src, src_mask))
    if not self.normalize_before:
        src = self.norm1(src)
    residual = src
    if self.normalize_before:
        src = self.norm2(src)
    src = self.linear2(self.dropout(self.activation(self.linear1(src))))
    src = residual + self.dropout2(src)
    if not self.normalize_before:
        src = self.norm2(src)
    return src


def _encoder_forward(
    self: Any,
    src: paddle.Tensor,
    src_mask: Any = None,
    cache: Any = None,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
    return_dict: bool = False,
) -> paddle.Tensor:
    mask, head_mask = _split_mask(src_mask)
    output = src
    for i, layer in enumerate(self.layers):
        output = layer(output, src_mask=[mask, None if head_mask is None else head_mask[i]])
    if self.norm is not None:
        output = self.norm(output)
    return output


def _ernie_forward(
    self: Any,
    input_ids: paddle.Tensor,
    token_type_ids: Any = None,
    position_ids: Any = None,
    attention_mask: Any = None,
    **unused: Any,
) -> tuple[paddle.Tensor, paddle.Tensor]:
    mask, head_mask = _split_mask(attention_mask)
    if mask is None:
        # Padding keys get -1e4, as in ErnieModel; dtype from a LayerNorm, which OFA keeps
        # as a plain layer (Linear layers become Blocks whose weight lives under .fn).
        dtype = self.encoder.layers[0].norm1.weight.dtype
        mask = paddle.unsqueeze((input_ids == self.pad_token_id).astype(dtype) * -1e4, axis=[1, 2])
        mask.stop_gradient = True
    embeddings = self.embeddings(
        input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids
    )
    sequence = self.encoder(embeddings, src_mask=[mask, head_mask])
    return sequence, self.pooler(sequence)


def _patch(layer: paddle.nn.Layer, fn: Any) -> None:
    layer.forward = types.MethodType(fn, layer)
    setattr(layer, PATCHED_FLAG, True)


# paddlenlp notices that ErnieModel.forward is patched (by apply_dynabert_forward, on purpose)
# and warns once per process that "the patch might be based on an old version"; the patched
# forwards take the arguments paddlenlp adds (tested), so the warning is noise in every log.
warnings.filterwarnings(
    "ignore", message=r"The `forward` method of .* is patched", category=UserWarning
)


def apply_dynabert_forward(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """Patch, in place, the forwards DynaBERT needs on an ERNIE model (plain or OFA-converted).

    After patching, ``model(input_ids, token_type_ids, attention_mask=[None, head_mask])``
    applies a ``[num_layers, num_heads]`` head mask, and attention works at any OFA width.
    Outputs with no head mask equal the unpatched model's.

    Args:
        model: ``ErnieModel`` or a model wrapping one as ``.ernie``.

    Returns:
        The same model.
    """
    from paddlenlp.transformers import ErnieModel

    for layer in [model, *model.sublayers()]:
        if getattr(layer, PATCHED_FLAG, False):
            continue
        if isinstance(layer, ErnieModel):
            _patch(layer, _ernie_forward)
        elif isinstance(layer, paddle.nn.MultiHeadAttention):
            _patch(layer, _mha_forward)
        elif isinstance(layer, paddle.nn.TransformerEncoderLayer):
            _patch(layer, _encoder_layer_forward)
        elif isinstance(layer, paddle.nn.TransformerEncoder):
            _patch(layer, _encoder_forward)
    return model


def remove_dynabert_forward(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """Undo :func:`apply_dynabert_forward` (the class forwards apply again)."""
    for layer in [model, *model.sublayers()]:
        if getattr(layer, PATCHED_FLAG, False):
            del layer.__dict__["forward"]
            delattr(layer, PATCHED_FLAG)
    return model


def dynabert_net_config(
    ofa_model: Any,
    width: float,
    narrowed: Sequence[str] = ("q_proj", "k_proj", "v_proj", "linear1"),
) -> dict[str, dict[str, float]]:
    """OFA sub-network config for one DynaBERT width.

    Q/K/V projections and the first FFN layer lose output columns (heads and neurons); every
    other supernet layer (embeddings, ``out_proj``, ``linear2``, pooler, classifier) keeps its
    full output so the hidden size never changes. Built from the supernet's own layer list,
    which is more robust than ``paddleslim``'s position-based ``dynabert_config``.

    Args:
        ofa_model: A ``paddleslim.nas.ofa.OFA`` instance.
        width: Share of heads and FFN neurons kept.
        narrowed: Layer-name suffixes whose outputs shrink.

    Returns:
        ``{layer_name: {"expand_ratio": r}}`` for ``OFA.set_net_config``.
    """
    return {
        name: {"expand_ratio": width if name.split(".")[-1] in narrowed else 1.0}
        for name in ofa_model._ofa_layers
    }


def prepare_ofa() -> None:
    """Apply the process-wide fixes (version check, SuperLayerNorm) before building an OFA."""
    require_paddle_2()
    fix_super_layer_norm()


# --------------------------------------------------------------------------- PTQ


class _ArrayDataset(paddle.io.Dataset):
    """Rows of aligned int64 arrays, one sample = one tuple of rows."""

    def __init__(self, arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> None:
        super().__init__()
        self._arrays = [np.asarray(arrays[name], dtype="int64") for name in names]

    def __len__(self) -> int:
        return len(self._arrays[0])

    def __getitem__(self, idx: int) -> tuple[np.ndarray, ...]:
        return tuple(a[idx] for a in self._arrays)


def calibration_loader(
    arrays: Mapping[str, np.ndarray], batch_size: int, input_names: Sequence[str]
) -> Any:
    """A static-mode DataLoader over encoded calibration inputs, as paddle 2.6 PTQ needs.

    Must be called in static mode (``paddle.enable_static()``).

    Args:
        arrays: The program's inputs by name, int64 ``[n, seq]`` each.
        batch_size: Examples per calibration batch.
        input_names: The program's feed names, in feed order.

    Returns:
        ``paddle.io.DataLoader`` with ``feed_list`` of the program's inputs.

    Raises:
        RuntimeError: If paddle is in dynamic mode.
    """
    if paddle.in_dynamic_mode():
        raise RuntimeError("calibration_loader must be built in static mode")
    seq = int(np.asarray(arrays[input_names[0]]).shape[1])
    feed = [paddle.static.data(name, [None, seq], "int64") for name in input_names]
    return paddle.io.DataLoader(
        _ArrayDataset(arrays, input_names),
        feed_list=feed,
        return_list=False,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
    )


@contextlib.contextmanager
def ptq_zero_dim_fix() -> Iterator[None]:
    """While active, PTQ's variable reads return at least 1-D arrays (see module docstring)."""
    from paddle.static.quantization import post_training_quantization as ptq

    original = ptq.utils.load_variable_data

    def load_at_least_1d(scope: Any, var_name: str) -> np.ndarray:
        return np.atleast_1d(original(scope, var_name))

    ptq.utils.load_variable_data = load_at_least_1d
    try:
        yield
    finally:
        ptq.utils.load_variable_data = original


def program_op_types(pdmodel: str | Path) -> Counter[str]:
    """Op types (with counts) of a saved ``.pdmodel`` program, read without static mode."""
    desc = program_desc(pdmodel)
    return Counter(op.type for block in desc.blocks for op in block.ops)


#: Paddle's PTQ modules that draw tqdm bars through a module-level ``tqdm`` name.
_PTQ_BAR_MODULES = (
    "paddle.static.quantization.post_training_quantization",
    "paddle.static.quantization.quantization_pass",
)


def _disable_ptq_bars() -> list[tuple[Any, Any]]:
    """Swap each PTQ module's ``tqdm`` for one that draws nothing; return what to restore."""
    import functools
    import importlib

    swapped = []
    for name in _PTQ_BAR_MODULES:
        module = importlib.import_module(name)
        original = getattr(module, "tqdm", None)
        if original is not None:
            setattr(module, "tqdm", functools.partial(original, disable=True))  # noqa: B010
            swapped.append((module, original))
    return swapped


#: Loggers of paddle's and paddleslim's PTQ: an INFO line per phase and candidate.
_PTQ_LOGGERS = ("paddle.static.quantization", "paddleslim")


@contextlib.contextmanager
def quiet_ptq(bars: bool) -> Iterator[None]:
    """While active, PTQ logs only warnings and (unless ``bars``) draws no tqdm bars.

    ``quant_post_static`` logs every phase at INFO in its own format and draws three tqdm
    bars per candidate; in a pipeline log (no terminal) each bar update is a line of its own,
    some 40 lines per candidate. tqdm reads ``TQDM_DISABLE`` only once, when it is imported
    (its ``envwrap`` binds the environment into ``tqdm.__init__``), and paddle's PTQ modules
    have imported it by the time a stage runs, so setting the variable here did nothing (the
    quantize stage alone was 260 of a 592-line ``make run`` log). Their module-level ``tqdm``
    name is swapped for a disabled one while the block runs; the variable is still set for
    code that imports tqdm later.

    Args:
        bars: Keep the bars (a person at a terminal).
    """
    import logging
    import os

    names = [n for n in logging.root.manager.loggerDict if n.startswith(_PTQ_LOGGERS)]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    previous = os.environ.get("TQDM_DISABLE")
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    swapped: list[tuple[Any, Any]] = []
    if not bars:
        os.environ["TQDM_DISABLE"] = "1"
        swapped = _disable_ptq_bars()
    try:
        yield
    finally:
        for module, original in swapped:
            setattr(module, "tqdm", original)  # noqa: B010
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
