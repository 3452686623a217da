"""Versions of the packages that shape a saved model (for provenance), read without paddle."""

from __future__ import annotations

from importlib import metadata

#: Distributions recorded in every provenance record, when installed.
RECORDED_PACKAGES = (
    "ppminilm-kfp",
    "paddlepaddle",
    "paddlepaddle-gpu",
    "paddlenlp",
    "paddleslim",
    "numpy",
    # CPU peer engines (ppminilm.inference.engines), when a model was converted for one.
    "openvino",
    "nncf",
    "onnxruntime",
    "paddle2onnx",
)


def package_versions() -> dict[str, str]:
    """Versions of :data:`RECORDED_PACKAGES` that are installed.

    Returns:
        Mapping of distribution name to version string (missing ones are left out).
    """
    out: dict[str, str] = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
