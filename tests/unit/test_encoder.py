"""The fast encoder gives paddlenlp's ids exactly: every text of the local data, single and in
pairs, at lengths that cut many of them, plus strings aimed at each rule it reproduces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ppminilm.data import load_task_dir
from ppminilm.data.encoder import MAX_CACHED_WORDS, FastEncoder, fast_encoder
from ppminilm.data.tokenizer import encode_pairs_marking_truncation, load_tokenizer

#: Lengths: the local profile's, one that cuts most reviews, the smallest possible.
LENGTHS = (64, 12, 3)
#: One string per rule of the basic tokenizer (and the traps around it).
ADVERSARIAL = [
    "Hello WORLD café naïve ÀÉÎ",  # lower case, accents
    "abc[SEP]def [sep] [UNK] [MASK]x",  # special tokens written in the text
    " [PAD] 好 [CLS]",  # ... with the whitespace paddlenlp strips around them
    "　全角空格\t制表\n换行\r回车",  # full-width and ASCII whitespace
    "\x00\x01控制\u200b零宽\ufeff\ufffd坏",  # control, zero-width, replacement characters
    "𠀀𠀁 扩展B 㐀 豈",  # CJK extension B, A, compatibility ideographs
    "ｆｕｌｌ　ｗｉｄｔｈ　１２３ Ⅻ ① ㈱",  # full-width forms, symbols
    "😀😃 emoji ☺ ★",  # symbols (paddlenlp splits them, HF's BERT does not)
    "ΣΑΣ ΟΔΟΣ σας",  # capital sigma: context-dependent lower case
    "İstanbul ǅ ß ﬁ a\u0301\u0301b",  # lower case that changes length, combining marks
    "a" * 150 + " " + "b" * 99,  # words longer than WordPiece's 100 characters, and not
    "http://example.com/a?b=c&d=e, e.g. U.S.A. 12345678901234567890 ...!!!???",
    "مرحبا بالعالم Привет мир こんにちは 안녕하세요",
    "x",
]


@pytest.fixture(scope="module")
def tokenizer(local_data_dir: Path) -> object:
    return load_tokenizer(local_data_dir / "vocab")


@pytest.fixture(scope="module")
def texts(local_data_dir: Path) -> dict[str, list]:
    reviews = load_task_dir(local_data_dir / "tasks" / "local_reviews")
    pairs = load_task_dir(local_data_dir / "tasks" / "local_pairs")
    singles = [
        e["sentence"] for split in ("train", "dev", "calib", "test") for e in reviews.split(split)
    ]
    two = [
        (e["sentence1"], e["sentence2"]) for split in ("train", "dev") for e in pairs.split(split)
    ]
    return {
        "singles": singles + ADVERSARIAL,
        "pairs": two + list(zip(ADVERSARIAL, ADVERSARIAL[::-1])),
    }


def _differences(tokenizer: object, pairs: list, length: int) -> list[str]:
    encoder = fast_encoder(tokenizer)
    assert encoder is not None
    want, want_cut = encode_pairs_marking_truncation(tokenizer, pairs, length)
    got, got_cut = encoder.encode(pairs, length)
    out = [
        f"{pairs[i]!r:.80} at {length}"
        for i in range(len(pairs))
        if any(not np.array_equal(want[k][i], got[k][i]) for k in want)
    ]
    if want_cut != got_cut:
        out.append(f"truncated rows differ at {length}: {want_cut} vs {got_cut}")
    return out


@pytest.mark.parametrize("length", LENGTHS)
def test_single_texts_encode_exactly_like_paddlenlp(tokenizer, texts, length: int) -> None:
    pairs = [(t, None) for t in texts["singles"]]
    assert _differences(tokenizer, pairs, length) == []


@pytest.mark.parametrize("length", LENGTHS)
def test_text_pairs_encode_exactly_like_paddlenlp(tokenizer, texts, length: int) -> None:
    assert _differences(tokenizer, texts["pairs"], length) == []


def test_the_comparison_can_fail(tokenizer) -> None:
    """A deliberately broken encoder (CJK characters not split off) is caught."""
    encoder = fast_encoder(tokenizer)
    assert encoder is not None
    encoder.basic.tokenize_chinese_chars = False
    try:
        got, _ = encoder.encode([("好用", None)], 8)
    finally:
        encoder.basic.tokenize_chinese_chars = True
    want, _ = encode_pairs_marking_truncation(tokenizer, [("好用", None)], 8)
    assert not np.array_equal(want["input_ids"], got["input_ids"])


def test_words_cache_is_bounded(tokenizer) -> None:
    encoder = FastEncoder(tokenizer)
    encoder.ids(" ".join(f"w{i}" for i in range(50)))
    assert 0 < len(encoder._words) <= MAX_CACHED_WORDS


def test_tokenizers_of_another_structure_get_none(tokenizer) -> None:
    class Other:
        pass

    assert fast_encoder(Other()) is None
    tokenizer.truncation_side = "left"
    try:
        assert fast_encoder(tokenizer) is None
    finally:
        tokenizer.truncation_side = "right"


def test_short_lengths_are_refused(tokenizer) -> None:
    with pytest.raises(ValueError, match="max_seq_len=2"):
        FastEncoder(tokenizer).encode([("好", None)], 2)


def test_prefill_caches_whole_words_and_keeps_the_ids(tokenizer, texts) -> None:
    encoder = FastEncoder(tokenizer)
    cached = encoder.prefill()
    assert cached > 100 and "##" not in "".join(encoder._words)
    pairs = [(t, None) for t in texts["singles"][:200]]
    want, _ = encode_pairs_marking_truncation(tokenizer, pairs, 64)
    got, _ = encoder.encode(pairs, 64)
    assert all(np.array_equal(want[k], got[k]) for k in want)
