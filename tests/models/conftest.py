"""Shared fixtures of the model tests: tiny float64 models, seeded tokens, feeding in pieces."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from titans_memory import MemoryConfig
from titans_memory.models import ModelConfig, TitansLM

VOCAB = 23


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second intra-op thread only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(arch: str, **changes) -> ModelConfig:
    """2 layers of width 16, 2 heads; window 16, segment 12, memory chunk 8 unless changed."""
    memory = changes.pop("memory", MemoryConfig(dim=16, heads=2, chunk_size=8))
    base = dict(
        arch=arch, vocab_size=VOCAB, dim=16, depth=2, heads=2, window=16, segment=12,
        persistent_tokens=3, memory=memory,
    )
    base.update(changes)
    if arch == "swa":
        base["memory_layers"] = None
    return ModelConfig(**base)


def tiny_model(arch: str, seed: int = 0, **changes) -> TitansLM:
    """A float64 :class:`TitansLM` of :func:`tiny_config`, its weights drawn with ``seed``."""
    torch.manual_seed(seed)
    return TitansLM(tiny_config(arch, **changes)).double()


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g)


def feed(model: TitansLM, toks: torch.Tensor, sizes: list[int], cache=None):
    """Logits of ``toks`` fed in pieces of ``sizes``, the cache carried; and the final cache."""
    assert sum(sizes) == toks.shape[1]
    outs, start = [], 0
    for n in sizes:
        logits, cache = model(toks[:, start : start + n], cache)
        outs.append(logits)
        start += n
    return torch.cat(outs, dim=1), cache


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for the test modules (which cannot import conftest)."""
    return SimpleNamespace(
        VOCAB=VOCAB, tiny_config=tiny_config, tiny_model=tiny_model, tokens=tokens, feed=feed
    )
