"""The chunk-parallel forms of the Omega rule and of Atlas' Muon step (ATLAS, arXiv 2505.23735).

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

* the per-token gradient factors of the c - 1 tail tokens and the chunk's b tokens, at the
  anchor, in one batched pass (the key path), each bounded; the window gradients are a banded sum
  ``g = B u`` with ``B[t, j] = gamma_j`` for ``t <= j <= t + c - 1`` (tail tokens first);
* OmegaNet (:func:`omega_dual`): momentum and decay are linear in the g_t, so with the Titans
  chunk coefficients ``M_t = A_t W_s + f_t S_s - sum_i G[t, i] g_i = A_t W_s + f_t S_s - sum_j C[t, j] u_j``
  with ``C = G B`` (a (b x (c - 1 + b)) matrix). Every u_j is an outer product ``H_j^T Delta_j``,
  so the read ``y_t = M_t(phi(q_t))`` goes through the Titans dual form with C in place of G
  (``DualFormMemory.read_write``): masked (b x (c - 1 + b)) score matrices, never a per-token
  weight;
* Atlas (:func:`omega_atlas`): ``S_t = E_t S_s - sum_j (P B)[t, j] u_j`` for every t of the chunk
  at once, from the factors (one matmul per layer, no per-token gradient formed), Newton-Schulz
  on all of them as one batch, then ``M_t = A_t W_s + sum_j D[t, j] theta_j NS(S_j)``: the
  orthogonalisation stays per token, exactly as in the reference and as in ATLAS' own parallel
  form (sec. 5.1, eqs. 39-40: Newton-Schulz on every token's momentum, in parallel), so the
  per-token weights are formed for the reads;
* :func:`omega_materialised`: the first chunked form, kept as the slow path every architecture can
  run (:class:`FunctionalMemory` has no dual form): it forms every
  per-token gradient and per-token weight of a chunk. The tests compare all three with the
  reference operator.

:func:`omega_chunked` picks the fastest exact one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from titans_memory.core.algorithms.coefficients import ChunkCoefficients, chunk_coefficients
from titans_memory.core.algorithms.omega import (
    GAMMA,
    OPERATORS,
    TAIL_GAMMA,
    TAIL_KEYS,
    TAIL_PARAM,
    TAIL_VALUES,
    OmegaRule,
)
from titans_memory.core.architectures import (
    DualFormMemory,
    KeyPath,
    ReadCoefficients,
    WriteCoefficients,
)
from titans_memory.core.newton_schulz import newton_schulz
from titans_memory.core.ops.chunked import _autocast_dtype, _cast_inputs, _cast_state
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


def _window(tail: tuple, k: Tensor, v: Tensor, gamma: Tensor, param: Tensor | None):
    """The tail followed by the segment's tokens: ``(keys, values, gammas, params)``,
    ``(N, L + n, ...)``, tail first (token t of the segment sits at index L + t)."""
    tail_k, tail_v, tail_g, tail_p = tail
    keys = torch.cat([tail_k, k], dim=1)  # (N, L + n, d_k)
    values = torch.cat([tail_v, v], dim=1)  # (N, L + n, d_v)
    weights_in = torch.cat([tail_g, gamma], dim=1)  # (N, L + n)
    params = None if param is None else torch.cat([tail_p, param], dim=1)
    return keys, values, weights_in, params


def _band(weights_in: Tensor, n: int) -> Tensor:
    """``B[t, j] = gamma_j`` for ``t <= j <= t + L`` (extended index j), else 0: ``(N, n, L + n)``.

    Row t sums token t's window (eq. 9): ``g_t = sum_j B[t, j] u_j``."""
    L = weights_in.shape[1] - n
    rows = torch.arange(n, device=weights_in.device)[:, None]
    cols = torch.arange(L + n, device=weights_in.device)[None, :]
    band = ((cols >= rows) & (cols <= rows + L)).to(weights_in.dtype)  # (n, L + n)
    return band * weights_in[:, None, :]


def _new_tail(keys: Tensor, values: Tensor, weights_in: Tensor, params: Tensor | None, L: int) -> tuple:
    """The last L tokens of (tail, segment): the tail the next segment starts from."""
    keep = slice(keys.shape[1] - L, None)
    return keys[:, keep], values[:, keep], weights_in[:, keep], None if params is None else params[:, keep]


