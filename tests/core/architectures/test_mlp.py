"""The MLP memories: forward, the explicit backward (equal to autograd, itself differentiable),
the fused key path, initialisation."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.architectures import MatrixMemory, ResidualMLPMemory
from titans_memory.core.objectives import L2Bias

BIAS = L2Bias()

ACTIVATIONS = ["gelu", "silu", "relu", "tanh"]
DT = torch.float64


def _shapes(depth: int, d: int = 5, hidden: int = 7) -> list[tuple[int, int]]:
    if depth == 1:
        return [(d, d)]
    return [(d, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, d)]


def _weights(depth: int, n: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, a, b, generator=g, dtype=DT) / a**0.5).requires_grad_()
        for a, b in _shapes(depth)
    ]


def _data(n: int = 3, t: int = 9, d: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, d, generator=g, dtype=DT), torch.randn(n, t, d, generator=g, dtype=DT)


def _memory(depth: int, activation: str = "gelu", d: int = 5, hidden: int = 7):
    return MatrixMemory(d) if depth == 1 else ResidualMLPMemory(d, hidden, depth, activation)


def _forward_backward(weights, x, target, activation):
    """(inputs, deltas, per-token gradients) through the plain forward and explicit backward."""
    mem = _memory(len(weights), activation)
    pred, inputs, preacts = mem.forward_with_cache(weights, x)
    deltas = mem.backward(weights, preacts, BIAS.error(pred, target))
    per_token = [a.unsqueeze(-1) * d.unsqueeze(-2) for a, d in zip(inputs, deltas, strict=True)]
    return inputs, deltas, per_token


def _reference_mlp(weights, x, activation):
    """M written independently of models.py (same convention: h @ W, residual for depth >= 2)."""
    act = {
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
        "relu": torch.relu,
        "tanh": torch.tanh,
    }[activation]
    h = x
    for w in weights[:-1]:
        h = act(torch.einsum("ntd,nde->nte", h, w))
    out = torch.einsum("ntd,nde->nte", h, weights[-1])
    return out + x if len(weights) > 1 else out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_matches_independent_mlp(depth, activation):
    weights = _weights(depth)
    x, _ = _data()
    out, inputs, preacts = _memory(depth, activation).forward_with_cache(weights, x)
    torch.testing.assert_close(out, _reference_mlp(weights, x, activation), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_memory(depth, activation).forward(weights, x), out, rtol=0, atol=0)
    assert len(inputs) == depth and len(preacts) == depth - 1
    assert inputs[0] is x


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_explicit_backward_equals_autograd(depth, activation):
    weights = _weights(depth)
    x, target = _data()
    _, _, per_token = _forward_backward(weights, x, target, activation)  # (N, T, d_in, d_out)
    explicit = [g.sum(1) for g in per_token]
    # token_gradients is that, per token
    for a, b in zip(_memory(depth, activation).token_gradients(weights, x, target, BIAS, None), per_token, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    loss = BIAS.loss(_reference_mlp(weights, x, activation), target).sum()
    expected = torch.autograd.grad(loss, weights)
    for got, want in zip(explicit, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)

    # per token too: token t's gradient only depends on token t
    t = 4
    loss_t = BIAS.loss(_reference_mlp(weights, x[:, t : t + 1], activation), target[:, t : t + 1]).sum()
    for got, want in zip(per_token, torch.autograd.grad(loss_t, weights), strict=True):
        torch.testing.assert_close(got[:, t], want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fused_errors_equal_forward_then_backward(depth, activation):
    weights = _weights(depth)
    x, target = _data()
    inputs, deltas, _ = _forward_backward(weights, x, target, activation)
    f_inputs, f_deltas = _memory(depth, activation).key_path(weights, x, target, BIAS, None)
    for a, b in zip(inputs + deltas, f_inputs + f_deltas, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_explicit_backward_is_differentiable(depth, activation):
    """d/dW of a functional of the explicit gradients == autograd through autograd."""
    weights = _weights(depth)
    x, target = _data()
    x.requires_grad_()
    g = torch.Generator().manual_seed(7)
    probes = [torch.randn(w.shape, generator=g, dtype=DT) for w in weights]

    inputs, deltas, per_token = _forward_backward(weights, x, target, activation)
    grads = [gr.sum(1) for gr in per_token]
    phi = sum((p * gr).sum() for p, gr in zip(probes, grads, strict=True)) + sum(
        (d**2).sum() for d in deltas
    )
    got = torch.autograd.grad(phi, [*weights, x])

    loss = BIAS.loss(_reference_mlp(weights, x, activation), target).sum()
    auto = torch.autograd.grad(loss, weights, create_graph=True)
    # deltas by autograd: d loss / d (pre-activation of each layer)
    pre = []
    h = x
    act = dict(
        gelu=torch.nn.functional.gelu,
        silu=torch.nn.functional.silu,
        relu=torch.relu,
        tanh=torch.tanh,
    )[activation]
    for w in weights[:-1]:
        z = torch.einsum("ntd,nde->nte", h, w)
        pre.append(z)
        h = act(z)
    out = torch.einsum("ntd,nde->nte", h, weights[-1])
    pre.append(out)
    if depth > 1:
        out = out + x
    auto_deltas = torch.autograd.grad(BIAS.loss(out, target).sum(), pre, create_graph=True)
    phi_ref = sum((p * gr).sum() for p, gr in zip(probes, auto, strict=True)) + sum(
        (d**2).sum() for d in auto_deltas
    )
    want = torch.autograd.grad(phi_ref, [*weights, x])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    # second-order terms are really there (not a detached gradient)
    assert any(a.abs().max() > 1e-3 for a in got)


def test_init_weights():
    g = torch.Generator().manual_seed(0)
    (w,) = MatrixMemory(6).init_weights(heads=2, generator=g)
    assert w.shape == (2, 6, 6) and torch.count_nonzero(w) == 0  # a matrix memory starts empty: M(x) = 0

    mem = ResidualMLPMemory(64, 256, depth=2)
    w1, w2 = mem.init_weights(heads=4, generator=torch.Generator().manual_seed(0))
    assert w1.shape == (4, 64, 256) and w2.shape == (4, 256, 64)
    assert abs(w1.var().item() - 1 / 64) < 0.1 / 64
    assert abs(w2.var().item() - 0.1 / 256) < 0.01 / 256
    # seeded: reproducible
    again = mem.init_weights(heads=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], w1) and torch.equal(again[1], w2)
    assert ResidualMLPMemory(8, 16, depth=4).layer_shapes == [(8, 16), (16, 16), (16, 16), (16, 8)]


def test_bad_construction():
    with pytest.raises(ValueError, match=r"ResidualMLPMemory.depth must be >= 2 \(depth 1 is MatrixMemory\)"):
        ResidualMLPMemory(4, 8, depth=1)
    with pytest.raises(ValueError, match=r"ResidualMLPMemory.activation must be one of gelu, silu, relu, tanh"):
        ResidualMLPMemory(4, 8, depth=2, activation="swish")
