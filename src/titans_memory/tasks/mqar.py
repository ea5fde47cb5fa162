"""Multi-query associative recall (MQAR, as in the Zoology benchmark: Arora et al., 2023).

A sequence of ``length`` tokens starts with ``pairs`` key-value pairs ``k1 v1 k2 v2 ..`` (distinct
keys, values drawn with replacement); the rest is the filler token ``0``, in which ``queries`` of
the keys are asked again, one at each of ``queries`` random positions (random gaps). At a query
key the model must predict the value that followed that key in the pairs; the value itself is
not in the input (as in Zoology), so nothing leaks from one query to the next.

Accuracy is per query: the argmax over the value tokens is right; the chance level is
``1 / values``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from titans_memory.tasks.needles import TaskBatch, _check_int, _rng


@dataclass(frozen=True)
class MQARVocab:
    """Token ids: ``0`` the filler, then ``n_keys`` keys, then ``n_values`` values."""

    n_keys: int = 64
    n_values: int = 64

    @property
    def keys(self) -> np.ndarray:
        return np.arange(1, 1 + self.n_keys)

    @property
    def values(self) -> np.ndarray:
        return np.arange(1 + self.n_keys, 1 + self.n_keys + self.n_values)

    @property
    def size(self) -> int:
        return 1 + self.n_keys + self.n_values


MQAR_VOCAB = MQARVocab()


def mqar_batch(
    batch: int,
    length: int,
    pairs: int,
    seed: int | np.random.Generator,
    *,
    queries: int | None = None,
    vocab: MQARVocab = MQAR_VOCAB,
) -> TaskBatch:
    """``batch`` MQAR sequences of ``length`` tokens with ``pairs`` key-value pairs.

    Args:
        batch: number of sequences.
        length: tokens per sequence; at least ``2 pairs + queries``.
        pairs: key-value pairs at the start (at most ``vocab.n_keys``: the keys are distinct).
        seed: an integer (the same seed gives the same batch) or a numpy ``Generator``.
        queries: how many keys are asked again (default: all ``pairs``), each once, in random
            order, at random positions after the pairs.
        vocab: the token layout.

    Returns:
        a :class:`TaskBatch` with ``Q = queries`` questions of one token each; ``positions`` are
        the query keys' positions (their logits predict the value).
    """
    batch = _check_int("batch", batch, 1)
    length = _check_int("length", length, 1)
    pairs = _check_int("pairs", pairs, 1)
    queries = pairs if queries is None else _check_int("queries", queries, 1)
    if pairs > vocab.n_keys:
        raise ValueError(f"pairs must be <= {vocab.n_keys} (distinct keys), got {pairs}")
    if queries > pairs:
        raise ValueError(f"queries must be <= pairs ({pairs}), got {queries}")
    if length < 2 * pairs + queries:
        raise ValueError(
            f"length must be >= 2 * pairs + queries = {2 * pairs + queries}, got {length}"
        )
    rng = _rng(seed)
    tokens = np.zeros((batch, length), dtype=np.int64)
    positions = np.empty((batch, queries, 1), dtype=np.int64)
    targets = np.empty_like(positions)
    for b in range(batch):
        keys = rng.choice(vocab.keys, size=pairs, replace=False)
        values = rng.choice(vocab.values, size=pairs)
        tokens[b, 0 : 2 * pairs : 2] = keys
        tokens[b, 1 : 2 * pairs : 2] = values
        asked = rng.choice(pairs, size=queries, replace=False)  # which pairs, in asking order
        where = np.sort(rng.choice(np.arange(2 * pairs, length), size=queries, replace=False))
        tokens[b, where] = keys[asked]
        positions[b, :, 0] = where
        targets[b, :, 0] = values[asked]
    return TaskBatch(
        tokens=torch.from_numpy(tokens),
        positions=torch.from_numpy(positions),
        targets=torch.from_numpy(targets),
        alphabet=torch.from_numpy(vocab.values.astype(np.int64)),
        needles=torch.zeros(batch, 0, dtype=torch.int64),
        kind="mqar",
    )


def mqar_answers(tokens: torch.Tensor, pairs: int) -> torch.Tensor:
    """The answers recovered from the sequences alone, ``(B, Q, 1)``: for each key after the
    ``pairs`` pairs, the value that followed it in the pairs."""
    out = []
    for row in tokens.tolist():
        table = {row[2 * i]: row[2 * i + 1] for i in range(pairs)}
        out.append([[table[t]] for t in row[2 * pairs :] if t != 0])
    return torch.tensor(out, dtype=torch.int64)
