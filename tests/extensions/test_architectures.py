"""Memory architectures registered from outside the package (public API only): one given as a
plain function of ``(params, x)`` (the reference operator runs it; checked against a literal
token loop with autograd), and a toy fast-path architecture with its own dual form (the chunked
operator runs it, equal to the reference)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from titans_memory.core import (
    ARCHITECTURES,
    FunctionalMemory,
    MemoryConfig,
    NeuralMemory,
    register_architecture,
)
from titans_memory.core.architectures import DualFormMemory, KeyPath
from titans_memory.core.ops import MemoryInputs, fresh_op_state, recurrent_memory

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-11}


def gated_linear(params: tuple[Tensor, ...], x: Tensor) -> Tensor:
    """``M(x) = (x W_1) * sigmoid(x W_2)``: no dual form, a plain function of (params, x)."""
    return (x @ params[0]) * torch.sigmoid(x @ params[1])


class FeatureMapMemory(DualFormMemory):
    """A toy fast-path memory ``M(x) = tanh(x) W``: a matrix memory on a fixed feature map.

    Its gradient is the outer product ``tanh(k)^T Delta``, so the chunk's dual form is that of a
    matrix memory read with ``h = tanh(q)`` (docs/design.md, sec. 3.2), written here in plain
    differentiable ops (autograd does the backward).
    """

    def __init__(self, d: int) -> None:
        self.d = d

    @property
    def layer_shapes(self):
        return [(self.d, self.d)]

    def init_weights(self, heads, generator=None):
        return [torch.randn(heads, self.d, self.d, generator=generator) / self.d]

    def forward(self, weights: Sequence[Tensor], x: Tensor) -> Tensor:
        return torch.tanh(x) @ weights[0]

    def key_path(self, anchor, k, v, bias, param, row_scale=None):
        h = torch.tanh(k)  # (N, c, d)
        pred = h @ anchor[0]
        if row_scale is not None:  # token t's gradient at row_scale_t * W
            pred = pred * row_scale
        return KeyPath((h,), (bias.error(pred, v, param),))

    def _write(self, write, weights, momentum, key_path):
        h, delta = key_path.inputs[0], key_path.deltas[0]
        w = write.decay * weights[0] - (write.grad_weights * h).transpose(-1, -2) @ delta
        if momentum is None:
            return [w], None
        w = w + write.momentum_in * momentum[0]
        s = write.momentum_decay * momentum[0] - (write.momentum_grad_weights * h).transpose(-1, -2) @ delta
        return [w], [s]

    def read_write(self, q, read, write, weights, momentum, key_path, *, differentiable, inplace=False):
        h_q = torch.tanh(q)
        h_k, delta = key_path.inputs[0], key_path.deltas[0]
        z = read.decay * (h_q @ weights[0]) - ((h_q @ h_k.transpose(-1, -2)) * read.mix) @ delta
        if momentum is not None:
            z = z + read.momentum_in * (h_q @ momentum[0])
        return (z, *self._write(write, weights, momentum, key_path))

    def write(self, write, weights, momentum, key_path, *, inplace=False):
        return self._write(write, weights, momentum, key_path)


@pytest.fixture
def registered():
    register_architecture(
        "gated_linear", lambda config: FunctionalMemory(gated_linear, [(config.d_head, config.d_head)] * 2)
    )
    register_architecture("feature_map", lambda config: FeatureMapMemory(config.d_head))
    yield
    ARCHITECTURES.pop("gated_linear")
    ARCHITECTURES.pop("feature_map")


def _memory(architecture: str, **overrides) -> NeuralMemory:
    torch.manual_seed(0)
    cfg = MemoryConfig(**{"dim": 8, "heads": 2, "chunk_size": 4, "architecture": architecture, **overrides})
    mem = NeuralMemory(cfg).to(DT)
    with torch.no_grad():
        mem.to_gates.weight.mul_(5.0)
        mem.to_gates.bias.add_(1.0)
    return mem


def _x(T: int = 19, seed: int = 1) -> Tensor:
    return torch.randn(2, T, 8, generator=torch.Generator().manual_seed(seed), dtype=DT)


@pytest.mark.parametrize("backend", ["chunked", "chunked_checkpoint"])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"chunk_size": 1}, {"chunk_size": 5, "momentum": False}, {"decayed_gradient": True}],
    ids=["titans", "token", "no-momentum", "decayed"],
)
def test_a_toy_fast_path_architecture_runs_exactly(registered, compare_with_reference, backend, overrides):
    mem = _memory("feature_map", **overrides)
    assert isinstance(mem.rule.architecture, FeatureMapMemory)
    compare_with_reference(mem, _x(), backend)


def test_a_function_of_params_and_input_runs_on_the_reference(registered, compare_with_reference):
    mem = _memory("gated_linear")
    compare_with_reference(mem, _x(), "recurrent", seeds=(0, 1, 2))
    with pytest.raises(TypeError, match=r"needs a DualFormMemory architecture; FunctionalMemory has no dual form"):
        mem(_x(), backend="chunked")


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_the_functional_memory_is_the_literal_rule(registered, chunk_size):
    """The reference operator on the registered function equals a literal loop: autograd's
    gradient of ||M(k_t) - v_t||^2 at the chunk-start weights, bounded, then Titans eqs. 10, 13, 15."""
    cfg = MemoryConfig(dim=4, heads=1, chunk_size=chunk_size, architecture="gated_linear", max_step_norm=0.5)
    rule = NeuralMemory(cfg).rule
    g = torch.Generator().manual_seed(5)
    N, T, d = 3, 7, 4
    q, k, v = (torch.randn(N, T, d, generator=g, dtype=DT) for _ in range(3))
    lr = torch.rand(N, T, generator=g, dtype=DT) * 0.5
    alpha, eta = torch.rand(N, T, generator=g, dtype=DT) * 0.3, torch.rand(N, T, generator=g, dtype=DT)
    w0 = [torch.randn(N, d, d, generator=g, dtype=DT) / 2 for _ in range(2)]
    y, state = recurrent_memory(MemoryInputs(q, k, v, lr, torch.log1p(-alpha), eta.log()), fresh_op_state(w0, rule), rule)

    weights, momentum = [w.clone() for w in w0], [torch.zeros_like(w) for w in w0]
    anchor, outputs = [w.clone() for w in weights], []
    for t in range(T):
        grads = []
        for n in range(N):
            params = tuple(a[n].clone().requires_grad_() for a in anchor)
            loss = (gated_linear(params, k[n, t : t + 1]) - v[n, t : t + 1]).pow(2).sum()
            grads.append(torch.autograd.grad(loss, params))
        u = [torch.stack([gn[i] for gn in grads]) for i in range(2)]
        norm = torch.stack([x.flatten(1).norm(dim=1) for x in u]).norm(dim=0)
        u = [x * torch.clamp(0.5 / norm, max=1.0)[:, None, None] for x in u]
        momentum = [eta[:, t, None, None] * s - lr[:, t, None, None] * x for s, x in zip(momentum, u, strict=True)]
        weights = [(1 - alpha[:, t, None, None]) * w + s for w, s in zip(weights, momentum, strict=True)]
        outputs.append(torch.stack([gated_linear(tuple(w[n] for w in weights), q[n, t : t + 1]) for n in range(N)]))
        if (t + 1) % chunk_size == 0:
            anchor = [w.clone() for w in weights]
    torch.testing.assert_close(y, torch.cat(outputs, dim=1), **TOL)
    for a, b in zip(state.weights, weights, strict=True):
        torch.testing.assert_close(a, b, **TOL)
