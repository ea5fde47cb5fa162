"""The chunk-parallel memory operator: exact, matmuls only, no per-token weights.

Inside a chunk every gradient is taken at the anchor weights W_g (the chunk-start weights), so
``u_j = H_j^T Delta_j`` is an outer product of the key path's layer input ``H_j`` and error signal
``Delta_j``, and momentum and forgetting are *linear* recurrences in the u_j. Unrolled from the
segment's start state ``(W_s, S_s)`` (Titans sec. 3.2; DESIGN section 2)::

    S_t = E_t S_s - sum_{j<=t} theta_j P[t, j] u_j          E_t = prod_{i<=t} eta_i, P[t,j] = E_t / E_j
    M_t = A_t W_s + f_t S_s - sum_{j<=t} G[t, j] u_j        A_t = prod_{i<=t} (1 - alpha_i)
          f_t = sum_{s<=t} D[t, s] E_s,   G = (D @ P) diag(theta),   D[t, s] = A_t / A_s

* the segment-end weights are one matmul per layer: ``W_end = A_r W_s + f_r S_s - H^T (G[r]^T * Delta)``;
* the read ``y_t = M_t(q_t)`` is exact through the "dual form": layer l's pre-activation for the
  query-path input ``h_t`` is ``A_t h_t W_s + f_t h_t S_s - sum_j G[t, j] (h_t . H_j) Delta_j``,
  a masked (c x c) matmul, as in linear attention / TTT.

Products of gates are taken in log space (cumulative sums of log-gates), so long chunks and tiny
gates neither underflow to 0/0 nor lose the momentum. Every step is differentiable, so autograd
trains the outer parameters through the whole update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_memory.core.models import ACTIVATIONS, memory_backward, memory_forward
from titans_memory.core.objectives import l2_error
from titans_memory.core.ops.common import MemoryOpState, check_op_inputs


def _segment_products(log_gate: Tensor) -> tuple[Tensor, Tensor]:
    """For log-gates ``(..., c)``: cumulative products ``(..., c)`` and the lower-triangular
    matrix of partial products ``R[t, s] = prod_{s < i <= t} gate_i`` (``(..., c, c)``, 0 above)."""
    c = log_gate.shape[-1]
    cum = log_gate.cumsum(-1)
    upper = torch.ones(c, c, dtype=torch.bool, device=log_gate.device).triu(1)
    ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(upper, float("-inf")).exp()
    return cum.exp(), ratio


def chunk_coefficients(
    lr: Tensor, log_retention: Tensor | None, log_momentum: Tensor | None
) -> dict[str, Tensor | None]:
    """Scalar coefficients of the unrolled recurrence for a grid of segments.

    Args:
        lr, log_retention, log_momentum: ``(..., c)`` gates of each segment (None: gate off).

    Returns:
        dict with ``A`` (..., c), ``f`` (..., c) or None, ``E`` (..., c) or None,
        ``G`` (..., c, c) and ``P`` (..., c, c) or None, as in the module docstring.
    """
    c = lr.shape[-1]
    if log_retention is None:
        retain = torch.ones_like(lr)
        decay = torch.ones(c, c, dtype=lr.dtype, device=lr.device).tril().expand(*lr.shape, c)
    else:
        retain, decay = _segment_products(log_retention)
    if log_momentum is None:  # eta = 0: S_t = -theta_t u_t, so P is the identity and f = 0
        return {"A": retain, "f": None, "E": None, "G": decay * lr.unsqueeze(-2), "P": None}
    carry, mom = _segment_products(log_momentum)
    f = (decay @ carry.unsqueeze(-1)).squeeze(-1)
    G = (decay @ mom) * lr.unsqueeze(-2)
    return {"A": retain, "f": f, "E": carry, "G": G, "P": mom}


def _segment(
    start_weights: Sequence[Tensor],
    start_momentum: Sequence[Tensor],
    anchor: Sequence[Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    coef: dict[str, Tensor | None],
    last: int,
    activation: str,
    error_fn: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One segment of c tokens: outputs ``(N, c, d)`` and the state after token ``last``."""
    act = ACTIVATIONS[activation][0]
    A, f, E, G, P = coef["A"], coef["f"], coef["E"], coef["G"], coef["P"]
    has_momentum = f is not None
    depth = len(anchor)

    # Key path at the anchor: layer inputs H_l (N, c, d_in) and error signals Delta_l (N, c, d_out).
    pred, inputs, preacts = memory_forward(anchor, k, activation)
    deltas = memory_backward(anchor, preacts, error_fn(pred, v), activation)

    # Query path, layer by layer, through the dual form: y_t = M_t(q_t) with M_t never formed.
    h = q
    for layer in range(depth):
        w, s = start_weights[layer], start_momentum[layer]
        d_out = w.shape[-1]
        if has_momentum:  # one matmul for the two terms that multiply the same operand h
            base = h @ torch.cat([w, s], dim=-1)  # (N, c, 2 d_out)
            z = A.unsqueeze(-1) * base[..., :d_out] + f.unsqueeze(-1) * base[..., d_out:]
        else:
            z = A.unsqueeze(-1) * (h @ w)
        scores = (h @ inputs[layer].transpose(-1, -2)) * G  # (N, c, c), causal through G
        z = z - scores @ deltas[layer]
        h = act(z) if layer < depth - 1 else z
    y = h + q if depth > 1 else h

    # State after token `last`: one matmul per layer for weights and momentum together.
    g_last = G[:, last, :].unsqueeze(-1)  # (N, c, 1)
    new_weights, new_momentum = [], []
    for layer in range(depth):
        w, s = start_weights[layer], start_momentum[layer]
        a_in, delta = inputs[layer], deltas[layer]
        d_out = w.shape[-1]
        a_last = A[:, last, None, None]
        if has_momentum:
            p_last = (P[:, last, :] * lr).unsqueeze(-1)  # theta_j P[r, j]
            upd = a_in.transpose(-1, -2) @ torch.cat([g_last * delta, p_last * delta], dim=-1)
            new_weights.append(a_last * w + f[:, last, None, None] * s - upd[..., :d_out])
            new_momentum.append(E[:, last, None, None] * s - upd[..., d_out:])
        else:
            new_weights.append(a_last * w - a_in.transpose(-1, -2) @ (g_last * delta))
            theta = lr[:, last, None, None]
            new_momentum.append(-theta * (a_in[:, last, :, None] * delta[:, last, None, :]))
    return y, new_weights, new_momentum


