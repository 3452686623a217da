"""Where each width's sub-model lies in the prune stage's output (paddle-free).

The prune output holds every trained width: the smallest at the top (``model/``,
``inference/``; what a one-width run always produced) and the others under ``width_<w>/``.
``prune_summary.json`` lists the widths; paths are resolved from the layout, never from the
absolute paths recorded at write time (a KFP artifact is read elsewhere than it was written).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ppminilm.contracts import PRUNE_SUMMARY_FILE, ContractError
from ppminilm.io import read_json_file

MODEL_SUBDIR, INFERENCE_SUBDIR = "model", "inference"
#: Widths closer than this are the same width (loop items pass through JSON as doubles).
WIDTH_TOLERANCE = 1e-6


def width_subdir(widths: Sequence[float], width: float) -> Path:
    """The directory of ``width`` inside the prune output (relative; ``.`` = the smallest)."""
    return Path() if abs(width - min(widths)) < WIDTH_TOLERANCE else Path(f"width_{width:g}")


def trained_widths(prune_dir: str | Path) -> list[float]:
    """The widths a prune output holds (from its summary).

    Raises:
        ContractError: If ``prune_dir`` is not a prune stage output.
    """
    path = Path(prune_dir) / PRUNE_SUMMARY_FILE
    if not path.is_file():
        raise ContractError(f"{prune_dir}: no {PRUNE_SUMMARY_FILE}; not a prune stage output")
    summary = read_json_file(path, ContractError)
    widths = summary.get("widths") if isinstance(summary, dict) else None
    if not isinstance(widths, list) or not widths:
        raise ContractError(f"{path}: field 'widths': expected a non-empty list of widths")
    return [float(w) for w in widths]


def width_dirs(prune_dir: str | Path, width: float) -> tuple[Path, Path]:
    """The saved model and static inference directories of ``width`` in a prune output.

    Raises:
        ContractError: If the output did not train ``width`` (names the widths it did).
    """
    widths = trained_widths(prune_dir)
    match = [w for w in widths if abs(w - width) < WIDTH_TOLERANCE]
    if not match:
        raise ContractError(
            f"{prune_dir}: width {width:g} was not trained by this prune step (trained: "
            f"{', '.join(f'{w:g}' for w in widths)}); the prune step's widths and the search "
            "loop's must be the same list"
        )
    root = Path(prune_dir) / width_subdir(widths, match[0])
    return root / MODEL_SUBDIR, root / INFERENCE_SUBDIR
