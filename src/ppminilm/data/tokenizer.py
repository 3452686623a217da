"""Character vocab for the local profile, and loading/encoding with a paddlenlp tokenizer.

The vocab is built so paddlenlp's ``ErnieTokenizer`` (BERT basic tokenizer + WordPiece,
lower-casing) reads it like a pretrained Chinese vocab: CJK characters are single tokens;
other runs (English words, digit runs, full-width digits) are split by WordPiece, so the vocab
holds their first characters, ``##x`` continuation pieces and frequent whole words. Every ASCII
letter and digit, plain and ``##``, is always present, so an unseen English word or number is
spelled out piece by piece instead of becoming ``[UNK]``.
"""

from __future__ import annotations

import logging
import os
import re
import string
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.data import example_to_text_pair
from ppminilm.data.taskdir import DataError
from ppminilm.io import read_json_file, read_text_file, staged_dir

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
_ASCII_ALNUM = string.ascii_lowercase + string.digits
#: Always in the vocab: ASCII letters, digits and punctuation (the CLUEWSC2020 span markers
#: ``_ [ ]`` among them), so no ASCII character is ever ``[UNK]``.
_ALWAYS = _ASCII_ALNUM + string.punctuation
# The code points BERT's basic tokenizer treats as CJK (each one becomes its own token).
_CJK = re.compile(
    "[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
    "\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f]"
)


def _transformers() -> Any:
    """``paddlenlp.transformers``, imported after :mod:`ppminilm.compat.paddle` (zlib first).

    Imported on first use so that reading data does not pay for importing paddle.
    """
    from ppminilm.compat import paddlenlp

    return paddlenlp.module("transformers")


def _basic_tokenizer() -> Any:
    return _transformers().BasicTokenizer(do_lower_case=True)


def count_tokens(lines: Iterable[str]) -> Counter[str]:
    """Count basic-tokenizer tokens (what WordPiece then sees) in some text.

    CJK characters are counted with a fast path (the basic tokenizer would split them off
    anyway); the rest of the text goes through paddlenlp's ``BasicTokenizer``.

    Args:
        lines: Text lines.

    Returns:
        Token counts (CJK characters, punctuation, lower-cased words).
    """
    text = "\n".join(lines)
    basic = _basic_tokenizer()
    counts: Counter[str] = Counter()
    # The basic tokenizer surrounds CJK characters with spaces and then works chunk by chunk,
    # so tokenizing each distinct chunk once and multiplying gives the same counts, fast.
    chunks = Counter(_CJK.sub(" ", text).split()) + Counter(_CJK.findall(text))
    for chunk, n in chunks.items():
        for token in basic.tokenize(chunk):
            counts[token] += n
    return counts


def _ranked(counts: Mapping[str, int], min_freq: int) -> list[str]:
    return [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_freq]


