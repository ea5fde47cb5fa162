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

from titans_memory.core.models import memory_errors_at
from titans_memory.core.objectives import l2_error
from titans_memory.core.ops.common import MemoryOpState, check_op_inputs
from titans_memory.core.ops.dual_form import read_write, read_write_autograd

_CHUNK_BLOCK = 16  # chunks whose coefficients are computed together


def _segment_products(log_gate: Tensor) -> tuple[Tensor, Tensor]:
    """For log-gates ``(..., c)``: cumulative products ``(..., c)`` and the lower-triangular
    matrix of partial products ``R[t, s] = prod_{s < i <= t} gate_i`` (``(..., c, c)``, 0 above)."""
    c = log_gate.shape[-1]
    cum = log_gate.cumsum(-1)
    upper = torch.ones(c, c, dtype=torch.bool, device=log_gate.device).triu(1)
    ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill_(upper, float("-inf")).exp_()  # fresh: in place
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


def segment_terms(q: Tensor, k: Tensor, lr: Tensor, coef: dict[str, Tensor | None], last: int) -> dict[str, Tensor]:
    """Per-segment terms that need no memory weights, for a whole grid of segments at once.

    Args:
        q, k: ``(..., c, d)`` queries and keys; lr: ``(..., c)``; coef: :func:`chunk_coefficients`.
        last: the row whose state the segment returns.

    Returns:
        ``qa = A_t q_t`` and ``qf = f_t q_t`` (the first layer's dual-form base inputs),
        ``s0 = (q k^T) * G`` (its masked scores: the first layer's key-path input is k itself),
        and the end-of-segment coefficients ``g = G[r, :]``, ``a = A_r``, ``p = theta P[r, :]``,
        ``f = f_r``, ``e = E_r`` shaped to broadcast. Computed once per call instead of once per
        chunk: fewer, larger ops, and fewer autograd nodes.
    """
    A, f, G = coef["A"], coef["f"], coef["G"]
    terms = {
        "qa": A.unsqueeze(-1) * q,
        "s0": (q @ k.transpose(-1, -2)) * G,
        **end_terms(lr, coef, last),
    }
    if f is not None:
        terms["qf"] = f.unsqueeze(-1) * q
    return terms


def end_terms(lr: Tensor, coef: dict[str, Tensor | None], last: int) -> dict[str, Tensor]:
    """The coefficients of the state after token ``last`` (see :func:`segment_terms`)."""
    terms = {"g": coef["G"][..., last, :].unsqueeze(-1), "a": coef["A"][..., last, None, None]}
    if coef["f"] is not None:
        terms["p"] = (coef["P"][..., last, :] * lr).unsqueeze(-1)  # theta_j P[r, j]
        terms["f"] = coef["f"][..., last, None, None]
        terms["e"] = coef["E"][..., last, None, None]
    return terms


