"""Shared helpers of the task tests: hand-built models that answer perfectly or never."""

from __future__ import annotations

import pytest
import torch

from titans_memory.tasks.needles import VOCAB


class Oracle:
    """Reads the whole prefix (its cache) and puts all its mass on the right next answer token.

    For the needle tasks: after a ``QUERY`` (and its key) the value of the matching needle; for
    MQAR: at a key after the pairs, the value that followed it. Elsewhere uniform logits.
    """

    def __init__(self, vocab_size: int, kind: str, value_length: int = 2, pairs: int = 0) -> None:
        self.V, self.kind, self.A, self.pairs = vocab_size, kind, value_length, pairs

    def _next(self, row: list[int], p: int) -> int | None:
        if self.kind == "mqar":
            if p < 2 * self.pairs:
                return None
            table = {row[2 * i]: row[2 * i + 1] for i in range(self.pairs)}
            return table.get(row[p])
        multi = self.kind == "multikey"
        queries = [i for i in range(p + 1) if row[i] == VOCAB.QUERY]
        if not queries:
            return None
        q = queries[-1]
        j = p - q - multi  # index of the answer token that comes next
        if not 0 <= j < self.A:
            return None
        for m in (i for i in range(q) if row[i] == VOCAB.NEEDLE):
            if not multi or row[m + 1] == row[q + 1]:
                return row[m + 1 + multi + j]
        return None

    def __call__(self, tokens: torch.Tensor, cache=None):
        seen = tokens if cache is None else torch.cat([cache, tokens], dim=1)
        start = seen.shape[1] - tokens.shape[1]
        logits = torch.zeros(*tokens.shape, self.V)
        for b, row in enumerate(seen.tolist()):
            for t in range(tokens.shape[1]):
                nxt = self._next(row, start + t)
                if nxt is not None:
                    logits[b, t, nxt] = 10.0
        return logits, seen


class Guesser:
    """Never knows: random logits (seeded), so each answer is a uniform guess."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        self.V, self.g = vocab_size, torch.Generator().manual_seed(seed)

    def __call__(self, tokens: torch.Tensor, cache=None):
        return torch.randn(*tokens.shape, self.V, generator=self.g), None


@pytest.fixture
def oracle() -> type[Oracle]:
    """The :class:`Oracle` class (a model that answers every question right)."""
    return Oracle


@pytest.fixture
def guesser() -> type[Guesser]:
    """The :class:`Guesser` class (a model that never knows)."""
    return Guesser
