"""Shared helpers of the demo layer's tests, served as fixtures."""

from __future__ import annotations

import copy
import math

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
        total = math.sqrt(sum(float((g**2).sum()) for g in grads))
        factor = min(1.0, max_norm / total)
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads, strict=True):
            p -= lr * factor * g
    return net


def _params_close(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> bool:
    return all(
        torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


@pytest.fixture
def reference_step():
    return _reference_step


@pytest.fixture
def params_close():
    return _params_close
