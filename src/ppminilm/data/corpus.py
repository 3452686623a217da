"""Streaming the pre-training corpus (one sentence a line, in shards) for MLM and distillation.

The stream is deterministic for a seed and resumable: each epoch visits the shards in a
seed-determined order and each shard's lines in a seed-determined order, and the position
(epoch, shard, line) is a small JSON-able dict saved in checkpoints. Only one shard is held in
memory at a time, so the corpus may be far larger than RAM (the recipe's is ~64 shards).

Data parallelism: every rank walks the same global sequence and keeps its own slice of each
global batch (rank ``r`` of ``W`` takes sentences ``[r*n, (r+1)*n)`` of each block of ``W*n``),
so ranks never see the same sentence in a step and the position is identical on all ranks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.data.tokenizer import encode_pairs

logger = logging.getLogger(__name__)

#: Shard file pattern inside a corpus directory.
SHARD_GLOB = "*.txt"


def corpus_shards(corpus_dir: str | os.PathLike[str]) -> list[Path]:
    """The shard files of a corpus directory, sorted by name.

    Raises:
        FileNotFoundError: If the directory does not exist.
        ValueError: If it holds no ``*.txt`` shard.
    """
    root = Path(corpus_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus directory {root} does not exist")
    shards = sorted(p for p in root.glob(SHARD_GLOB) if p.is_file())
    if not shards:
        raise ValueError(
            f"corpus directory {root} has no {SHARD_GLOB} shards (expected text "
            "files with one sentence a line)"
        )
    return shards


def corpus_fingerprint(corpus_dir: str | os.PathLike[str]) -> str:
    """A cheap identity of a corpus: names, sizes and modification times of its shards."""
    digest = hashlib.sha256()
    for path in corpus_shards(corpus_dir):
        st = path.stat()
        digest.update(f"{path.name}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def _rng(seed: int, *keys: int) -> np.random.RandomState:
    # SeedSequence mixes (seed, epoch, shard) into independent streams without collisions.
    state = np.random.SeedSequence([seed, *keys]).generate_state(1)[0]
    return np.random.RandomState(int(state))


class CorpusStream:
    """Endless, resumable, seed-ordered stream of corpus sentences.

    Args:
        corpus_dir: Directory of shards.
        seed: Order seed.
        rank: This process's data-parallel rank.
        world_size: Number of data-parallel ranks.
    """

    def __init__(
        self, corpus_dir: str | os.PathLike[str], seed: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.shards = corpus_shards(corpus_dir)
        self.corpus_dir = Path(corpus_dir)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.shard_pos, self.line = 0, 0, 0
        self._lines: list[str] | None = None
        self._lines_key: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """Position of the next sentence (JSON-able)."""
        return {
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "line": self.line,
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position.

        Raises:
            ValueError: If the position was saved with another seed or world size (the order
                would differ, so "continue" would silently mean something else).
        """
        for key in ("seed", "world_size"):
            if int(state.get(key, getattr(self, key))) != getattr(self, key):
                raise ValueError(
                    f"data position was saved with {key}={state[key]} but this run "
                    f"has {key}={getattr(self, key)}"
                )
        self.epoch, self.shard_pos, self.line = (
            int(state["epoch"]),
            int(state["shard_pos"]),
            int(state["line"]),
        )

    def _shard_lines(self) -> list[str]:
        key = (self.epoch, self.shard_pos)
        if self._lines is None or self._lines_key != key:
            order = _rng(self.seed, self.epoch).permutation(len(self.shards))
            shard_idx = int(order[self.shard_pos])
            path = self.shards[shard_idx]
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
            lines = [ln for ln in lines if ln]
            perm = _rng(self.seed, self.epoch, shard_idx).permutation(len(lines))
            self._lines = [lines[i] for i in perm]
            self._lines_key = key
        return self._lines

    def _next_global(self, count: int) -> list[str]:
        out: list[str] = []
        empty_shards = 0
        while len(out) < count:
            lines = self._shard_lines()
            take = lines[self.line : self.line + count - len(out)]
            out.extend(take)
            self.line += len(take)
            empty_shards = 0 if take else empty_shards + 1
            if empty_shards > len(self.shards):
                raise ValueError(f"corpus directory {self.corpus_dir} has only empty shards")
            if self.line >= len(lines):
                self.line = 0
                self.shard_pos += 1
                if self.shard_pos >= len(self.shards):
                    self.shard_pos = 0
                    self.epoch += 1
                    logger.info("corpus epoch %d starts", self.epoch)
        return out

    def next_sentences(self, batch_size: int) -> list[str]:
        """This rank's next ``batch_size`` sentences (advances all ranks' shared position)."""
        block = self._next_global(batch_size * self.world_size)
        return block[self.rank * batch_size : (self.rank + 1) * batch_size]


def encode_sentences(
    tokenizer: Any, sentences: list[str], max_seq_len: int
) -> dict[str, np.ndarray]:
    """Tokenize single sentences to ``[CLS] s [SEP]`` ids, trimmed to the longest in the batch.

    Trailing columns that are padding in every row are cut: the relation losses and MLM ignore
    padding, so this only saves compute (short sentences are common).

    Returns:
        ``input_ids`` and ``token_type_ids``, int64 ``[n, L]`` with ``L <= max_seq_len``.
    """
    enc = encode_pairs(tokenizer, [(s, None) for s in sentences], max_seq_len)
    pad_id = int(tokenizer.pad_token_id)
    lengths = (enc["input_ids"] != pad_id).sum(axis=1)
    width = max(int(lengths.max()), 1)
    return {k: np.ascontiguousarray(v[:, :width]) for k, v in enc.items()}
