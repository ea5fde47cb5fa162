"""The reference operator is DESIGN section 2, literally: a hand-written loop with autograd.

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

from titans_memory.core.ops import MemoryOpState, chunked_memory, fresh_op_state, recurrent_memory

DT = torch.float64
ACT = {"gelu": F.gelu, "silu": F.silu, "relu": torch.relu, "tanh": torch.tanh}


def mlp(weights: list[torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """M(x) for one memory: x W (depth 1) or x + act(...act(x W1)...) W_L (depth >= 2)."""
    h = x
    for w in weights[:-1]:
        h = ACT[activation](h @ w)
    out = h @ weights[-1]
    return x + out if len(weights) > 1 else out


def literal_loop(
    q, k, v, theta, alpha, eta, weights, momentum, anchor, offset, chunk_size, activation
):
    """One memory, token by token. q, k, v: (T, d); theta, alpha, eta: (T,) (alpha = forget rate)."""
    M = [w.clone() for w in weights]
    S = [s.clone() for s in momentum]
    M_anchor = [a.clone() for a in anchor] if offset else [w.clone() for w in M]
    ys = []
    for t in range(q.shape[0]):
        params = [a.detach().requires_grad_() for a in M_anchor]
        loss = ((mlp(params, k[t], activation) - v[t]) ** 2).sum()
        grad = torch.autograd.grad(loss, params)
        S = [eta[t] * s - theta[t] * g for s, g in zip(S, grad, strict=True)]
        M = [(1 - alpha[t]) * m + s for m, s in zip(M, S, strict=True)]
        ys.append(mlp(M, q[t], activation))
        offset += 1
        if offset == chunk_size:
            offset = 0
            M_anchor = [m.clone() for m in M]
    return torch.stack(ys), M, S, M_anchor, offset


def _shapes(depth, d, hidden):
    return (
        [(d, d)] if depth == 1 else [(d, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, d)]
    )


def _setup(T, depth, n=2, d=5, hidden=6, seed=0):
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


@pytest.mark.parametrize("op", [recurrent_memory, chunked_memory], ids=["recurrent", "chunked"])
@pytest.mark.parametrize("activation", ["gelu", "tanh"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize(
    ("momentum", "forget"), [(True, True), (False, False), (True, False), (False, True)]
)
def test_operator_equals_literal_equations(op, activation, depth, chunk_size, momentum, forget):
    T = 11
    q, k, v, theta, alpha, eta, w0 = _setup(T, depth)
    if not forget:
        alpha = torch.zeros_like(alpha)
    if not momentum:
        eta = torch.zeros_like(eta)
    y, state = op(
        q,
        k,
        v,
        theta,
        torch.log1p(-alpha) if forget else None,
        torch.log(eta) if momentum else None,
        fresh_op_state(w0),
        chunk_size=chunk_size,
        activation=activation,
    )
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
        )
        torch.testing.assert_close(y[i], y_ref, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.weights, M, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.momentum, S, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        for got, want in zip(state.anchor, anchor, strict=True):
            torch.testing.assert_close(got[i], want, rtol=1e-11, atol=1e-12)
        assert state.offset == offset == T % chunk_size


@pytest.mark.parametrize("op", [recurrent_memory, chunked_memory], ids=["recurrent", "chunked"])
def test_operator_equals_literal_equations_from_mid_chunk_state(op):
    T, depth, chunk_size, offset = 13, 2, 5, 3
    q, k, v, theta, alpha, eta, w0 = _setup(T, depth, seed=4)
    g = torch.Generator().manual_seed(9)
    s0 = [0.05 * torch.randn(w.shape, generator=g, dtype=DT) for w in w0]
    a0 = [w + 0.1 * torch.randn(w.shape, generator=g, dtype=DT) for w in w0]
    y, state = op(
        q,
        k,
        v,
        theta,
        torch.log1p(-alpha),
        torch.log(eta),
        MemoryOpState(tuple(w0), tuple(s0), tuple(a0), offset),
        chunk_size=chunk_size,
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
    args = (q, k, v, theta, torch.log1p(-alpha), torch.log(eta), fresh_op_state(w0))
    y1, _ = recurrent_memory(*args, chunk_size=1)
    y4, _ = recurrent_memory(*args, chunk_size=4)
    torch.testing.assert_close(y1[:, :1], y4[:, :1], rtol=1e-13, atol=1e-14)  # first token: same
    assert (y1 - y4).abs().max() > 1e-6
