"""Helpers the fault cases share: exit codes, file writing, a cheap fine-tune command."""

from __future__ import annotations

from pathlib import Path

from faultmatrix.fixtures import Fixtures

USER = 2  # exit code of a user error


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _finetune(fx: Fixtures, root: Path, *extra: str, task: Path | None = None) -> list[str]:
    """``finetune`` of a scratch model on a private task copy, one step (cheap if it runs)."""
    task = task or fx.copy("task", root / "task")
    vocab = fx.copy("vocab", root / "vocab")
    return [
        "finetune", "--task-dir", str(task), "--init", "scratch", "--tokenizer-dir", str(vocab),
        "--out", str(root / "out"), "--max-steps", "1", "--max-seq-len", "16", *extra,
    ]  # fmt: skip