def _materialised_segment(
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
    differentiable: bool,
) -> tuple[Tensor | None, list[Tensor], list[Tensor], tuple]:
    """n <= b tokens of one chunk, all gradients at ``anchor``, from the state ``(weights, momentum)``,
    with every per-token gradient and per-token weight formed (the slow path; any architecture).

    Shapes: q, k ``(N, n, d_k)``, v ``(N, n, d_v)``, gates ``(N, n)``; the tail ``(N, L, ...)``.
    """
    algorithm: OmegaRule = rule.algorithm
    arch = rule.architecture
    n, L = k.shape[1], tail[0].shape[1]
    keys, values, weights_in, params = _window(tail, k, v, gamma, param)
    # per-token gradients at the anchor, each bounded: u_j (N, L + n, d_in, d_out) per layer
    u = _bounded(rule, arch.token_gradients(anchor, keys, values, rule.bias, None if params is None else params.unsqueeze(-1)))
    B = _band(weights_in, n)  # (N, n, L + n)
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
        return _atlas_reads(rule, weights, S, q, lr, log_retention) + (_new_tail(keys, values, weights_in, params, L),)
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
    y, new_weights = _per_token_reads(arch, M, q)
    return y, new_weights, new_momentum, _new_tail(keys, values, weights_in, params, L)


def _per_token_reads(arch, M: list[Tensor], q: Tensor | None) -> tuple[Tensor | None, list[Tensor]]:
    """``y_t = M_t(phi(q_t))`` with the per-token weights ``M`` ``(N, n, d_in, d_out)`` per layer
    (as N n memories of one token each), and the last token's weights; without queries ``M`` is
    already the last token's ``(N, d_in, d_out)``."""
    if q is None:
        return None, M
    N, n = q.shape[:2]
    flat = [m.reshape(N * n, *m.shape[2:]) for m in M]
    y = arch.forward(flat, q.reshape(N * n, 1, -1)).reshape(N, n, -1)
    return y, [m[:, -1] for m in M]


def _atlas_reads(
    rule: UpdateRule, weights: list[Tensor], S: list[Tensor], q: Tensor | None, lr: Tensor, log_retention: Tensor | None
) -> tuple[Tensor | None, list[Tensor], list[Tensor]]:
    """Atlas from every token's momentum S_t ``(N, n, d_in, d_out)`` per layer: each orthogonalised
    (per token, eq. 32), then ``M_t = A_t W_s + sum_j D[t, j] theta_j NS(S_j)`` and the reads.

    Returns ``(y, new_weights, new_momentum)``."""
    algorithm: OmegaRule = rule.algorithm
    ortho = [newton_schulz(s, algorithm.ns_steps) for s in S]  # one batch of n matrices per layer
    dec = _in(S[0].dtype, chunk_coefficients(lr, log_retention, None, S[0].dtype))  # mix = D[t, j] theta_j, decay = A_t
    A, G = dec.decay, dec.mix
    if q is not None:
        M = [A[..., None, None] * w[:, None] + torch.einsum("ntj,njab->ntab", G, o) for w, o in zip(weights, ortho, strict=True)]
    else:  # only the last token's weights
        M = [A[:, -1, None, None] * w + torch.einsum("nj,njab->nab", G[:, -1], o) for w, o in zip(weights, ortho, strict=True)]
    y, new_weights = _per_token_reads(rule.architecture, M, q)
    return y, new_weights, [s[:, -1] for s in S]


def _in(dtype: torch.dtype, coef: ChunkCoefficients) -> ChunkCoefficients:
    """The coefficients in ``dtype`` (they are accumulated in float32 at least, and a float32
    gate leaves them there; under autocast the chunk works in bfloat16)."""
    return ChunkCoefficients(*(None if c is None else c.to(dtype) for c in coef))


