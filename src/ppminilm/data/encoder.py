"""A fast encoder that gives exactly what a paddlenlp BERT/ERNIE tokenizer gives.

paddlenlp's tokenizer is pure Python and spends ~0.5 ms on a 60-character review, most of it
walking every character through its basic tokenizer again and again. A model server tokenizes
every request, so that cost is its throughput limit. :class:`FastEncoder` computes the same ids
by the same rules, but each distinct *word* (what the basic tokenizer's whitespace split yields:
one CJK character, or a run of other characters) is tokenized once, by paddlenlp itself, and
remembered:

* paddlenlp's ``BasicTokenizer.tokenize`` is, character by character, cleaning (control
  characters dropped, whitespace made a space), spacing around CJK characters, a whitespace
  split, and then per word lower-casing, accent stripping and punctuation splitting, then
  WordPiece per piece. Everything after the split depends on the word alone, so
  ``ids(text) == concat(ids(word) for word in split(text))``; :meth:`FastEncoder.words` makes
  the split with paddlenlp's own character predicates (cached per character);
* texts paddlenlp handles before that (special or added tokens written in the text, which it
  splits off and strips around; a capital sigma, whose lower case depends on its position) go
  through paddlenlp whole;
* truncation (``longest_first``, right side), special tokens, token types and padding follow
  ``prepare_for_model`` (paddlenlp's own ``build_inputs_with_special_tokens`` and
  ``create_token_type_ids_from_sequences``).

:func:`fast_encoder` returns one only for tokenizers with this structure (``BertTokenizer``,
``ErnieTokenizer``); tests/unit/test_encoder.py compares it with paddlenlp on every text of the
local data and on adversarial strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Words remembered at most (then the cache starts over): a vocabulary's worth of distinct
#: words is small, an adversary's stream of random ones must not grow memory without end.
MAX_CACHED_WORDS = 200_000
_KEEP, _DROP, _SPACE, _CJK = 0, 1, 2, 3
#: Its lower case depends on the next character (final sigma): paddlenlp lowers character by
#: character, ``str.lower`` does not.
_CONTEXT_LOWER = "\u03a3"


def fast_encoder(tokenizer: Any) -> FastEncoder | None:
    """A :class:`FastEncoder` for ``tokenizer``, or None where its rules may differ."""
    from ppminilm.compat import paddlenlp

    transformers = paddlenlp.module("transformers")
    supported = (transformers.ErnieTokenizer, transformers.BertTokenizer)
    if type(tokenizer) not in supported:
        return None
    if getattr(tokenizer, "truncation_side", "right") != "right":
        return None
    if getattr(tokenizer, "padding_side", "right") != "right":
        return None
    basic = getattr(tokenizer, "basic_tokenizer", None)
    if basic is None or getattr(basic, "never_split", None):
        return None
    return FastEncoder(tokenizer)


class FastEncoder:
    """Encodes like ``encode_pairs`` with ``tokenizer`` (see the module docstring)."""

    def __init__(self, tokenizer: Any) -> None:
        from paddlenlp.transformers.tokenizer_utils import _is_control, _is_whitespace

        self.tokenizer = tokenizer
        self.basic = tokenizer.basic_tokenizer
        self._is_control = _is_control
        self._is_whitespace = _is_whitespace
        specials = set(tokenizer.unique_no_split_tokens) | set(tokenizer.all_special_tokens)
        pattern = "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True) if s)
        self._special = re.compile(pattern) if pattern else None
        self._lower = bool(getattr(tokenizer, "do_lower_case", False))
        self._chars: dict[str, int] = {}
        self._words: dict[str, list[int]] = {}
        self.pad_id = int(tokenizer.pad_token_id)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0))
        self.num_special_single = len(tokenizer.build_inputs_with_special_tokens([]))
        self.num_special_pair = len(tokenizer.build_inputs_with_special_tokens([], []))

    def prefill(self) -> int:
        """Remember the ids of every whole-word vocabulary entry up front (a server's first
        requests then meet few new words); returns how many words are cached."""
        for token in self.tokenizer.vocab.token_to_idx:
            if not token.startswith("##") and token and not self._special_in(token):
                self.ids(token)
        return len(self._words)

    def _special_in(self, text: str) -> bool:
        return self._special is not None and self._special.search(text) is not None

    # ------------------------------------------------------------------ words

    def _kind(self, char: str) -> int:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or self._is_control(char):
            kind = _DROP
        elif self._is_whitespace(char):
            kind = _SPACE
        elif self.basic.tokenize_chinese_chars and self.basic._is_chinese_char(cp):
            kind = _CJK
        else:
            kind = _KEEP
        self._chars[char] = kind
        return kind

    def words(self, text: str) -> list[str]:
        """The basic tokenizer's whitespace split of ``text`` (after cleaning and CJK spacing)."""
        kinds = self._chars
        words: list[str] = []
        run: list[str] = []
        for char in text:
            kind = kinds.get(char)
            if kind is None:
                kind = self._kind(char)
            if kind == _KEEP:
                run.append(char)
            elif kind != _DROP:
                if run:
                    words.append("".join(run))
                    run = []
                if kind == _CJK:
                    words.append(char)
        if run:
            words.append("".join(run))
        return words

    def ids(self, text: str) -> list[int]:
        """Token ids of one text, without special tokens (``convert_tokens_to_ids(tokenize)``)."""
        tok = self.tokenizer
        if self._special_in(text) or _CONTEXT_LOWER in text:
            return list(tok.convert_tokens_to_ids(tok.tokenize(text)))
        if self._lower:
            text = text.lower()
        cache = self._words
        out: list[int] = []
        for word in self.words(text):
            ids = cache.get(word)
            if ids is None:
                if len(cache) >= MAX_CACHED_WORDS:
                    cache.clear()
                ids = cache[word] = list(tok.convert_tokens_to_ids(tok._tokenize(word)))
            out.extend(ids)
        return out

    # ------------------------------------------------------------------ sequences

    def encode(
        self, pairs: Sequence[tuple[str, str | None]], max_seq_len: int
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        """As :func:`ppminilm.data.tokenizer.encode_pairs_marking_truncation`.

        Returns:
            ``({"input_ids", "token_type_ids"} int64 [n, max_seq_len], truncated rows)``.
        """
        if max_seq_len < 3:
            raise ValueError(f"max_seq_len={max_seq_len} must be >= 3")
        n = len(pairs)
        input_ids = np.full((n, max_seq_len), self.pad_id, dtype=np.int64)
        token_types = np.full((n, max_seq_len), self.pad_type_id, dtype=np.int64)
        truncated = []
        tok = self.tokenizer
        for row, (text_a, text_b) in enumerate(pairs):
            a = self.ids(text_a)
            b = self.ids(text_b) if text_b is not None else None
            cut = self._truncate(a, b, max_seq_len)
            if cut is not None:
                a, b = cut
                truncated.append(row)
            ids = tok.build_inputs_with_special_tokens(a, b)
            types = tok.create_token_type_ids_from_sequences(a, b)
            input_ids[row, : len(ids)] = ids
            token_types[row, : len(types)] = types
        return {"input_ids": input_ids, "token_type_ids": token_types}, truncated

    def _truncate(
        self, a: list[int], b: list[int] | None, max_seq_len: int
    ) -> tuple[list[int], list[int] | None] | None:
        """paddlenlp's ``longest_first`` truncation (right side); None when nothing is cut."""
        if b is None:
            excess = len(a) + self.num_special_single - max_seq_len
            return (a[: len(a) - excess], None) if excess > 0 else None
        excess = len(a) + len(b) + self.num_special_pair - max_seq_len
        if excess <= 0:
            return None
        la, lb = len(a), len(b)
        for _ in range(excess):  # one token at a time from the longer; ties cut the second
            if la > lb:
                la -= 1
            else:
                lb -= 1
        return a[:la], b[:lb]
