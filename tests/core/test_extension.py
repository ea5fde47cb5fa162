"""Extension points, used from outside the package: a new attentional bias and a new retention
are one class and one registration each, and both operators run them exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from titans_memory.core import (
    BIASES,
    RETENTIONS,
    AttentionalBias,
    MemoryConfig,
    NeuralMemory,
    Retention,
    register_bias,
    register_retention,
)
from titans_memory.core.ops import BACKENDS, REFERENCE

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-11}


class LogCoshBias(AttentionalBias):
    """``l = sum_i log cosh(r_i)``: l2 for small residuals, l1 for large ones (not built in)."""

    name: ClassVar[str] = "logcosh"

    def loss(self, pred, target, param=None):
        return torch.log(torch.cosh(pred - target)).sum(-1)

    def error(self, pred, target, param=None):
        return torch.tanh(pred - target)


@dataclass(frozen=True)
class MaxNormRetention(Retention):
    """Every weight matrix back inside a Frobenius ball of radius ``c`` times its initial norm."""

    scale: float = 1.2
    name: ClassVar[str] = "max_norm"

    def constants(self, weights):
        return torch.stack([self.scale * w.detach().norm(dim=(-2, -1)) for w in weights])

    def apply(self, weights, constants):
        out = []
        for w, radius in zip(weights, constants, strict=True):
            norm = w.norm(dim=(-2, -1), keepdim=True)
            out.append(w * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0))
        return out


@pytest.fixture
def registered():
    """Register the two parts as a user would, and take them out again afterwards."""
    register_bias("logcosh", lambda config: LogCoshBias())
    register_retention("max_norm", lambda config: MaxNormRetention(scale=1.2))
    yield
    BIASES.pop("logcosh")
    RETENTIONS.pop("max_norm")


def _memory(**overrides) -> NeuralMemory:
    torch.manual_seed(0)
    cfg = MemoryConfig(dim=8, heads=2, expansion=2.0, chunk_size=4, **overrides)
    mem = NeuralMemory(cfg).to(DT)
    with torch.no_grad():
        mem.to_gates.weight.mul_(5.0)
        mem.to_gates.bias.add_(2.0)  # larger steps, so the retention's ball is really reached
    return mem


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != REFERENCE])
@pytest.mark.parametrize(
    "overrides",
    [{"objective": "logcosh"}, {"retention": "max_norm"}, {"objective": "logcosh", "retention": "max_norm", "depth": 1}],
    ids=["logcosh", "max_norm", "both-matrix"],
)
def test_registered_parts_run_exactly_in_every_backend(registered, backend, overrides, random_functional):
    mem = _memory(**overrides)
    assert isinstance(mem.rule.bias, LogCoshBias) == ("objective" in overrides)
    x = torch.randn(2, 19, 8, generator=torch.Generator().manual_seed(1), dtype=DT).requires_grad_()
    params = list(mem.parameters())
    runs = {}
    for name in (REFERENCE, backend):
        y, state = mem(x, backend=name)
        tensors = [y, *state.weights, *state.momentum, *state.anchor]
        grads = torch.autograd.grad(random_functional(tensors), [x, *params], allow_unused=True, materialize_grads=True)
        runs[name] = (tensors, grads)
    for a, b in zip(runs[REFERENCE][0], runs[backend][0], strict=True):
        torch.testing.assert_close(b, a, **TOL)
    for (pname, _), a, b in zip([("x", x), *mem.named_parameters()], *(runs[n][1] for n in (REFERENCE, backend)), strict=True):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, n=pname: f"d/d{n}: {m}")
    if "retention" in overrides:  # the rule really acted: every chunk end is inside the ball
        radius = mem.retention_constants
        _, state = mem(x.detach()[:, :16])  # ends on a chunk boundary
        for layer, w in enumerate(state.weights):
            assert (w.norm(dim=(-2, -1)) <= radius[layer] * (1 + 1e-12)).all()
        _, free = _memory(**{**overrides, "retention": "decay"})(x.detach()[:, :16])
        assert any((w.norm(dim=(-2, -1)) > radius[i] * 1.001).any() for i, w in enumerate(free.weights))


def test_the_bias_is_what_it_says(registered):
    pred = torch.randn(3, 5, 4, dtype=DT, requires_grad=True)
    target = torch.randn(3, 5, 4, dtype=DT)
    bias = LogCoshBias()
    (grad,) = torch.autograd.grad(bias.loss(pred, target).sum(), pred)
    torch.testing.assert_close(bias.error(pred, target), grad, rtol=1e-12, atol=1e-12)


def test_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match=r"unknown objective 'logcosh'; registered: l2, lp, huber, dot"):
        MemoryConfig(objective="logcosh")
    with pytest.raises(ValueError, match=r"unknown retention 'max_norm'; registered: decay, lq, kl, elastic_net"):
        MemoryConfig(retention="max_norm")
    with pytest.raises(ValueError, match=r"register_bias: 'l2' is already registered \(pass replace=True\)"):
        register_bias("l2", lambda config: LogCoshBias())
    with pytest.raises(TypeError, match=r"register_retention: factory must be callable"):
        register_retention("x", "not a factory")
    register_bias("broken", lambda config: "not a bias")
    try:
        with pytest.raises(TypeError, match=r"the factory of objective 'broken' returned str, not an AttentionalBias"):
            MemoryConfig(objective="broken")
    finally:
        BIASES.pop("broken")