def _window_factors(
    rule: UpdateRule, anchor: list[Tensor], keys: Tensor, values: Tensor, params: Tensor | None, differentiable: bool
) -> KeyPath:
    """The bounded key path of the window's L + n tokens at the anchor: ``u_j = H_j^T Delta_j``
    per layer (``H`` ``(N, L + n, d_in)``, ``Delta`` ``(N, L + n, d_out)``), no gradient formed."""
    return rule.architecture.bounded_key_path(
        anchor, keys, values, rule.bias, None if params is None else params.unsqueeze(-1), None,
        rule.max_step_norm, differentiable=differentiable,
    )


def _dual_segment(
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
    differentiable: bool,
) -> tuple[Tensor | None, list[Tensor], list[Tensor], tuple]:
    """OmegaNet on n <= b tokens of one chunk in the dual form (module docstring): the arguments
    and results of :func:`_materialised_segment`, no per-token weight or gradient formed."""
    arch = rule.architecture
    n, L = k.shape[1], tail[0].shape[1]
    work = k.dtype
    keys, values, weights_in, params = _window(tail, k, v, gamma, param)
    path = _window_factors(rule, anchor, keys, values, params, differentiable)
    B = _band(weights_in.to(work), n)  # (N, n, L + n): g_t = sum_j B[t, j] u_j
    coef = _in(work, chunk_coefficients(lr, log_retention, log_momentum, work))
    A, f = coef.decay, coef.momentum_in  # (N, n) each (f: None without momentum)
    C = coef.mix @ B  # (N, n, L + n): M_t = A_t W_s + f_t S_s - sum_j C[t, j] u_j
    lr = lr.to(work)
    has_momentum = log_momentum is not None
    r = n - 1  # the state after the segment's last token
    write = WriteCoefficients(
        grad_weights=C[:, r, :, None],  # C[r, j], (N, L + n, 1)
        decay=A[:, r, None, None],
        # S_r = E_r S_s - sum_i P[r, i] theta_i g_i = E_r S_s - sum_j ((P[r] theta) B)[j] u_j
        momentum_grad_weights=((coef.momentum_mix[:, r] * lr)[:, None, :] @ B).transpose(-1, -2) if has_momentum else None,
        momentum_in=f[:, r, None, None] if has_momentum else None,
        momentum_decay=coef.momentum_decay[:, r, None, None] if has_momentum else None,
    )
    start_momentum = momentum if has_momentum else None
    if q is None:
        y = None
        new_weights, new_momentum = arch.write(write, weights, start_momentum, path)
    else:
        read = ReadCoefficients(
            decay=A.unsqueeze(-1),
            momentum_in=f.unsqueeze(-1) if has_momentum else None,
            mix=C,
            q_decay=A.unsqueeze(-1) * q,
            q_momentum=f.unsqueeze(-1) * q if has_momentum else None,
            scores=(q @ keys.transpose(-1, -2)) * C,  # first layer: (phi(q_t) . phi(k_j)) C[t, j]
        )
        y, new_weights, new_momentum = arch.read_write(
            q, read, write, weights, start_momentum, path, differentiable=differentiable
        )
    if not has_momentum:  # eta = 0: the state's momentum is the last step, S_r = -theta_r g_r
        w_r = (lr[:, r, None] * B[:, r])[..., None]  # (N, L + n, 1)
        new_momentum = [-torch.bmm((w_r * h).transpose(-1, -2), d) for h, d in zip(*path, strict=True)]
    return y, list(new_weights), list(new_momentum), _new_tail(keys, values, weights_in, params, L)


def _factored_momenta(path: KeyPath, W: Tensor, E: Tensor | None, momentum: list[Tensor]) -> list[Tensor]:
    """``S_t = E_t S_s - sum_j W[t, j] H_j^T Delta_j`` for every t, ``(N, n, d_in, d_out)`` per layer,
    as one matmul per layer with W folded into the narrower factor (no per-token gradient formed).

    W: ``(N, n, L + n)``; E: ``(N, n)`` or None (then no S_s term)."""
    N, n = W.shape[:2]
    out = []
    for s, h, d in zip(momentum, path.inputs, path.deltas, strict=True):
        d_in, d_out = h.shape[-1], d.shape[-1]
        wide = d_in <= d_out
        if not wide:  # W on the narrower factor: compute S^T, transposed back at the end
            h, d, s = d, h, s.transpose(-1, -2)
        a, b = h.shape[-1], d.shape[-1]
        # rows (t, a) of W[t, j] h_j[a], times Delta: (N, n a, L + n) @ (N, L + n, b)
        left = (W[:, :, None, :] * h.transpose(-1, -2)[:, None]).reshape(N, n * a, -1)
        if E is None:
            st = torch.bmm(left, d).neg_()
        else:
            start = (E[..., None, None] * s[:, None]).reshape(N, n * a, b)  # E_t S_s
            st = torch.baddbmm(start, left, d, alpha=-1.0)
        st = st.reshape(N, n, a, b)
        out.append(st if wide else st.transpose(-1, -2))
    return out


