"""Tiny real artifacts the fault cases start from, built once and copied into each case.

Everything here is written by the project's own writers (``write_task_dir``, ``build_vocab``,
``save_model``, ``export_static``, a two-step ``distill`` run), so a case that damages a copy
damages exactly what a user would hold.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The tiny student/teacher shape of every model here (seconds to build and export).
TINY = {
    "num_layers": 2,
    "hidden_size": 32,
    "num_heads": 4,
    "intermediate_size": 64,
    "max_position": 64,
    "dropout": 0.0,
}
TASK = "local_reviews"
LABELS = ["0", "1"]
_GOOD = ("这个东西很好用", "质量非常好", "物流很快", "很满意这次购物", "包装精美", "性价比高")
_BAD = ("质量太差了", "完全不能用", "物流太慢", "非常失望", "包装破损", "不值这个价")
#: Distillation overrides for a two-step run on the tiny shapes (a fault case reuses them).
DISTILL_CONFIG = {
    "distill": {
        "student": TINY,
        "teacher_layer": 2,
        "student_layer": 2,
        "num_relation_heads": 4,
        "max_steps": 2,
        "batch_size": 4,
        "max_seq_len": 16,
        "warmup_steps": 0,
        "save_steps": 1,
        "logging_steps": 1,
    }
}


def _examples(split: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        good = i % 2 == 0
        text = (_GOOD if good else _BAD)[i % 6] + f"，{split}第{i}条"
        out.append({"id": i, "sentence": text, "label": "1" if good else "0"})
    return out


@dataclass
class Fixtures:
    """Lazily built artifacts under ``root`` (one per kind); :meth:`copy` hands out copies.

    Attributes:
        root: Where the originals live.
        s3: A running test S3 server (``endpoint``, ``access_key``, ``secret_key``) or None.
        s3_auth: The auth-enforcing test server, or None.
    """

    root: Path
    s3: Any = None
    s3_auth: Any = None
    _built: dict[str, Path] = field(default_factory=dict)

    def get(self, kind: str) -> Path:
        """The original artifact ``kind`` (built on first use). Never write into it."""
        if kind not in self._built:
            self._built[kind] = getattr(self, f"_build_{kind.replace('-', '_')}")()
        return self._built[kind]

    def copy(self, kind: str, dest: Path) -> Path:
        """A private copy of artifact ``kind`` at ``dest``."""
        src = self.get(kind)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        return dest

    # ------------------------------------------------------------------ builders

    def _build_task(self) -> Path:
        from ppminilm.data import write_task_dir

        splits = {s: _examples(s, n) for s, n in (("train", 32), ("dev", 8))}
        splits["test"] = _examples("test", 6)
        return write_task_dir(self.root / "task", TASK, splits, source="fault matrix")

    def _build_corpus(self) -> Path:
        out = self.root / "corpus"
        out.mkdir()
        lines = [e["sentence"] for s in ("train", "dev") for e in _examples(s, 24)]
        (out / "part-00000.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out

    def _build_vocab(self) -> Path:
        from ppminilm.data.tokenizer import build_vocab

        corpus = self.get("corpus")
        build_vocab(sorted(corpus.glob("*.txt")), self.root / "vocab", min_freq=1)
        return self.root / "vocab"

    def _vocab_size(self) -> int:
        return len((self.get("vocab") / "vocab.txt").read_text(encoding="utf-8").splitlines())

    def _save(self, kind: str, name: str, labels: list[str]) -> Path:
        from ppminilm.compat.paddle import set_seed
        from ppminilm.config import ModelArch
        from ppminilm.modeling.ernie import build_model
        from ppminilm.modeling.saved import ModelInfo, save_model

        set_seed(1)
        arch = ModelArch(**TINY, vocab_size=self._vocab_size())
        model = build_model(arch, kind, num_classes=max(len(labels), 2))
        info = ModelInfo(arch=arch, kind=kind, task=TASK if labels else "", labels=labels)
        return save_model(model, self.root / name, info, tokenizer_dir=self.get("vocab"))

    def _build_classifier(self) -> Path:
        return self._save("classifier", "classifier", LABELS)

    def _build_teacher(self) -> Path:
        return self._save("mlm", "teacher", [])

    def _build_inference(self) -> Path:
        from ppminilm.modeling.export import export_static
        from ppminilm.modeling.saved import load_model

        model, info = load_model(self.get("classifier"))
        return export_static(
            model, info, self.root / "inference", max_seq_len=16, tokenizer_dir=self.get("vocab")
        )

    def _build_distill_config(self) -> Path:
        path = self.root / "distill_config.json"
        path.write_text(json.dumps(DISTILL_CONFIG), encoding="utf-8")
        return path

    def _build_checkpoints(self) -> Path:
        """A checkpoint directory of a finished two-step distillation (step 1 and step 2)."""
        from ppminilm.cli import main

        ckpt = self.root / "checkpoints"
        rc = main(
            [
                "distill",
                "--corpus", str(self.get("corpus")),
                "--teacher", str(self.get("teacher")),
                "--out", str(self.root / "student"),
                "--checkpoint-dir", str(ckpt),
                "--config", str(self.get("distill-config")),
            ]
        )  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"fixture distillation failed with exit code {rc}")
        return ckpt

    def _build_student(self) -> Path:
        self.get("checkpoints")
        return self.root / "student"
