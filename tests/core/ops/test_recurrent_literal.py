"""Every operator is the update rule of docs/design.md, literally: a hand-written loop with autograd.

The loop below shares no code with the library: its own MLP, ``torch.autograd.grad`` of
``||M(k_t) - v_t||^2`` for the surprise, and the three equations as written::

    S_t = eta_t S_{t-1} - theta_t grad l(M_anchor; k_t, v_t)
    M_t = (1 - alpha_t) M_{t-1} + S_t
    y_t = M_t(q_t)

with the anchor = M_{t-1} for chunk_size 1, and the chunk-start weights for chunk_size b.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from titans_memory.core.config import MemoryConfig
from titans_memory.core.ops import BACKENDS, MemoryInputs, MemoryOpState, fresh_op_state
from titans_memory.core.rule import UpdateRule

DT = torch.float64
D, HIDDEN = 5, 6
ACT = {"gelu": F.gelu, "silu": F.silu, "relu": torch.relu, "tanh": torch.tanh}


def mlp(weights: list[torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """M(x) for one memory: x W (depth 1) or x + act(...act(x W1)...) W_L (depth >= 2)."""
    h = x
    for w in weights[:-1]:
        h = ACT[activation](h @ w)
    out = h @ weights[-1]
    return x + out if len(weights) > 1 else out


def literal_loop(
    q, k, v, theta, alpha, eta, weights, momentum, anchor, offset, chunk_size, activation, memory=None,
    tau=None,
):
    """One memory, token by token. q, k, v: (T, d); theta, alpha, eta: (T,) (alpha = forget rate).

    ``memory(weights, x)`` is M (default: the MLP above with ``activation``); ``tau`` bounds each
    gradient's Frobenius norm over all layers (``grad <- grad min(1, tau / ||grad||)``)."""
    if memory is None:
        memory = lambda ws, x: mlp(ws, x, activation)  # noqa: E731
    M = [w.clone() for w in weights]
    S = [s.clone() for s in momentum]
    M_anchor = [a.clone() for a in anchor] if offset else [w.clone() for w in M]
    ys = []
    for t in range(q.shape[0]):
        params = [a.detach().requires_grad_() for a in M_anchor]
        loss = ((memory(params, k[t]) - v[t]) ** 2).sum()
        grad = torch.autograd.grad(loss, params)
        if tau is not None:
            norm = torch.sqrt(sum((g**2).sum() for g in grad))
            grad = [g * min(1.0, tau / float(norm)) for g in grad]
        S = [eta[t] * s - theta[t] * g for s, g in zip(S, grad, strict=True)]
        M = [(1 - alpha[t]) * m + s for m, s in zip(M, S, strict=True)]
        ys.append(memory(M, q[t]))
        offset += 1
        if offset == chunk_size:
            offset = 0
            M_anchor = [m.clone() for m in M]
    return torch.stack(ys), M, S, M_anchor, offset


def _shapes(depth, d, hidden):
    return (
        [(d, d)] if depth == 1 else [(d, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, d)]
    )


def _setup(T, depth, n=2, d=D, hidden=HIDDEN, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, T, d, generator=g, dtype=DT), dim=-1)
    k = F.normalize(torch.randn(n, T, d, generator=g, dtype=DT), dim=-1)
    v = torch.randn(n, T, d, generator=g, dtype=DT)
    theta = 0.2 * torch.rand(n, T, generator=g, dtype=DT) + 0.01
    alpha = 0.05 * torch.rand(n, T, generator=g, dtype=DT) + 1e-3
    eta = 0.5 * torch.rand(n, T, generator=g, dtype=DT) + 0.3
    w0 = [
        torch.randn(n, a, b, generator=g, dtype=DT) / a**0.5 for a, b in _shapes(depth, d, hidden)
    ]
    return q, k, v, theta, alpha, eta, w0


def _rule(depth, chunk_size, activation="gelu", momentum=True, forget=True, tau=None) -> UpdateRule:
    cfg = MemoryConfig(dim=D, depth=depth, expansion=HIDDEN / D, activation=activation,
                       chunk_size=chunk_size, momentum=momentum, forget=forget, max_step_norm=tau)
    return UpdateRule.from_config(cfg)