def _atlas_segment(
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
    differentiable: bool,
) -> tuple[Tensor | None, list[Tensor], list[Tensor], tuple]:
    """Atlas on n <= b tokens of one chunk from the gradient factors (module docstring): the
    arguments and results of :func:`_materialised_segment`; the per-token momenta and weights are
    formed (Newton-Schulz needs them), the per-token gradients and window gradients are not."""
    n, L = k.shape[1], tail[0].shape[1]
    work = k.dtype
    keys, values, weights_in, params = _window(tail, k, v, gamma, param)
    path = _window_factors(rule, anchor, keys, values, params, differentiable)
    B = _band(weights_in.to(work), n)  # (N, n, L + n)
    if log_momentum is None:  # eta = 0: S_t = -g_t = -sum_j B[t, j] u_j
        W, E = B, None
    else:  # S_t = E_t S_s - sum_i P[t, i] g_i = E_t S_s - sum_j (P B)[t, j] u_j   (eq. 33 unrolled)
        mom = _in(work, chunk_coefficients(torch.ones_like(lr), None, log_momentum, work))
        W, E = mom.momentum_mix @ B, mom.momentum_decay
    S = _factored_momenta(path, W, E, momentum)
    return _atlas_reads(rule, weights, S, q, lr, log_retention) + (_new_tail(keys, values, weights_in, params, L),)


Segment = Callable[..., tuple]


def _run(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule, segment: Segment) -> tuple[Tensor | None, MemoryOpState]:
    """The loop over chunks shared by the Omega operators: ``segment`` computes each piece."""
    algorithm = rule.algorithm
    q, k, v, lr, log_retention, log_momentum, param, _, extra = inputs
    gamma = extra[GAMMA] if algorithm.window > 1 else torch.ones_like(lr)
    b, T = rule.chunk_size, k.shape[1]
    tail = _tail(state, algorithm, k, v, param is not None)
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else list(weights)
    leaves = (q, k, v, lr, log_retention, log_momentum, param, gamma, *weights, *momentum, *anchor, *state.carried.values())
    differentiable = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in leaves)
    # the segments: the rest of the current chunk, whole chunks, a partial one (aligned to the
    # stream position, so any split of a sequence gives the result of one call)
    sizes, lo, at = [], 0, offset
    while lo < T:
        hi = min(T, lo + b - at)
        sizes.append(hi - lo)
        at, lo = (at + hi - lo) % b, hi

    def parts(x: Tensor | None) -> list:
        # split once: a slice per segment would zero-fill the whole input in its backward, which
        # makes the backward quadratic in the number of chunks
        return [None] * len(sizes) if x is None else list(x.split(sizes, dim=1))

    outputs = []
    per_segment = zip(*(parts(x) for x in (q, k, v, lr, log_retention, log_momentum, param, gamma)), strict=True)
    for q_s, k_s, v_s, lr_s, ret_s, mom_s, param_s, gamma_s in per_segment:
        y, weights, momentum, tail = segment(
            rule, anchor, weights, momentum, tail, q_s, k_s, v_s, lr_s, ret_s, mom_s, param_s, gamma_s, differentiable,
        )
        if y is not None:
            outputs.append(y)
        offset = (offset + k_s.shape[1]) % b
        if offset == 0:
            anchor = list(weights)
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


