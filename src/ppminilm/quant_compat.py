"""Paddle 2.6 workarounds for PaddleSlim's ``quant_post_static``, in one place.

Each is covered by a test in ``tests/unit/test_quantize.py``:

1. :func:`calibration_loader` -- on paddle 2.6, ``quant_post_static`` only accepts calibration
   data as ``paddle.io.DataLoader(dataset, feed_list=[paddle.static.data(...)],
   return_list=False)`` built in static mode: a generator or a dygraph (``return_list=True``)
   loader fails when the executor feeds the program.
2. :func:`ptq_zero_dim_fix` -- ``algo='avg'`` crashes with ``IndexError: tuple index out of
   range``. PTQ samples the outputs of "observer" ops too (``slice``, ``fill_constant``...),
   and paddle 2.6 jit export produces 0-D tensors there (the scalar ``pad_token_id`` that the
   padding mask compares against; ``shape(x)[i]`` slices). ``PostTrainingQuantization.
   _sample_avg`` does ``var.reshape(var.shape[0], -1)``, which needs at least one dimension.
   While quantizing, we make every sampled value at least 1-D (``np.atleast_1d``): a no-op for
   real activations and weights, and it gives scalars the same max/mean they had.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.export import INPUT_NAMES
from ppminilm.paddle_env import paddle

_CALIB_INPUTS = INPUT_NAMES


class _ArrayDataset(paddle.io.Dataset):
    """Rows of aligned int64 arrays, one sample = one tuple of rows."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        self._arrays = [np.asarray(arrays[name], dtype="int64") for name in _CALIB_INPUTS]

    def __len__(self) -> int:
        return len(self._arrays[0])

    def __getitem__(self, idx: int) -> tuple[np.ndarray, ...]:
        return tuple(a[idx] for a in self._arrays)


def calibration_loader(arrays: Mapping[str, np.ndarray], batch_size: int) -> Any:
    """A static-mode DataLoader over encoded calibration inputs, as paddle 2.6 PTQ needs.

    Must be called in static mode (``paddle.enable_static()``).

    Args:
        arrays: ``input_ids`` and ``token_type_ids`` int64 ``[n, seq]``.
        batch_size: Examples per calibration batch.

    Returns:
        ``paddle.io.DataLoader`` with ``feed_list`` of the program's inputs.

    Raises:
        RuntimeError: If paddle is in dynamic mode.
    """
    if paddle.in_dynamic_mode():
        raise RuntimeError("calibration_loader must be built in static mode")
    seq = int(np.asarray(arrays[_CALIB_INPUTS[0]]).shape[1])
    feed = [paddle.static.data(name, [None, seq], "int64") for name in _CALIB_INPUTS]
    return paddle.io.DataLoader(
        _ArrayDataset(arrays),
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
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString(Path(pdmodel).read_bytes())
    return Counter(op.type for block in desc.blocks for op in block.ops)