def build_vocab(
    corpus_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    min_freq: int = 2,
    max_size: int | None = None,
) -> Path:
    """Build a character vocab from corpus files and save a loadable tokenizer directory.

    Order: ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``, then single characters
    by frequency, any missing ASCII letters/digits/punctuation, ``##`` continuation pieces by
    frequency (all ASCII letter/digit ones included), then frequent multi-character words
    (English words, numbers). Ties are broken alphabetically, so the vocab is deterministic.
    ``max_size`` cuts from the end, so only whole words and rare pieces are ever dropped.

    Args:
        corpus_files: Text files, one sentence a line.
        out_dir: Directory to write ``vocab.txt`` and paddlenlp's tokenizer config into.
        min_freq: Tokens seen fewer times are left out (read as ``[UNK]``, or spelled out).
        max_size: Cap on the vocab size (the tail, i.e. rare words, is cut).

    Returns:
        Path of the written ``vocab.txt``.

    Raises:
        FileNotFoundError: If a corpus file is missing.
        ValueError: If ``min_freq`` < 1 or ``max_size`` is smaller than the special tokens.
    """
    if min_freq < 1:
        raise ValueError(f"min_freq={min_freq} must be >= 1")
    floor = len(SPECIAL_TOKENS) + len(_ALWAYS) + len(_ASCII_ALNUM)
    if max_size is not None and max_size < floor:
        raise ValueError(
            f"max_size={max_size} must leave room for the special tokens and the ASCII "
            f"characters and pieces that are always included ({floor})"
        )
    lines: list[str] = []
    for path in map(Path, corpus_files):
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} does not exist")
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    counts = count_tokens(lines)

    chars: Counter[str] = Counter()
    pieces: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for token, n in counts.items():
        if token in SPECIAL_TOKENS:
            continue
        chars[token[0]] += n
        if len(token) > 1:
            words[token] += n
            for char in token[1:]:
                pieces["##" + char] += n
    vocab = list(SPECIAL_TOKENS)
    vocab += _ranked(chars, min_freq)
    vocab += [c for c in _ALWAYS if chars[c] < min_freq]
    vocab += _ranked(pieces, min_freq)
    vocab += ["##" + c for c in _ASCII_ALNUM if pieces["##" + c] < min_freq]
    vocab += _ranked(words, min_freq)
    vocab = list(dict.fromkeys(vocab))  # first position wins should a token repeat
    if max_size is not None:
        vocab = vocab[:max_size]

    out = Path(out_dir)
    with staged_dir(out, replace=True, kind="vocab") as tmp:
        staged_vocab = tmp / VOCAB_FILE
        staged_vocab.write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
        # save_pretrained writes tokenizer_config.json (tokenizer_class) +
        # special_tokens_map.json, the same files a pretrained vocab directory has.
        _transformers().ErnieTokenizer(vocab_file=str(staged_vocab)).save_pretrained(str(tmp))
    vocab_path = out / VOCAB_FILE
    logger.info(
        "vocab of %d tokens (%d distinct basic tokens, min_freq %d) -> %s",
        len(vocab),
        len(counts),
        min_freq,
        vocab_path,
    )
    return vocab_path


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a paddlenlp tokenizer from a local directory (never from a hub).

    A directory with ``tokenizer_config.json`` (as ``save_pretrained`` writes, e.g. an ERNIE or
    BERT Chinese vocab) is loaded with ``AutoTokenizer``; a bare ``vocab.txt`` directory with
    ``ErnieTokenizer``.

    Args:
        path: The tokenizer directory (or its ``vocab.txt``).

    Returns:
        The tokenizer (``ErnieTokenizer``/``BertTokenizer``).

    Raises:
        FileNotFoundError: Naming the path when the directory or its ``vocab.txt`` is missing.
        DataError: If ``vocab.txt`` is not a usable vocabulary (:func:`check_vocab`).
    """
    root = Path(path)
    if root.is_file() and root.name == VOCAB_FILE:
        root = root.parent
    if not root.is_dir():
        raise FileNotFoundError(
            f"tokenizer directory {root} does not exist (expected a local "
            f"directory with {VOCAB_FILE}; hub names are not loaded)"
        )
    if not (root / VOCAB_FILE).is_file():
        raise FileNotFoundError(f"tokenizer directory {root} has no {VOCAB_FILE}")
    check_vocab(root)
    transformers = _transformers()
    if (root / TOKENIZER_CONFIG).is_file():
        return transformers.AutoTokenizer.from_pretrained(str(root))
    return transformers.ErnieTokenizer(vocab_file=str(root / VOCAB_FILE))


def _special_tokens(root: Path) -> list[str]:
    """The special tokens the tokenizer will look up: its config's, else BERT's five."""
    config = root / TOKENIZER_CONFIG
    if config.is_file():
        data = read_json_file(config)
        if isinstance(data, dict):
            named = [data.get(f"{k}_token") for k in ("pad", "unk", "cls", "sep", "mask")]
            tokens = [t for t in named if isinstance(t, str)]
            if tokens:
                return tokens
    return list(SPECIAL_TOKENS)


def check_vocab(tokenizer_dir: str | os.PathLike[str]) -> int:
    """Check a tokenizer directory's ``vocab.txt`` before paddlenlp reads it.

    paddlenlp takes a token's id from its line number and keeps the last line of a repeated
    token, so a repeat leaves a gap that later indexes past the embedding table; an empty file
    or a missing special token fails with an assertion. Here each is an error naming the
    file and line.

    Args:
        tokenizer_dir: Directory holding ``vocab.txt``.

    Returns:
        The number of tokens.

    Raises:
        DataError: On non-UTF-8 bytes, an empty vocab, a repeated token or a missing special
            token (``file:line``).
    """
    root = Path(tokenizer_dir)
    path = root / VOCAB_FILE
    text = read_text_file(path, DataError)
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise DataError(path, 1, "<token>", "one token a line", "an empty file")
    first_line: dict[str, int] = {}
    for line, token in enumerate(tokens, start=1):
        token = token.rstrip("\r")
        if token in first_line:
            raise DataError(
                path,
                line,
                "<token>",
                "each token once (its id is its line number)",
                f"{token!r} again, first on line {first_line[token]}",
            )
        first_line[token] = line
    missing = [t for t in _special_tokens(root) if t not in first_line]
    if missing:
        raise DataError(path, None, "<token>", f"the special tokens {missing}", "none of them")
    return len(tokens)


def vocab_size(tokenizer: Any) -> int:
    """Number of ids the tokenizer can produce (vocab plus added tokens).

    Args:
        tokenizer: A paddlenlp tokenizer.

    Returns:
        The vocab size to give the model's embedding table.
    """
    return len(tokenizer)


def encode_pairs(
    tokenizer: Any, pairs: Sequence[tuple[str, str | None]], max_seq_len: int
) -> dict[str, np.ndarray]:
    """Encode texts or text pairs to fixed-length id arrays.

    ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, truncated to ``max_seq_len`` (longest
    first for pairs) and padded with the pad id; ``token_type_ids`` is 1 on ``b``.

    Args:
        tokenizer: A paddlenlp tokenizer.
        pairs: ``(text_a, text_b)`` tuples; ``text_b`` None for single texts (all or none).
        max_seq_len: Output length.

    Returns:
        ``input_ids`` and ``token_type_ids``, int64 arrays of shape ``[n, max_seq_len]``.

    Raises:
        ValueError: If some pairs have ``text_b`` and others do not, or ``max_seq_len`` < 3.
    """
    if max_seq_len < 3:
        raise ValueError(f"max_seq_len={max_seq_len} must be >= 3")
    n = len(pairs)
    if n == 0:
        empty = np.zeros((0, max_seq_len), dtype=np.int64)
        return {"input_ids": empty, "token_type_ids": empty.copy()}
    has_b = [b is not None for _, b in pairs]
    if any(has_b) and not all(has_b):
        raise ValueError(
            "encode_pairs: mix of single texts and pairs; text_b must be set on "
            "all pairs or on none"
        )
    texts = [a for a, _ in pairs]
    seconds = [b for _, b in pairs] if all(has_b) else None
    with warnings.catch_warnings():
        # paddlenlp warns on every longest_first pair truncation that it returns no
        # overflowing tokens; we never ask for them.
        warnings.filterwarnings("ignore", message=".*overflowing tokens are not returned.*")
        encoded = tokenizer(
            texts,
            text_pair=seconds,
            max_length=max_seq_len,
            padding="max_length",
            truncation=True,
            return_attention_mask=False,
            return_token_type_ids=True,
        )
    out = {key: np.asarray(encoded[key], dtype=np.int64) for key in ("input_ids", "token_type_ids")}
    for key, array in out.items():
        if array.shape != (n, max_seq_len):
            raise RuntimeError(
                f"tokenizer returned {key} of shape {array.shape}, expected {(n, max_seq_len)}"
            )
    return out


def encode_pairs_marking_truncation(
    tokenizer: Any, pairs: Sequence[tuple[str, str | None]], max_seq_len: int
) -> tuple[dict[str, np.ndarray], list[int]]:
    """:func:`encode_pairs`, plus which rows it had to truncate.

    Encodes at ``max_seq_len + 1``: a row that fills that length needed more than
    ``max_seq_len`` tokens, and only those rows are encoded again at ``max_seq_len``; the
    others are cut to ``max_seq_len`` (only padding is cut), so every row equals what
    :func:`encode_pairs` gives.

    Args:
        tokenizer: A paddlenlp tokenizer.
        pairs: As :func:`encode_pairs`.
        max_seq_len: Output length.

    Returns:
        ``(arrays, truncated)``: the arrays of :func:`encode_pairs` and the indices of the
        rows that lost tokens, in order.
    """
    wide = encode_pairs(tokenizer, pairs, max_seq_len + 1)
    pad_id = tokenizer.pad_token_id
    truncated = [int(i) for i in np.flatnonzero(wide["input_ids"][:, max_seq_len] != pad_id)]
    out = {key: np.ascontiguousarray(value[:, :max_seq_len]) for key, value in wide.items()}
    if truncated:
        again = encode_pairs(tokenizer, [pairs[i] for i in truncated], max_seq_len)
        for key, value in again.items():
            out[key][truncated] = value
    return out, truncated


def encode_examples(
    tokenizer: Any, examples: Sequence[Mapping[str, Any]], task: Any, max_seq_len: int
) -> dict[str, np.ndarray]:
    """Encode task examples through :func:`ppminilm.data.example_to_text_pair`.

    Args:
        tokenizer: A paddlenlp tokenizer.
        examples: Records in the task's field names.
        task: Task name or :class:`~ppminilm.data.TaskSpec`.
        max_seq_len: Output length.

    Returns:
        As :func:`encode_pairs`.
    """
    return encode_pairs(tokenizer, [example_to_text_pair(e, task) for e in examples], max_seq_len)