@pytest.mark.parametrize("op", list(BACKENDS))
@pytest.mark.parametrize("activation", ["gelu", "tanh"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize(
    ("momentum", "forget"), [(True, True), (False, False), (True, False), (False, True)]
)
@pytest.mark.parametrize("tau", [None, 0.3], ids=["", "bounded"])
def test_operator_equals_literal_equations(op, activation, depth, chunk_size, momentum, forget, tau):
    T = 11
    q, k, v, theta, alpha, eta, w0 = _setup(T, depth)
    if not forget:
        alpha = torch.zeros_like(alpha)
    if not momentum:
        eta = torch.zeros_like(eta)
    inputs = MemoryInputs(
        q, k, v, theta, torch.log1p(-alpha) if forget else None, torch.log(eta) if momentum else None
    )
    y, state = BACKENDS[op](inputs, fresh_op_state(w0), _rule(depth, chunk_size, activation, momentum, forget, tau))
    for i in range(q.shape[0]):
        y_ref, M, S, anchor, offset = literal_loop(
            q[i],
            k[i],
            v[i],
            theta[i],
            alpha[i],
            eta[i],
            [w[i] for w in w0],
            [torch.zeros_like(w[i]) for w in w0],
            [w[i] for w in w0],
            0,
            chunk_size,
            activation,
            tau=tau,
        )
        torch.testing.assert_close(y[i], y_ref, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.weights, M, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.momentum, S, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.anchor, anchor, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        assert state.offset == offset == T % chunk_size


@pytest.mark.parametrize("op", list(BACKENDS))
def test_operator_equals_literal_equations_from_mid_chunk_state(op):
    T, depth, chunk_size, offset = 13, 2, 5, 3
    q, k, v, theta, alpha, eta, w0 = _setup(T, depth, seed=4)
    g = torch.Generator().manual_seed(9)
    s0 = [0.05 * torch.randn(w.shape, generator=g, dtype=DT) for w in w0]
    a0 = [w + 0.1 * torch.randn(w.shape, generator=g, dtype=DT) for w in w0]
    y, state = BACKENDS[op](
        MemoryInputs(q, k, v, theta, torch.log1p(-alpha), torch.log(eta)),
        MemoryOpState(tuple(w0), tuple(s0), tuple(a0), offset),
        _rule(depth, chunk_size),
    )
    for i in range(q.shape[0]):
        y_ref, M, S, anchor, off = literal_loop(
            q[i],
            k[i],
            v[i],
            theta[i],
            alpha[i],
            eta[i],
            [w[i] for w in w0],
            [s[i] for s in s0],
            [a[i] for a in a0],
            offset,
            chunk_size,
            "gelu",
        )
        torch.testing.assert_close(y[i], y_ref, rtol=1e-11, atol=1e-12)
        for got, want in zip(
            (*state.weights, *state.momentum, *state.anchor), (*M, *S, *anchor), strict=True
        ):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        assert state.offset == off == (offset + T) % chunk_size


def test_chunk_size_changes_the_result():
    """Gradients at the chunk start are not gradients at the current weights (for T > 1)."""
    q, k, v, theta, alpha, eta, w0 = _setup(9, 2)
    inputs = MemoryInputs(q, k, v, theta, torch.log1p(-alpha), torch.log(eta))
    y1, _ = BACKENDS["recurrent"](inputs, fresh_op_state(w0), _rule(2, 1))
    y4, _ = BACKENDS["recurrent"](inputs, fresh_op_state(w0), _rule(2, 4))
    torch.testing.assert_close(y1[:, :1], y4[:, :1], rtol=1e-13, atol=1e-14)  # first token: same
    assert (y1 - y4).abs().max() > 1e-6


def _gated(params, x):
    """A memory no built-in class implements: ``M(x) = (x W_1) * sigmoid(x W_2)``."""
    return (x @ params[0]) * torch.sigmoid(x @ params[1])


@pytest.mark.parametrize(
    ("name", "fn", "shapes"),
    [
        ("residual_mlp", lambda p, x: mlp(list(p), x, "gelu"), [(D, HIDDEN), (HIDDEN, D)]),
        ("gated", _gated, [(D, D), (D, D)]),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_reference_runs_any_functional_memory(name, fn, shapes, chunk_size):
    """``FunctionalMemory``: a memory given as ``fn(params, x)`` runs in the reference operator
    (per-token gradients through torch.func) and equals the literal loop written with that fn."""
    from titans_memory.core.architectures import FunctionalMemory

    T, n = 9, 2
    q, k, v, theta, alpha, eta, _ = _setup(T, 2, seed=6)
    g = torch.Generator().manual_seed(2)
    w0 = [0.5 * torch.randn(n, a, b, generator=g, dtype=DT) / a**0.5 for a, b in shapes]
    rule = _rule(2, chunk_size).replace(architecture=FunctionalMemory(fn, shapes))
    y, state = BACKENDS["recurrent"](
        MemoryInputs(q, k, v, theta, torch.log1p(-alpha), torch.log(eta)), fresh_op_state(w0), rule
    )
    for i in range(n):
        y_ref, M, S, _, _ = literal_loop(
            q[i], k[i], v[i], theta[i], alpha[i], eta[i], [w[i] for w in w0],
            [torch.zeros_like(w[i]) for w in w0], [w[i] for w in w0], 0, chunk_size, "gelu",
            memory=lambda ws, x: fn(tuple(ws), x),
        )
        torch.testing.assert_close(y[i], y_ref, rtol=1e-11, atol=1e-12)
        for got, want in zip((*state.weights, *state.momentum), (*M, *S), strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
    with pytest.raises(TypeError, match="needs a DualFormMemory"):
        BACKENDS["chunked"](MemoryInputs(q, k, v, theta, torch.log1p(-alpha), torch.log(eta)), fresh_op_state(w0), rule)
