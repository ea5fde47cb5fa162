"""Shared fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch
from torch import Tensor


def _random_functional(tensors: Iterable[Tensor | None], seed: int = 99) -> Tensor:
    """``sum_i <R_i, t_i>`` with seeded random ``R_i``: a scalar that depends on every entry."""
    g = torch.Generator().manual_seed(seed)
    total = None
    for t in tensors:
        if t is None:
            continue
        term = (torch.randn(t.shape, generator=g, dtype=t.dtype) * t).sum()
        total = term if total is None else total + term
    return total


@pytest.fixture
def random_functional() -> Callable[..., Tensor]:
    """A random linear functional of tensors, to compare gradients of many outputs at once."""
    return _random_functional


def _assert_states_close(a, b, **tol) -> None:
    """Two MemoryStates hold the same stream position and the same tensors (the message names the
    tensor). Default tolerance: 1e-10 relative and absolute."""
    tol = tol or {"rtol": 1e-10, "atol": 1e-10}
    assert (a.position, a.chunk_size, a.offset) == (b.position, b.chunk_size, b.offset)
    ta, tb = a.tensors(), b.tensors()
    assert ta.keys() == tb.keys(), (sorted(ta), sorted(tb))
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], **tol, msg=lambda m, n=name: f"state {n}: {m}")


@pytest.fixture
def assert_states_close() -> Callable[..., None]:
    """Compare two MemoryStates tensor by tensor."""
    return _assert_states_close
