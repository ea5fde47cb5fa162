"""The Omega rule and Atlas' Muon step (ATLAS, arXiv 2505.23735): reference and chunk-parallel form.

The Omega rule (ATLAS eq. 9) makes the memory fit a sliding window of the last c tokens instead
of the last token alone::

    min_M  sum_{i=t-c+1}^{t} gamma_i^{(t)} l(M; phi(k_i), v_i)

and OmegaNet (ATLAS eq. 10-11) takes one gradient step on it per token, with Titans' momentum and
forget gate. In this library's notation (Titans' alpha = forget rate)::

    g_t = sum_{i=t-c+1}^{t} gamma_i grad l(M_anchor; phi(k_i), v_i)          window gradient (eq. 9)
    g_t = g_t min(1, tau / ||g_t||)                                            the step bound, if any
    OmegaNet:  S_t = eta_t S_{t-1} - theta_t g_t,   M_t = (1 - alpha_t) M_{t-1} + S_t        (eq. 10)
    Atlas:     S_t = eta_t S_{t-1} - g_t,           M_t = (1 - alpha_t) M_{t-1} + theta_t NS_k(S_t)
                                                                                         (eqs. 32-33)
    y_t = M_t(phi(q_t))

where NS_k is k Newton-Schulz steps on each weight matrix of the memory (``newton_schulz.py``).
The weights ``gamma_i^{(t)} = gamma_i`` are data-dependent gates in (0, 1), one per token and
head, ``gamma_i = sigmoid(x_i w_gamma + b_gamma)``: a token keeps its weight for the c steps it
stays in the window, which is what lets the window's tail be carried in the state. With c = 1
the window is the current token alone and gamma is not used (weight 1): OmegaNet is then the
Titans rule exactly (a test, 1e-12 in float64).

As in Titans (sec. 3.2), every gradient inside a chunk of b tokens is taken at the weights from
the chunk's start ("anchor"), the tail tokens' gradients included; ``chunk_size = 1`` is the pure
token rule. :func:`omega_recurrent` is the literal token-by-token reference;
:func:`omega_chunked` computes the same numbers for a whole chunk at once (docs/atlas.md):

* the per-token gradients ``u_j`` of the c - 1 tail tokens and the chunk's b tokens, at the anchor,
  in one batched pass; the window gradients are a banded sum ``g = B u`` with
  ``B[t, j] = gamma_j`` for ``t <= j <= t + c - 1`` (tail tokens first);
* OmegaNet: momentum and decay are linear in the g_t, so ``M_t = A_t W_s + f_t S_s - sum_j G[t, j] g_j``
  with the same scalar coefficients as the Titans chunked form;
* Atlas: ``S_t = E_t S_s - sum_j P[t, j] g_j`` for every t of the chunk at once, Newton-Schulz on
  all of them as one batch, then ``M_t = A_t W_s + sum_j D[t, j] theta_j NS(S_j)``: the
  orthogonalisation stays per token, exactly as in the reference.

Both materialise one weight-sized tensor per token of a chunk (the per-token weights M_t for the
reads), so the chunked form costs O(b d_in d_out) memory per chunk and head, unlike the dual
form of the Titans operator, which never forms them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from titans_memory.core.newton_schulz import newton_schulz
from titans_memory.core.ops.chunked import chunk_coefficients
from titans_memory.core.ops.common import MemoryOpState
from titans_memory.core.rule import UpdateRule


class OmegaInputs(NamedTuple):
    """Per-token inputs of N memories over T tokens for the Omega operators.

    As :class:`~titans_memory.core.ops.common.MemoryInputs` (``k`` may be wider than ``v``: the
    keys after the feature map phi), plus ``gamma`` ``(N, T)``, the window weight of every token
    (None: weight 1, only allowed for c = 1). Retention constants are not used (decay only).
    """

    q: Tensor | None
    k: Tensor
    v: Tensor
    lr: Tensor
    log_retention: Tensor | None = None
    log_momentum: Tensor | None = None
    bias_param: Tensor | None = None
    gamma: Tensor | None = None


class WindowTail(NamedTuple):
    """The c - 1 tokens before the next one, as the Omega window needs them (oldest first).

    ``k`` ``(N, c - 1, d_k)``, ``v`` ``(N, c - 1, d_v)``, ``gamma`` ``(N, c - 1)`` and ``param``
    ``(N, c - 1)`` or None. A fresh tail is all zeros: weight 0 adds nothing to any window.
    """

    k: Tensor
    v: Tensor
    gamma: Tensor
    param: Tensor | None = None


def fresh_tail(n: int, window: int, d_k: int, d_v: int, has_param: bool, *, dtype, device) -> WindowTail:
    """An empty window: c - 1 zero tokens of weight 0."""
    zeros = torch.zeros(n, window - 1, dtype=dtype, device=device)
    return WindowTail(
        torch.zeros(n, window - 1, d_k, dtype=dtype, device=device),
        torch.zeros(n, window - 1, d_v, dtype=dtype, device=device),
        zeros,
        zeros.clone() if has_param else None,
    )


def tail_from_state(state: MemoryOpState) -> WindowTail:
    """The :class:`WindowTail` an op state carries in ``state.window``."""
    k, v, gamma, *param = state.window
    return WindowTail(k, v, gamma, param[0] if param else None)


def _check(inputs: OmegaInputs, state: MemoryOpState, rule: UpdateRule) -> WindowTail:
    if not isinstance(inputs, OmegaInputs):
        raise TypeError(f"inputs must be an OmegaInputs, got {type(inputs).__name__}")
    k, v = inputs.k, inputs.v
    if k.dim() != 3 or v.dim() != 3 or k.shape[:2] != v.shape[:2]:
        raise ValueError(f"k and v must be (N, T, d_k) and (N, T, d_v); got {tuple(k.shape)}, {tuple(v.shape)}")
    if inputs.q is not None and inputs.q.shape != k.shape:
        raise ValueError(f"q must have the shape of k {tuple(k.shape)}, got {tuple(inputs.q.shape)}")
    for name, gate, wanted in (
        ("log_retention", inputs.log_retention, rule.forget),
        ("log_momentum", inputs.log_momentum, rule.momentum),
        ("bias_param", inputs.bias_param, rule.bias.param_init is not None),
        ("gamma", inputs.gamma, rule.omega_window > 1),
    ):
        if (gate is not None) != wanted:
            raise ValueError(f"inputs.{name} {'is required by' if wanted else 'must be None for'} this rule")
    if not 0 <= state.offset < rule.chunk_size:
        raise ValueError(f"state.offset must be in [0, chunk_size={rule.chunk_size}), got {state.offset}")
    if len(state.window) not in (3, 4):
        raise ValueError("state.window must hold the Omega window's tail (k, v, gamma[, param])")
    tail = tail_from_state(state)
    if tail.k.shape[1] != rule.omega_window - 1:
        raise ValueError(f"the state's window tail has {tail.k.shape[1]} tokens, expected c - 1 = {rule.omega_window - 1}")
    return tail


def _gamma(inputs: OmegaInputs) -> Tensor:
    return inputs.gamma if inputs.gamma is not None else torch.ones_like(inputs.lr)


def _bounded(rule: UpdateRule, grads: list[Tensor]) -> list[Tensor]:
    """The step bound on the window gradient: ``g <- g min(1, tau / ||g||_F)``, norm over all layers
    (grads ``(..., d_in, d_out)`` with any leading shape)."""
    norm = torch.stack([g.flatten(-2).norm(dim=-1) for g in grads]).norm(dim=0)
    scale = rule.step_scale(norm)
    return grads if scale is None else [g * scale[..., None, None] for g in grads]


# --- the reference ---------------------------------------------------------------------------------
def omega_recurrent(inputs: OmegaInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """The Omega rule (and Atlas with ``rule.muon``), one token at a time: the spec.

    Args:
        inputs: :class:`OmegaInputs` ``(N, T, ...)``.
        state: :class:`MemoryOpState` with ``window`` = the tail (k, v, gamma[, param]).
        rule: an :class:`UpdateRule` (``omega_window``, ``muon``, ``ns_steps``).

    Returns:
        ``(y, state)``: ``y`` ``(N, T, d_v)`` (None when ``q`` is None) and the state after the last token.
    """
    tail = _check(inputs, state, rule)
    q, k, v, lr, log_retention, log_momentum, param, _ = inputs
    gamma = _gamma(inputs)
    arch, c = rule.architecture, rule.omega_window
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else list(weights)
    # the window as lists of per-token tensors, oldest first
    win_k = list(tail.k.unbind(1))
    win_v = list(tail.v.unbind(1))
    win_g = list(tail.gamma.unbind(1))
    win_p = list(tail.param.unbind(1)) if tail.param is not None else None
    outputs = []
    for t in range(k.shape[1]):
        win_k.append(k[:, t])
        win_v.append(v[:, t])
        win_g.append(gamma[:, t])
        if win_p is not None:
            win_p.append(param[:, t])
        win_k, win_v, win_g = win_k[-c:], win_v[-c:], win_g[-c:]
        if win_p is not None:
            win_p = win_p[-c:]
        theta = lr[:, t, None, None]
        eta = 0.0 if log_momentum is None else torch.exp(log_momentum[:, t, None, None])
        retain = 1.0 if log_retention is None else torch.exp(log_retention[:, t, None, None])

        # g_t = sum_i gamma_i grad l(M_anchor; phi(k_i), v_i) over the window (ATLAS eq. 9)
        g = [torch.zeros_like(w) for w in anchor]
        for i in range(len(win_k)):
            p_i = None if win_p is None else win_p[i][:, None, None]
            u_i = arch.token_gradients(anchor, win_k[i][:, None], win_v[i][:, None], rule.bias, p_i)
            g = [gl + win_g[i][:, None, None] * ul[:, 0] for gl, ul in zip(g, u_i, strict=True)]
        g = _bounded(rule, g)

        if rule.muon:  # Atlas: momentum of the raw gradient, orthogonalised, then the step (eqs. 32-33)
            momentum = [eta * s - gl for s, gl in zip(momentum, g, strict=True)]
            weights = [
                retain * w + theta * newton_schulz(s, rule.ns_steps) for w, s in zip(weights, momentum, strict=True)
            ]
        else:  # OmegaNet: Titans' momentum and forget gate on the window gradient (eq. 10)
            momentum = [eta * s - theta * gl for s, gl in zip(momentum, g, strict=True)]
            weights = [retain * w + s for w, s in zip(weights, momentum, strict=True)]

        offset += 1
        if q is not None:
            outputs.append(arch.forward(weights, q[:, t : t + 1]))  # y_t = M_t(phi(q_t))
        if offset == rule.chunk_size:  # chunk boundary: later gradients are taken at M_t
            anchor, offset = list(weights), 0
    y = None
    if q is not None:
        y = torch.cat(outputs, dim=1) if outputs else v.new_zeros(v.shape)
    def stack(xs: list[Tensor], like: Tensor) -> Tensor:  # the last c - 1 tokens, (N, c - 1, ...)
        return torch.stack(xs[len(xs) - (c - 1) :], 1) if c > 1 else like[:, :0]

    window = (stack(win_k, tail.k), stack(win_v, tail.v), stack(win_g, tail.gamma))
    if win_p is not None:
        window = window + (stack(win_p, tail.param),)
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset, window)


# --- the chunk-parallel form -------------------------------------------------------------------------
def _segment(
    rule: UpdateRule,
    anchor: list[Tensor],
    weights: list[Tensor],
    momentum: list[Tensor],
    tail: WindowTail,
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    log_retention: Tensor | None,
    log_momentum: Tensor | None,
    param: Tensor | None,
    gamma: Tensor,
) -> tuple[Tensor | None, list[Tensor], list[Tensor], WindowTail]:
    """n <= b tokens of one chunk, all gradients at ``anchor``, from the state ``(weights, momentum)``.

    Shapes: q, k ``(N, n, d_k)``, v ``(N, n, d_v)``, gates ``(N, n)``.
    """
    arch, c = rule.architecture, rule.omega_window
    n, L = k.shape[1], c - 1
    keys = torch.cat([tail.k, k], dim=1)  # (N, L + n, d_k): tail first
    values = torch.cat([tail.v, v], dim=1)
    weights_in = torch.cat([tail.gamma, gamma], dim=1)  # (N, L + n)
    params = None if param is None else torch.cat([tail.param, param], dim=1)
    # per-token gradients at the anchor, u_j: (N, L + n, d_in, d_out) per layer
    u = arch.token_gradients(anchor, keys, values, rule.bias, None if params is None else params.unsqueeze(-1))
    # banded window sum: g_t = sum_{j=t}^{t+L} gamma_j u_j (extended index j; token t sits at L + t)
    rows = torch.arange(n, device=k.device)[:, None]
    cols = torch.arange(L + n, device=k.device)[None, :]
    band = ((cols >= rows) & (cols <= rows + L)).to(k.dtype)  # (n, L + n)
    B = band * weights_in[:, None, :]  # (N, n, L + n)
    g = _bounded(rule, [torch.einsum("ntj,njab->ntab", B, ul) for ul in u])  # (N, n, d_in, d_out)

    reads = q is not None
    if rule.muon:
        # S_t = E_t S_s - sum_{j<=t} P[t, j] g_j  (eq. 33 unrolled), every t of the segment
        ones = torch.ones_like(lr)
        mom = chunk_coefficients(ones, None, log_momentum)
        if log_momentum is None:  # eta = 0: S_t = -g_t
            S = [-gl for gl in g]
        else:
            P, E = mom.momentum_mix, mom.momentum_decay  # (N, n, n), (N, n)
            S = [E[..., None, None] * s[:, None] - torch.einsum("ntj,njab->ntab", P, gl) for s, gl in zip(momentum, g, strict=True)]
        ortho = [newton_schulz(s, rule.ns_steps) for s in S]  # per token, as in the reference (eq. 32)
        dec = chunk_coefficients(lr, log_retention, None)  # mix = D[t, j] theta_j, decay = A_t
        A, G = dec.decay, dec.mix
        if reads:
            M = [A[..., None, None] * w[:, None] + torch.einsum("ntj,njab->ntab", G, o) for w, o in zip(weights, ortho, strict=True)]
        else:
            M = [A[:, -1, None, None] * w + torch.einsum("nj,njab->nab", G[:, -1], o) for w, o in zip(weights, ortho, strict=True)]
        new_momentum = [s[:, -1] for s in S]
    else:
        coef = chunk_coefficients(lr, log_retention, log_momentum)
        A, G = coef.decay, coef.mix  # A_t (N, n); G[t, j] (N, n, n)

        def state_at(idx):  # M_t for rows idx: A_t W_s + f_t S_s - sum_j G[t, j] g_j
            out = []
            for w, s, gl in zip(weights, momentum, g, strict=True):
                m = A[:, idx, None, None] * w[:, None] - torch.einsum("ntj,njab->ntab", G[:, idx], gl)
                if coef.momentum_in is not None:
                    m = m + coef.momentum_in[:, idx, None, None] * s[:, None]
                out.append(m)
            return out

        M = state_at(slice(None)) if reads else [m[:, 0] for m in state_at(slice(n - 1, n))]
        if coef.momentum_in is None:  # eta = 0: S_r = -theta_r g_r
            new_momentum = [-lr[:, -1, None, None] * gl[:, -1] for gl in g]
        else:  # S_r = E_r S_s - sum_j P[r, j] theta_j g_j
            Pr = coef.momentum_mix[:, -1] * lr  # (N, n)
            new_momentum = [
                coef.momentum_decay[:, -1, None, None] * s - torch.einsum("nj,njab->nab", Pr, gl)
                for s, gl in zip(momentum, g, strict=True)
            ]
    y = None
    if reads:  # y_t = M_t(phi(q_t)) with the per-token weights: (N n) memories of one token each
        N = k.shape[0]
        flat = [m.reshape(N * n, *m.shape[2:]) for m in M]
        y = arch.forward(flat, q.reshape(N * n, 1, -1)).reshape(N, n, -1)
        new_weights = [m[:, -1] for m in M]
    else:
        new_weights = M
    new_tail = WindowTail(
        keys[:, keys.shape[1] - L :], values[:, values.shape[1] - L :], weights_in[:, weights_in.shape[1] - L :],
        None if params is None else params[:, params.shape[1] - L :],
    )
    return y, new_weights, new_momentum, new_tail


def omega_chunked(inputs: OmegaInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """The chunk-parallel form of :func:`omega_recurrent`: same signature, same numbers to rounding.

    A Python loop over chunks (aligned to the stream position, so any split of a sequence gives
    the same result as one call); inside a chunk everything is batched (module docstring).
    """
    tail = _check(inputs, state, rule)
    q, k, v, lr, log_retention, log_momentum, param, _ = inputs
    gamma = _gamma(inputs)
    b, T = rule.chunk_size, k.shape[1]
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else list(weights)
    outputs, lo = [], 0

    def cut(x: Tensor | None, lo: int, hi: int) -> Tensor | None:
        return None if x is None else x[:, lo:hi]

    while lo < T:
        hi = min(T, lo + b - offset)
        y, weights, momentum, tail = _segment(
            rule, anchor, weights, momentum, tail, cut(q, lo, hi), k[:, lo:hi], v[:, lo:hi], lr[:, lo:hi],
            cut(log_retention, lo, hi), cut(log_momentum, lo, hi), cut(param, lo, hi), gamma[:, lo:hi],
        )
        if y is not None:
            outputs.append(y)
        offset = (offset + hi - lo) % b
        if offset == 0:
            anchor = list(weights)
        lo = hi
    y = None
    if q is not None:
        y = torch.cat(outputs, dim=1) if outputs else v.new_zeros(v.shape)
    window = (tail.k, tail.v, tail.gamma) + (() if tail.param is None else (tail.param,))
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset, window)


#: The Omega operators by the backend name NeuralMemory is given.
OMEGA_BACKENDS = {"recurrent": omega_recurrent, "chunked": omega_chunked, "chunked_checkpoint": omega_chunked}
