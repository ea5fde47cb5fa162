"""The chunk-parallel form of the Omega rule and of Atlas' Muon step (ATLAS, arXiv 2505.23735).

The Omega rule (ATLAS arXiv v1, eqs. 8-9) makes the memory fit a sliding window of the last c
tokens instead of the last token alone::

    min_M  sum_{i=t-c+1}^{t} gamma_i^{(t)} l(M; phi(k_i), v_i)

and OmegaNet (ATLAS eq. 10; eq. 11 is its matrix case) takes one gradient step on it per token.
The paper's OmegaNet has a retention gate and no momentum; this library adds Titans' momentum
(ATLAS eqs. 12-13 are its c = 1 case), and ``momentum=False`` is eq. 10 itself (docs/atlas.md §7).
In this library's notation (Titans' alpha = forget rate, theta = learning rate, eta = momentum;
ATLAS swaps the last two)::

    u_i = grad l(M_anchor; phi(k_i), v_i) min(1, tau / ||.||)                 bounded per token
    g_t = sum_{i=t-c+1}^{t} gamma_i u_i                                        window gradient (eq. 9)
    OmegaNet:  S_t = eta_t S_{t-1} - theta_t g_t,   M_t = (1 - alpha_t) M_{t-1} + S_t   (eq. 10 + momentum)
    Atlas:     S_t = eta_t S_{t-1} - g_t,           M_t = (1 - alpha_t) M_{t-1} + theta_t NS_k(S_t)
                                                                                         (eqs. 32-33)
    y_t = M_t(phi(q_t))

where NS_k is k Newton-Schulz steps on each weight matrix of the memory (``newton_schulz.py``).
The weights ``gamma_i^{(t)} = gamma_i`` are data-dependent gates in (0, 1), one per token and
head, ``gamma_i = sigmoid(x_i w_gamma + b_gamma)``: a token keeps its weight for the c steps it
stays in the window, which is what lets the window's tail be carried in the state (ATLAS sec. 3.2
allows c gates per step; a departure, docs/atlas.md §7). With c = 1
the window is the current token alone and gamma is not used (weight 1): OmegaNet is then the
Titans rule exactly (a test, 1e-12 in float64).

As in Titans (sec. 3.2) and ATLAS sec. 3.3 (eq. 16), every gradient inside a chunk of b tokens is
taken at the weights from the chunk's start ("anchor"), the tail tokens' gradients included; the
banded sum below is ATLAS' "sliding window mask" with the gammas as entries. ``chunk_size = 1`` is the pure
token rule. The algorithm (``core/algorithms/omega.py``) is registered as ``"omeganet"`` and
``"atlas"``; its ``token_step`` run by the reference operator (``ops/recurrent.py``) is the literal
token-by-token spec, and :func:`omega_chunked` computes the same numbers for a whole chunk at
once (docs/atlas.md):

* the per-token gradients ``u_j`` of the c - 1 tail tokens and the chunk's b tokens, at the anchor,
  in one batched pass, each bounded; the window gradients are a banded sum ``g = B u`` with
  ``B[t, j] = gamma_j`` for ``t <= j <= t + c - 1`` (tail tokens first);
* OmegaNet: momentum and decay are linear in the g_t, so ``M_t = A_t W_s + f_t S_s - sum_j G[t, j] g_j``
  with the same scalar coefficients as the Titans chunked form;
* Atlas: ``S_t = E_t S_s - sum_j P[t, j] g_j`` for every t of the chunk at once, Newton-Schulz on
  all of them as one batch, then ``M_t = A_t W_s + sum_j D[t, j] theta_j NS(S_j)``: the
  orthogonalisation stays per token, exactly as in the reference and as in ATLAS' own parallel
  form (sec. 5.1, eqs. 39-40: Newton-Schulz on every token's momentum, in parallel).

Both materialise one weight-sized tensor per token of a chunk (the per-token weights M_t for the
reads), so the chunked form costs O(b d_in d_out) memory per chunk and head, unlike the dual
form of the Titans operator, which never forms them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from titans_memory.core.algorithms.coefficients import chunk_coefficients
from titans_memory.core.algorithms.omega import (
    GAMMA,
    OPERATORS,
    TAIL_GAMMA,
    TAIL_KEYS,
    TAIL_PARAM,
    TAIL_VALUES,
    OmegaRule,
)
from titans_memory.core.newton_schulz import newton_schulz
from titans_memory.core.ops.common import MemoryInputs, MemoryOpState, check_op_inputs

if TYPE_CHECKING:
    from titans_memory.core.rule import UpdateRule


def _tail(state: MemoryOpState, algorithm: OmegaRule, k: Tensor, v: Tensor, has_param: bool):
    """The carried tail ``(keys, values, gamma, param)``, ``(N, c - 1, ...)``; empty for c = 1."""
    if algorithm.window == 1:
        n = k.shape[0]
        empty = k.new_zeros(n, 0)
        return k.new_zeros(n, 0, k.shape[-1]), v.new_zeros(n, 0, v.shape[-1]), empty, empty if has_param else None
    c = state.carried
    return c[TAIL_KEYS], c[TAIL_VALUES], c[TAIL_GAMMA], c.get(TAIL_PARAM)


def _bounded(rule: UpdateRule, grads: list[Tensor]) -> list[Tensor]:
    """The per-token step bound ``u <- u min(1, tau / ||u||_F)`` (norm over all layers), grads
    ``(N, T, d_in, d_out)`` per layer."""
    scale = rule.step_scale(torch.stack([g.flatten(2).norm(dim=2) for g in grads]).norm(dim=0))
    return grads if scale is None else [g * scale[..., None, None] for g in grads]


def _segment(
    rule: UpdateRule,
    anchor: list[Tensor],
    weights: list[Tensor],
    momentum: list[Tensor],
    tail: tuple,
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    log_retention: Tensor | None,
    log_momentum: Tensor | None,
    param: Tensor | None,
    gamma: Tensor,
) -> tuple[Tensor | None, list[Tensor], list[Tensor], tuple]:
    """n <= b tokens of one chunk, all gradients at ``anchor``, from the state ``(weights, momentum)``.

    Shapes: q, k ``(N, n, d_k)``, v ``(N, n, d_v)``, gates ``(N, n)``; the tail ``(N, L, ...)``.
    """
    algorithm: OmegaRule = rule.algorithm
    arch = rule.architecture
    tail_k, tail_v, tail_g, tail_p = tail
    n, L = k.shape[1], tail_k.shape[1]
    keys = torch.cat([tail_k, k], dim=1)  # (N, L + n, d_k): tail first
    values = torch.cat([tail_v, v], dim=1)
    weights_in = torch.cat([tail_g, gamma], dim=1)  # (N, L + n)
    params = None if param is None else torch.cat([tail_p, param], dim=1)
    # per-token gradients at the anchor, each bounded: u_j (N, L + n, d_in, d_out) per layer
    u = _bounded(rule, arch.token_gradients(anchor, keys, values, rule.bias, None if params is None else params.unsqueeze(-1)))
    # banded window sum: g_t = sum_{j=t}^{t+L} gamma_j u_j (extended index j; token t sits at L + t)
    rows = torch.arange(n, device=k.device)[:, None]
    cols = torch.arange(L + n, device=k.device)[None, :]
    band = ((cols >= rows) & (cols <= rows + L)).to(k.dtype)  # (n, L + n)
    B = band * weights_in[:, None, :]  # (N, n, L + n)
    g = [torch.einsum("ntj,njab->ntab", B, ul) for ul in u]  # (N, n, d_in, d_out)

    reads = q is not None
    if algorithm.muon:
        # S_t = E_t S_s - sum_{j<=t} P[t, j] g_j  (eq. 33 unrolled, as ATLAS eq. 39), every t of the segment
        if log_momentum is None:  # eta = 0: S_t = -g_t
            S = [-gl for gl in g]
        else:
            mom = chunk_coefficients(torch.ones_like(lr), None, log_momentum)
            P, E = mom.momentum_mix, mom.momentum_decay  # (N, n, n), (N, n)
            S = [
                E[..., None, None] * s[:, None] - torch.einsum("ntj,njab->ntab", P, gl)
                for s, gl in zip(momentum, g, strict=True)
            ]
        ortho = [newton_schulz(s, algorithm.ns_steps) for s in S]  # per token, as in the reference (eq. 32) and ATLAS eq. 40
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
    keep = slice(keys.shape[1] - L, None)  # the last L tokens
    new_tail = (keys[:, keep], values[:, keep], weights_in[:, keep], None if params is None else params[:, keep])
    return y, new_weights, new_momentum, new_tail


def omega_chunked(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """The chunk-parallel Omega / Atlas operator: the signature of every memory operator, the
    numbers of the reference operator (``recurrent_memory`` running the algorithm's ``token_step``)
    to rounding.

    A Python loop over chunks (aligned to the stream position, so any split of a sequence gives
    the same result as one call); inside a chunk everything is batched (module docstring). No
    activation checkpointing (``"chunked_checkpoint"`` runs this too) and no compiled step.
    """
    check_op_inputs(inputs, state, rule)
    algorithm = rule.algorithm
    if not isinstance(algorithm, OmegaRule):
        raise TypeError(f"omega_chunked runs the omeganet and atlas algorithms, not {algorithm.name!r}")
    if rule.retention is not None or rule.decayed_gradient:
        raise ValueError("omega_chunked needs retention='decay' and no decayed gradient")
    q, k, v, lr, log_retention, log_momentum, param, _, extra = inputs
    gamma = extra[GAMMA] if algorithm.window > 1 else torch.ones_like(lr)
    b, T = rule.chunk_size, k.shape[1]
    tail = _tail(state, algorithm, k, v, param is not None)
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
    carried = dict(state.carried)
    if algorithm.window > 1:
        carried.update({TAIL_KEYS: tail[0], TAIL_VALUES: tail[1], TAIL_GAMMA: tail[2]})
        if tail[3] is not None:
            carried[TAIL_PARAM] = tail[3]
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset, carried)


# the algorithm's chunked form, for NeuralMemory's "chunked" and "chunked_checkpoint" backends
OPERATORS.update(chunked=omega_chunked, chunked_checkpoint=omega_chunked)
