"""Parameter and FLOPs accounting of an architecture: the seed table's size columns, no paddle.

``count_params`` / ``count_flops`` reproduce the seed exactly: 102,267,648 / 10.87B for
BERT-base, 59,740,416 / 5.44B for 6L-768H, 49,115,520 / 4.08B for 6L-768H at width 0.75.
"""

from __future__ import annotations

from ppminilm.config import ModelArch

#: Sequence length at which the seed's FLOPs figures are quoted.
FLOPS_SEQ_LEN = 128


def count_params(arch: ModelArch) -> int:
    """Parameters of the encoder + pooler for an architecture (classifier head excluded).

    embeddings ``V*H + P*H + T*H + 2H`` + per layer (attention ``3(H*h+h) + h*H+H``, FFN
    ``H*i+i + i*H+H``, two layer norms ``4H``) + pooler ``H*H+H``; ``h``/``i`` are the
    attention and FFN widths after pruning.

    Args:
        arch: The model shape (``width`` scales heads and FFN).

    Returns:
        The exact parameter count.
    """
    H = arch.hidden_size
    h = arch.pruned_heads * arch.head_dim
    i = arch.pruned_intermediate
    embeddings = (arch.vocab_size + arch.max_position + arch.type_vocab_size) * H + 2 * H
    attention = 3 * (H * h + h) + h * H + H
    ffn = H * i + i + i * H + H
    per_layer = attention + ffn + 4 * H
    pooler = H * H + H
    return embeddings + arch.num_layers * per_layer + pooler


def count_flops(arch: ModelArch, seq_len: int = FLOPS_SEQ_LEN) -> int:
    """Dense encoder multiply-accumulates for one sequence, as the seed's FLOPs column counts.

    ``seq_len * L * (3*H*h + h*H + 2*H*i)``: the Q/K/V, output and FFN projections only.

    Args:
        arch: The model shape.
        seq_len: Tokens per sequence (the seed quotes 128).

    Returns:
        The FLOPs figure (an integer).
    """
    H = arch.hidden_size
    h = arch.pruned_heads * arch.head_dim
    i = arch.pruned_intermediate
    return seq_len * arch.num_layers * (3 * H * h + h * H + 2 * H * i)


def format_count(value: int, unit: str) -> str:
    """Format a count the way the seed's table does: ``102.3M`` params, ``10.87B`` FLOPs."""
    if unit == "M":
        return f"{value / 1e6:.1f}M"
    if unit == "B":
        return f"{value / 1e9:.2f}B"
    raise ValueError(f"unit must be 'M' or 'B', got {unit!r}")
