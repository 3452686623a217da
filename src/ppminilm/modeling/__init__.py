"""Models: paddle-free size accounting, ERNIE builders, the saved-model format, static export.

* :mod:`.accounting` -- ``count_params`` / ``count_flops``: the seed table's size columns,
  computed from the architecture alone (no paddle).
* :mod:`.ernie` -- build ERNIE-layout encoders/classifiers and shrink them to a width.
* :mod:`.saved` -- the ``Model`` artifact: weights + ``model_config.json`` + tokenizer +
  provenance; loading our own and paddlenlp ``save_pretrained`` directories.
* :mod:`.export` -- the static ``inference model`` artifact and its ``serving.json``.
"""

from ppminilm._lazy import lazy_exports
from ppminilm.modeling.accounting import FLOPS_SEQ_LEN, count_flops, count_params, format_count

__all__ = [
    "FLOPS_SEQ_LEN",
    "ModelFormatError",
    "ModelInfo",
    "ServingConfig",
    "build_model",
    "count_flops",
    "count_params",
    "export_static",
    "format_count",
    "load_model",
    "read_serving_config",
    "save_model",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ModelFormatError": "saved",
        "ModelInfo": "saved",
        "load_model": "saved",
        "save_model": "saved",
        "build_model": "ernie",
        "ServingConfig": "export",
        "export_static": "export",
        "read_serving_config": "export",
    },
)
