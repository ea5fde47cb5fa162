"""Shared helpers of the demo layer's tests, served as fixtures (the test modules are imported
with ``--import-mode=importlib``, so they cannot import this file by name)."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import pytest
import torch
from torch import nn


def _reference_step(net: nn.Module, x: torch.Tensor, lr: float, max_norm: float | None = None):
    """One SGD step on mean((net(x) - x)^2) with autograd, on a copy: the spec the explicit
    gradient steps of the demo layer must meet."""
    net = copy.deepcopy(net)
    loss = ((net(x) - x) ** 2).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    factor = 1.0
    if max_norm is not None:
        total = _flat_norm(grads)
        factor = min(1.0, max_norm / total)
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads, strict=True):
            p -= lr * factor * g
    return net


def _params_close(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> bool:
    return all(
        torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _param_copies(module: nn.Module) -> list[torch.Tensor]:
    """Detached copies of a module's parameters (its state at this moment)."""
    return [p.detach().clone() for p in module.parameters()]


def _all_equal(a: Iterable[torch.Tensor], b: Iterable[torch.Tensor]) -> bool:
    """Two equally long lists of tensors, equal element by element (exactly)."""
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _flat_norm(tensors: Iterable[torch.Tensor]) -> float:
    """L2 norm of a list of tensors taken together, in float64."""
    return math.sqrt(sum(float((t.detach().double() ** 2).sum()) for t in tensors))


def _stack(trace: Sequence[torch.Tensor]) -> torch.Tensor:
    """A per-step trace (a list of tensors) as one tensor, steps first."""
    return torch.stack(list(trace))


@pytest.fixture
def reference_step():
    return _reference_step


@pytest.fixture
def params_close():
    return _params_close


@pytest.fixture
def param_copies():
    return _param_copies


@pytest.fixture
def all_equal():
    return _all_equal


@pytest.fixture
def flat_norm():
    return _flat_norm


@pytest.fixture
def stack():
    return _stack