def _segment(
    weights: list[Tensor],
    momentum: list[Tensor] | None,
    anchor: Sequence[Tensor] | None,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    coef: dict[str, Tensor | None],
    terms: dict[str, Tensor],
    last: int,
    activation: str,
    error_fn: Callable[..., Tensor],
    param: Tensor | None = None,
    decayed_gradient: bool = False,
    want_step: bool = False,
    inplace: bool = False,
    differentiable: bool = True,
) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """One segment of c tokens of N memories.

    Args:
        weights: per layer, the start weights W_s, ``(N, d_in, d_out)``.
        momentum: per layer, the start momentum S_s, or None without momentum.
        anchor: weights where the gradients are taken; None means W_s (a chunk boundary).
        q, k, v: ``(N, c, d)``; lr: ``(N, c)``; coef: :func:`chunk_coefficients` of the segment.
        terms: :func:`segment_terms` of the segment.
        last: index of the token whose state is returned (c - 1 unless the stream ends earlier).
        param: ``(N, c)`` per-token parameter of the attentional bias, or None.
        decayed_gradient: gradients at the decayed anchor ``A_t W_g`` (Gated DeltaNet).
        want_step: without momentum, return S_last = -theta_last u_last (the state's S).
        inplace: overwrite ``weights`` and ``momentum`` with the new state (no autograd, and
            nobody else holds them): saves fresh weight-sized allocations, and their page faults.
        differentiable: whether autograd needs the segment (False: plain ops, no graph node).

    Returns:
        ``(y, new_weights, new_momentum)``: outputs ``(N, c, d)`` and the state after token
        ``last`` (without momentum, ``new_momentum`` is S_last when asked for, else None).
    """
    A, f, G = coef["A"], coef["f"], coef["G"]
    has_momentum = momentum is not None
    if anchor is None:
        anchor = weights

    # Key path at the anchor: layer inputs H_l (N, c, d_in) and error signals Delta_l (N, c, d_out).
    inputs, deltas = memory_errors_at(
        anchor, k, v, error_fn, activation,
        param=None if param is None else param.unsqueeze(-1),
        row_scale=A.unsqueeze(-1) if decayed_gradient else None,
    )

    # Read (y_t = M_t(q_t) through the dual form, M_t never formed) and write (the state after
    # token `last`): one autograd node with a hand-written backward when gradients are needed.
    args = (
        q, terms["qa"], terms.get("qf"), terms["s0"], A.unsqueeze(-1),
        f.unsqueeze(-1) if has_momentum else None, G, terms["g"], terms["a"],
        terms.get("p"), terms.get("f"), terms.get("e"), weights, momentum, inputs, deltas, activation,
    )
    if differentiable:
        y, new_weights, new_momentum = read_write_autograd(*args)
    else:
        y, new_weights, new_momentum = read_write(*args, inplace=inplace)
    if not has_momentum and want_step:  # S_r = -theta_r u_r: the only momentum a state without momentum holds
        theta = lr[:, last, None, None]
        new_momentum = [
            -theta * (a[:, last, :, None] * d[:, last, None, :]) for a, d in zip(inputs, deltas, strict=True)
        ]
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
    error_fn: Callable[..., Tensor] = l2_error,
    objective_param: Tensor | None = None,
    decayed_gradient: bool = False,
    chunk_end_retention: Callable[[list[Tensor]], list[Tensor]] | None = None,
) -> tuple[Tensor, MemoryOpState]:
    """Chunk-parallel twin of :func:`~titans_memory.core.ops.recurrent.recurrent_memory`.

    Same arguments, same ``(y, state)``, equal to rounding. Chunks are aligned to the stream's
    absolute position (``state.offset``), so feeding a sequence in pieces of any sizes gives the
    same result as one call.
    """
    check_op_inputs(q, k, v, lr, log_retention, log_momentum, state, chunk_size)
    if objective_param is not None and objective_param.shape != lr.shape:
        raise ValueError(f"objective_param must have shape {tuple(lr.shape)}, got {tuple(objective_param.shape)}")
    n, T, _ = q.shape
    if T == 0:
        return q.new_zeros(q.shape), state
    has_momentum = log_momentum is not None
    weights = list(state.weights)
    momentum = list(state.momentum) if has_momentum else None
    # overwrite the state in place where autograd does not need it (inference), but never the
    # caller's tensors: only those this call made (from the second segment on)
    no_grad = not torch.is_grad_enabled() or not any(
        t.requires_grad
        for t in (q, k, v, lr, log_retention, log_momentum, objective_param, *state.weights, *state.momentum)
        if t is not None
    )
    owned = False
    offset = state.offset
    anchor: list[Tensor] | None = list(state.anchor) if offset else None  # None: the weights
    last_step = None

    def retain(ws: list[Tensor]) -> list[Tensor]:
        """Chunk end: the non-linear retention of the weights (momentum untouched)."""
        return ws if chunk_end_retention is None else list(chunk_end_retention(ws))

    def grid(g: Tensor | None, lo: int, hi: int, pad: int, segments: int, c: int) -> Tensor | None:
        if g is None:
            return None
        g = g[:, lo:hi]
        return (F.pad(g, (0, pad)) if pad else g).reshape(n, segments, c)

    def pick(coefs: dict[str, Tensor | None], i: int) -> dict[str, Tensor | None]:
        return {key: (val[:, i] if val is not None else None) for key, val in coefs.items()}

    outputs: list[Tensor] = []
    head = 0
    if offset:  # finish the chunk the stream stopped in: from (M_t, S_t), gradients at the anchor
        head = min(T, chunk_size - offset)
        lr_h, ret_h, mom_h, par_h = (
            grid(g, 0, head, 0, 1, head) for g in (lr, log_retention, log_momentum, objective_param)
        )
        coef = pick(chunk_coefficients(lr_h, ret_h, mom_h), 0)
        q_h, k_h = q[:, :head], k[:, :head]
        y, weights, step = _segment(
            weights, momentum, anchor, q_h, k_h, v[:, :head], lr_h[:, 0], coef,
            segment_terms(q_h, k_h, lr_h[:, 0], coef, head - 1), head - 1,
            activation, error_fn, None if par_h is None else par_h[:, 0], decayed_gradient,
            want_step=head == T, differentiable=not no_grad,
        )
        momentum, last_step = (step, None) if has_momentum else (momentum, step)
        owned = True
        outputs.append(y)
        offset = (offset + head) % chunk_size
        if offset == 0:
            weights, anchor = retain(weights), None
        elif decayed_gradient:  # the anchor carries the decay since the chunk start
            anchor = [coef["A"][:, head - 1, None, None] * w for w in anchor]

    rest = T - head
    if rest:
        segments = -(-rest // chunk_size)
        pad = segments * chunk_size - rest
        lr_b, ret_b, mom_b, par_b = (
            grid(g, head, T, pad, segments, chunk_size) for g in (lr, log_retention, log_momentum, objective_param)
        )
        q_b, k_b, v_b = (
            (F.pad(x[:, head:], (0, 0, 0, pad)) if pad else x[:, head:]).reshape(n, segments, chunk_size, -1)
            for x in (q, k, v)
        )
        # Coefficients and weight-free terms are computed for a block of chunks at once (fewer,
        # larger ops) but not for the whole sequence, so the temporaries stay cache-sized and the
        # cost linear in T. Inputs are split once, never sliced per chunk: a slice's backward
        # zero-fills the whole tensor, which made backprop quadratic in the number of chunks.
        def blocks(g: Tensor | None) -> list[Tensor | None]:
            return list(g.split(_CHUNK_BLOCK, dim=1)) if g is not None else [None] * len(starts)

        starts = range(0, segments, _CHUNK_BLOCK)
        for q_k, k_k, v_k, lr_k, ret_k, mom_k, par_k, first in zip(
            *(blocks(g) for g in (q_b, k_b, v_b, lr_b, ret_b, mom_b, par_b)), starts, strict=True
        ):
            coefs = chunk_coefficients(lr_k, ret_k, mom_k)
            per_chunk = {key: (val.unbind(1) if val is not None else None) for key, val in coefs.items()}
            terms = {key: val.unbind(1) for key, val in segment_terms(q_k, k_k, lr_k, coefs, chunk_size - 1).items()}
            qs, ks, vs, lrs = q_k.unbind(1), k_k.unbind(1), v_k.unbind(1), lr_k.unbind(1)
            params = par_k.unbind(1) if par_k is not None else [None] * len(qs)
            for j in range(len(qs)):
                i = first + j
                final = i == segments - 1
                last = (rest - 1) - i * chunk_size if final else chunk_size - 1
                chunk_start = weights  # every body chunk starts at a boundary: anchor = its weights
                coef = {key: (val[j] if val is not None else None) for key, val in per_chunk.items()}
                chunk_terms = {key: val[j] for key, val in terms.items()}
                if last != chunk_size - 1:  # the stream ends inside this chunk
                    chunk_terms.update(end_terms(lrs[j], coef, last))
                y, weights, step = _segment(
                    weights, momentum, None, qs[j], ks[j], vs[j], lrs[j], coef, chunk_terms, last,
                    activation, error_fn, params[j], decayed_gradient, want_step=final,
                    inplace=no_grad and owned and not final, differentiable=not no_grad,
                )
                momentum, last_step = (step, None) if has_momentum else (momentum, step)
                owned = True
                outputs.append(y)
                if last == chunk_size - 1:
                    weights = retain(weights)
        offset = rest % chunk_size
        anchor = None
        if offset:  # the stream stops inside the last chunk: keep that chunk's start weights
            anchor = chunk_start
            if decayed_gradient:
                anchor = [coef["A"][:, offset - 1, None, None] * w for w in anchor]

    y = torch.cat(outputs, dim=1)[:, :T]
    final_momentum = tuple(momentum) if has_momentum else tuple(last_step)
    return y, MemoryOpState(tuple(weights), final_momentum, tuple(weights) if anchor is None else tuple(anchor), offset)
