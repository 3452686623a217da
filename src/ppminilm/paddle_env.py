"""The one place where paddle is imported and its known traps on 2.6 are worked around.

Import paddle through :func:`import_paddle` (or ``from ppminilm.paddle_env import paddle``)
instead of ``import paddle`` anywhere in this package.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib  # noqa: F401  -- MUST be imported before paddle, see below.
from types import ModuleType

logger = logging.getLogger(__name__)

# Trap 1: paddle 2.6's core library exports its own (older) zlib symbols. When `zlib` is first
# imported *after* paddle, the Python extension binds to paddle's copies and later zlib use
# (gzip, zipfile, PNG writing in matplotlib) crashes. Importing zlib first pins the system one.
# tests/unit/test_paddle_env.py checks the order in a fresh interpreter.

# Quieten paddle's GLOG chatter unless the user asked for it.
os.environ.setdefault("GLOG_minloglevel", "2")
# paddle imports distutils; setuptools' shim then warns once per process (every pipeline
# step). The warning is about setuptools' future, not about anything we can act on.
warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
os.environ.setdefault("FLAGS_call_stack_level", "1")

import paddle  # noqa: E402

paddle.set_printoptions(precision=6)


def import_paddle() -> ModuleType:
    """Return the paddle module, imported safely (zlib first).

    Returns:
        The ``paddle`` module.
    """
    return paddle


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Paddle RNGs for reproducible runs.

    Args:
        seed: The seed value.
    """
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a saved model (for provenance JSON).

    Returns:
        Mapping of package name to version string ("missing" when not installed).
    """
    from importlib import metadata

    out: dict[str, str] = {}
    for name in (
        "ppminilm-kfp",
        "paddlepaddle",
        "paddlepaddle-gpu",
        "paddlenlp",
        "paddleslim",
        "numpy",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