def _check(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule, caller: str) -> OmegaRule:
    check_op_inputs(inputs, state, rule)
    algorithm = rule.algorithm
    if not isinstance(algorithm, OmegaRule):
        raise TypeError(f"{caller} runs the omeganet and atlas algorithms, not {algorithm.name!r}")
    if rule.retention is not None or rule.decayed_gradient:
        raise ValueError(f"{caller} needs retention='decay' and no decayed gradient")
    return algorithm


def omega_materialised(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """The Omega / Atlas operator that forms every per-token gradient and per-token weight of a
    chunk: any architecture (a ``FunctionalMemory`` too), O(b d_in d_out) memory per
    chunk and head. The signature of every memory operator; the numbers of the reference operator
    to rounding.

    A Python loop over chunks (aligned to the stream position, so any split of a sequence gives
    the same result as one call); inside a chunk everything is batched (module docstring).
    """
    _check(inputs, state, rule, "omega_materialised")
    return _run(inputs, state, rule, _materialised_segment)


def _factored(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule, segment: Segment, caller: str):
    """Run a factored segment (a :class:`DualFormMemory` needed), in the autocast dtype under
    ``torch.autocast`` as the Titans chunked operator does (the state handed back keeps its dtype)."""
    if not isinstance(rule.architecture, DualFormMemory):
        raise TypeError(
            f"{caller} needs a DualFormMemory architecture; {type(rule.architecture).__name__} has none "
            "(omega_materialised runs it)"
        )
    device = inputs.k.device.type
    work = _autocast_dtype(device)
    if work is None:
        return _run(inputs, state, rule, segment)
    with torch.autocast(device, enabled=False):
        y, out = _run(_cast_inputs(inputs, work), _cast_state(state, work), rule, segment)
    return y, _cast_state(out, state.weights[0].dtype)


def omega_dual(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """OmegaNet's chunked operator in the dual form: no per-token weight and no per-token gradient
    is formed (module docstring); the reads are the Titans dual form with ``C = G B`` as the
    mixing matrix. Needs a :class:`DualFormMemory` and ``algorithm="omeganet"`` (Muon is not
    linear in the gradients: :func:`omega_atlas`)."""
    algorithm = _check(inputs, state, rule, "omega_dual")
    if algorithm.muon:
        raise TypeError("omega_dual runs omeganet; Atlas' Newton-Schulz step needs the per-token momenta (omega_atlas)")
    return _factored(inputs, state, rule, _dual_segment, "omega_dual")


def omega_atlas(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """Atlas' chunked operator from the gradient factors: every token's momentum from one matmul
    per layer, Newton-Schulz on each (per token, as the reference and ATLAS' parallel form), then
    the per-token weights for the reads. Needs a :class:`DualFormMemory` and ``algorithm="atlas"``."""
    algorithm = _check(inputs, state, rule, "omega_atlas")
    if not algorithm.muon:
        raise TypeError("omega_atlas runs atlas (Muon); omeganet runs in the dual form (omega_dual)")
    return _factored(inputs, state, rule, _atlas_segment, "omega_atlas")


def omega_chunked(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> tuple[Tensor | None, MemoryOpState]:
    """The chunk-parallel Omega / Atlas operator: the signature of every memory operator, the
    numbers of the reference operator (``recurrent_memory`` running the algorithm's ``token_step``)
    to rounding. It runs :func:`omega_dual` (OmegaNet) or :func:`omega_atlas` (Atlas) on a
    :class:`DualFormMemory`, :func:`omega_materialised` on any other architecture.

    A Python loop over chunks (aligned to the stream position, so any split of a sequence gives
    the same result as one call); inside a chunk everything is batched (module docstring). No
    activation checkpointing (``"chunked_checkpoint"`` runs this too) and no compiled step.
    """
    algorithm = _check(inputs, state, rule, "omega_chunked")
    if not isinstance(rule.architecture, DualFormMemory):
        return _run(inputs, state, rule, _materialised_segment)
    segment = _atlas_segment if algorithm.muon else _dual_segment
    return _factored(inputs, state, rule, segment, "omega_chunked")


# the algorithm's chunked form, for NeuralMemory's "chunked" and "chunked_checkpoint" backends
OPERATORS.update(chunked=omega_chunked, chunked_checkpoint=omega_chunked)
