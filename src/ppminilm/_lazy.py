"""Lazy public names for subpackages whose modules import paddle.

A package ``__init__`` lists its public names and the module each lives in; the module is
imported on first access, so ``import ppminilm.modeling.accounting`` (paddle-free) does not
import paddle through its package's ``__init__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` serving ``exports`` lazily.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> submodule (relative to ``package``) that defines it.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 -- the module-level hook (PEP 562)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(exports)

    return __getattr__, __dir__
