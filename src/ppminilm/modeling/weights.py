"""Weight files: safetensors first (not executable), Paddle's pickle format only when named.

Every model this project saves writes ``model.safetensors``: a flat tensor file that cannot
run code when read, and the format PaddleNLP's ``from_pretrained`` prefers when both exist.
A ``.pdparams`` file is a Python pickle: loading one can execute code it carries. It is read
only when a directory has no safetensors file (an older run's model, or a PaddleNLP checkpoint
the user named), and each such read is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.contracts import LEGACY_WEIGHTS_FILE, WEIGHTS_FILE
from ppminilm.errors import UserError

logger = logging.getLogger(__name__)

#: Weight file names in the order they are looked for.
WEIGHT_FILES = (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE)


class ModelFormatError(UserError):
    """A model directory is missing files, or its files disagree with each other."""


def find_weights(model_dir: str | Path) -> Path:
    """The weight file of a model directory: ``model.safetensors``, else ``model_state.pdparams``.

    Raises:
        ModelFormatError: Naming the directory, what was looked for and what is there.
    """
    root = Path(model_dir)
    for name in WEIGHT_FILES:
        if (root / name).is_file():
            return root / name
    found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    raise ModelFormatError(
        f"{root}: no weights; expected {' or '.join(WEIGHT_FILES)}, found {found or 'nothing'}"
    )


def has_weights(model_dir: str | Path) -> bool:
    """Whether a directory holds one of :data:`WEIGHT_FILES`."""
    return any((Path(model_dir) / name).is_file() for name in WEIGHT_FILES)


def save_weights(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write a state dict (Paddle tensors or arrays) as safetensors.

    Args:
        state: Parameter name -> tensor.
        path: The ``.safetensors`` file to write.
    """
    from safetensors.numpy import save_file

    arrays = {
        name: np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value)
        for name, value in state.items()
    }
    save_file(arrays, str(path), metadata={"format": "np"})
    return Path(path)


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Read a weight file into name -> array.

    Args:
        path: A ``.safetensors`` file, or a ``.pdparams`` pickle (logged: it can run code).

    Raises:
        ModelFormatError: If the file cannot be read as that format.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelFormatError(f"{path}: empty file (0 bytes; an interrupted write or copy?)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        from ppminilm.compat.paddle import paddle

        logger.info("reading %s: a pickle (safetensors preferred where present)", path)
        state = paddle.load(str(path), return_numpy=True)
    except Exception as exc:  # safetensors and pickle raise many kinds on a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFormatError(
            f"{path}: not a readable weight file ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(state, Mapping):
        raise ModelFormatError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {str(k): np.asarray(v) for k, v in state.items()}
