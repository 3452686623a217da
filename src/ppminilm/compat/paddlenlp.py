"""paddlenlp, imported the safe way and quietly.

paddlenlp's logger (``PaddleNLP``) is set to DEBUG when paddlenlp is first imported and prints
an INFO line for every tokenizer it loads or saves (with ANSI colours): dozens of lines per
pipeline step that tell a person nothing. :func:`module` imports a paddlenlp module after
:mod:`ppminilm.compat.paddle` (zlib before paddle) and lowers that logger to WARNING
(``PPMINILM_PADDLENLP_LOG=INFO`` keeps paddlenlp's own level).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

#: The stdlib logger paddlenlp's ``paddlenlp.utils.log.logger`` writes through.
PADDLENLP_LOGGER = "PaddleNLP"


def module(name: str = "transformers") -> ModuleType:
    """``paddlenlp.<name>`` (e.g. ``transformers``, ``datasets``), imported zlib-first, quiet.

    Args:
        name: Sub-module of paddlenlp.
    """
    importlib.import_module("ppminilm.compat.paddle")
    mod = importlib.import_module(f"paddlenlp.{name}")
    level = os.environ.get("PPMINILM_PADDLENLP_LOG", "WARNING").upper()
    logging.getLogger(PADDLENLP_LOGGER).setLevel(getattr(logging, level, logging.WARNING))
    return mod
