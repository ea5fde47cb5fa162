"""Shared fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch
from torch import Tensor


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second intra-op thread only adds contention (many-fold on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def _assert_tensors_close(a: dict[str, Tensor], b: dict[str, Tensor], what: str = "", **tol) -> None:
    assert a.keys() == b.keys(), (what, sorted(a), sorted(b))
    for name in a:
        torch.testing.assert_close(a[name], b[name], **tol, msg=lambda m, n=name: f"{what}{n}: {m}")


@pytest.fixture
def assert_tensors_close() -> Callable[..., None]:
    """Compare two ``{name: tensor}`` dicts entry by entry (the message names the entry)."""
    return _assert_tensors_close
