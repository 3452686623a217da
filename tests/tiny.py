"""Shared tiny shapes for tests that build real Paddle models (seconds, not minutes).

One architecture serves every stage's tests; a test that needs a variant derives it with
``TINY_ARCH.replace(...)`` and says why.
"""

from ppminilm.config import ModelArch

#: 2 layers x 32 hidden, 4 heads of 8 (width 0.75 keeps 3), FFN 64; no dropout, so runs are
#: deterministic. ``vocab_size`` is replaced by the tokenizer's where a vocab is loaded.
TINY_ARCH = ModelArch(
    num_layers=2,
    hidden_size=32,
    num_heads=4,
    intermediate_size=64,
    vocab_size=60,
    max_position=64,
    dropout=0.0,
)
#: Sequence length the tiny models are run at.
TINY_SEQ = 32