def chunked_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    log_retention: Tensor | None,
    log_momentum: Tensor | None,
    state: MemoryOpState,
    *,
    chunk_size: int,
    activation: str = "gelu",
    error_fn: Callable[[Tensor, Tensor], Tensor] = l2_error,
) -> tuple[Tensor, MemoryOpState]:
    """Chunk-parallel twin of :func:`~titans_memory.core.ops.recurrent.recurrent_memory`.

    Same arguments, same ``(y, state)``, equal to rounding. Chunks are aligned to the stream's
    absolute position (``state.offset``), so feeding a sequence in pieces of any sizes gives the
    same result as one call.
    """
    check_op_inputs(q, k, v, lr, log_retention, log_momentum, state, chunk_size)
    n, T, _ = q.shape
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else weights
    if T == 0:
        return q.new_zeros(q.shape), state

    def gates(lo: int, hi: int, pad: int, segments: int, c: int):
        def cut(g: Tensor | None) -> Tensor | None:
            if g is None:
                return None
            return F.pad(g[:, lo:hi], (0, pad)).reshape(n, segments, c)

        return cut(lr), cut(log_retention), cut(log_momentum)

    outputs: list[Tensor] = []
    head = 0
    if offset:  # finish the chunk the stream stopped in, from (M_t, S_t) with gradients at the anchor
        head = min(T, chunk_size - offset)
        lr_h, ret_h, mom_h = gates(0, head, 0, 1, head)
        coef = {key: (val[:, 0] if val is not None else None) for key, val in chunk_coefficients(lr_h, ret_h, mom_h).items()}
        y, weights, momentum = _segment(
            weights, momentum, anchor, q[:, :head], k[:, :head], v[:, :head], lr_h[:, 0], coef,
            head - 1, activation, error_fn,
        )
        outputs.append(y)
        offset = (offset + head) % chunk_size
        anchor = weights if offset == 0 else anchor

    rest = T - head
    if rest:
        segments = -(-rest // chunk_size)
        pad = segments * chunk_size - rest
        lr_b, ret_b, mom_b = gates(head, T, pad, segments, chunk_size)
        coefs = chunk_coefficients(lr_b, ret_b, mom_b)  # all chunks' coefficients at once
        qp, kp, vp = (F.pad(x[:, head:], (0, 0, 0, pad)) for x in (q, k, v))
        for i in range(segments):
            lo = i * chunk_size
            last = chunk_size - 1 if i < segments - 1 else (rest - 1) - lo
            coef = {key: (val[:, i] if val is not None else None) for key, val in coefs.items()}
            anchor = weights  # every body chunk starts at a chunk boundary
            y, weights, momentum = _segment(
                weights, momentum, anchor, qp[:, lo : lo + chunk_size], kp[:, lo : lo + chunk_size],
                vp[:, lo : lo + chunk_size], lr_b[:, i], coef, last, activation, error_fn,
            )
            outputs.append(y)
        offset = rest % chunk_size

    y = torch.cat(outputs, dim=1)[:, :T]
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset)
