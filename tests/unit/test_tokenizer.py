"""Character vocab and paddlenlp tokenizer: build, load, encode."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ppminilm.data.tokenizer import (
    SPECIAL_TOKENS,
    build_vocab,
    count_tokens,
    encode_examples,
    encode_pairs,
    load_tokenizer,
    vocab_size,
)

CORPUS = [
    "今天天气很好，我们去公园散步。",
    "我们今天去北京，天气很好！",
    "iPhone 12 的价格是 5999 元，Apple 公司说。",
    "公园里有很多人在散步。",
]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vocab")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 2) + "\n", encoding="utf-8")
    build_vocab([corpus], root / "tok", min_freq=2)
    return root / "tok"


@pytest.fixture(scope="module")
def tokenizer(vocab_dir: Path):
    return load_tokenizer(vocab_dir)


def test_vocab_layout(vocab_dir: Path) -> None:
    vocab = (vocab_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tuple(vocab[:5]) == SPECIAL_TOKENS
    assert len(vocab) == len(set(vocab))
    assert vocab[5] in {"天", "，", "们", "我", "今", "公", "园", "气", "好", "很"}  # frequent
    for char in "az09":
        assert char in vocab and f"##{char}" in vocab
    assert "apple" in vocab and "5999" in vocab  # frequent words kept whole (lower-cased)
    assert (vocab_dir / "tokenizer_config.json").is_file()


def test_vocab_min_freq_and_max_size(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("甲甲甲乙\n", encoding="utf-8")
    vocab = build_vocab([corpus], tmp_path / "a", min_freq=2).read_text().splitlines()
    assert "甲" in vocab and "乙" not in vocab
    vocab = build_vocab([corpus], tmp_path / "b", min_freq=1, max_size=110)
    assert len(vocab.read_text().splitlines()) == 110
    with pytest.raises(ValueError, match="max_size"):
        build_vocab([corpus], tmp_path / "c", max_size=100)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        build_vocab([tmp_path / "missing.txt"], tmp_path / "d")


def test_count_tokens_matches_the_basic_tokenizer(tokenizer) -> None:
    from paddlenlp.transformers import BasicTokenizer

    lines = [*CORPUS, "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３ café naïve", "\t控制\x07字符 ①②"]
    expected = Counter(BasicTokenizer(do_lower_case=True).tokenize("\n".join(lines)))
    assert count_tokens(lines) == expected


def test_loads_as_paddlenlp_tokenizer(tokenizer, vocab_dir: Path) -> None:
    assert type(tokenizer).__name__ == "ErnieTokenizer"
    size = len((vocab_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert vocab_size(tokenizer) == size
    assert tokenizer.pad_token_id == 0
    assert tokenizer.convert_tokens_to_ids(["[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [1, 2, 3, 4]


def test_roundtrip_chinese_and_no_unk_for_ascii(tokenizer) -> None:
    ids = tokenizer("今天我们去公园散步")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["[CLS]", *"今天我们去公园散步", "[SEP]"]
    assert "".join(tokens[1:-1]) == "今天我们去公园散步"
    pieces = tokenizer.tokenize("Zebra 2024")
    assert "[UNK]" not in pieces and pieces[0] == "z" and pieces[1].startswith("##")
    assert tokenizer.tokenize("龘") == ["[UNK]"]  # a character never seen


def test_encode_single_padding_and_truncation(tokenizer) -> None:
    out = encode_pairs(tokenizer, [("今天天气很好", None), ("公园" * 40, None)], max_seq_len=16)
    assert set(out) == {"input_ids", "token_type_ids"}
    for array in out.values():
        assert array.shape == (2, 16) and array.dtype == np.int64
    short = out["input_ids"][0]
    assert short[:8].tolist() == tokenizer("今天天气很好")["input_ids"]
    assert (short[8:] == tokenizer.pad_token_id).all()
    long = out["input_ids"][1]
    assert long[0] == tokenizer.cls_token_id and long[-1] == tokenizer.sep_token_id
    assert (long != tokenizer.pad_token_id).all()
    assert not out["token_type_ids"].any()


def test_encode_pairs_token_types_and_longest_first(tokenizer) -> None:
    out = encode_pairs(tokenizer, [("今天", "公园"), ("天" * 30, "好好")], max_seq_len=12)
    ids, types = out["input_ids"], out["token_type_ids"]
    assert ids.shape == types.shape == (2, 12)
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert tokens[:7] == ["[CLS]", "今", "天", "[SEP]", "公", "园", "[SEP]"]
    assert types[0].tolist() == [0, 0, 0, 0, 1, 1, 1] + [0] * 5
    # Longest first: the long first text is cut, the short second one survives whole.
    tokens = tokenizer.convert_ids_to_tokens(ids[1].tolist())
    assert tokens[-3:] == ["好", "好", "[SEP]"] and tokens.count("天") == 7
    assert types[1].tolist() == [0] * 9 + [1] * 3


def test_encode_rejects_mixed_pairs_and_empty_input(tokenizer) -> None:
    with pytest.raises(ValueError, match="mix"):
        encode_pairs(tokenizer, [("a", None), ("b", "c")], 8)
    with pytest.raises(ValueError, match="max_seq_len"):
        encode_pairs(tokenizer, [("a", None)], 2)
    assert encode_pairs(tokenizer, [], 8)["input_ids"].shape == (0, 8)


def test_encode_examples_uses_task_mapping(tokenizer) -> None:
    record = {
        "text": "我们去公园",
        "target": {"span1_index": 0, "span1_text": "我们", "span2_index": 3, "span2_text": "公园"},
    }
    out = encode_examples(tokenizer, [record], "cluewsc2020", max_seq_len=16)
    tokens = tokenizer.convert_ids_to_tokens(out["input_ids"][0].tolist())
    assert tokens[:11] == ["[CLS]", "_", "我", "们", "_", "去", "[", "公", "园", "]", "[SEP]"]


def test_load_tokenizer_errors_and_bare_vocab(tmp_path: Path, vocab_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no vocab\.txt"):
        load_tokenizer(tmp_path / "empty")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "vocab.txt").write_bytes((vocab_dir / "vocab.txt").read_bytes())
    tok = load_tokenizer(bare / "vocab.txt")
    assert tok.tokenize("今天") == ["今", "天"]


def test_local_vocab_covers_local_tasks(local_data_dir: Path) -> None:
    from ppminilm.data import load_task_dir

    tok = load_tokenizer(local_data_dir / "vocab")
    dev = load_task_dir(local_data_dir / "tasks" / "local_reviews").dev
    ids = encode_examples(tok, dev, "local_reviews", max_seq_len=64)["input_ids"]
    real = ids[ids != tok.pad_token_id]
    assert (real == tok.unk_token_id).mean() < 0.01  # dev text is not in the corpus
