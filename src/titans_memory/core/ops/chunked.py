"""The chunk-parallel memory operator: exact, matmuls only, no per-token weights.

Inside a chunk every gradient is taken at the anchor weights (the chunk-start weights), so
``u_j = H_j^T Delta_j`` is an outer product of the key path's layer input ``H_j`` and error signal
``Delta_j``, and momentum and forgetting are *linear* recurrences in the u_j. Unrolled from the
segment's start state ``(W_s, S_s)`` (Titans sec. 3.2, eqs. 16-18; docs/design.md)::

    S_t = E_t S_s - sum_{j<=t} theta_j P[t, j] u_j          E_t = prod_{i<=t} eta_i, P[t,j] = E_t / E_j
    M_t = A_t W_s + f_t S_s - sum_{j<=t} G[t, j] u_j        A_t = prod_{i<=t} (1 - alpha_i)
          f_t = sum_{s<=t} D[t, s] E_s,   G = (D @ P) diag(theta),   D[t, s] = A_t / A_s

* the segment-end weights are one matmul per layer: ``W_end = A_r W_s + f_r S_s - H^T (G[r]^T * Delta)``;
* the read ``y_t = M_t(q_t)`` is exact through the "dual form" (the architecture's
  :meth:`~titans_memory.core.architectures.DualFormMemory.read_write`): layer l's pre-activation
  for the query-path input ``h_t`` is ``A_t h_t W_s + f_t h_t S_s - sum_j G[t, j] (h_t . H_j) Delta_j``,
  a masked (c x c) matmul, as in linear attention / TTT.

Products of gates are taken in log space (cumulative sums of log-gates), so long chunks and tiny
gates neither underflow to 0/0 nor lose the momentum. Every step is differentiable, so autograd
trains the outer parameters through the whole update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_memory.core.architectures import (
    DualFormMemory,
    KeyPath,
    ReadCoefficients,
    WriteCoefficients,
)
from titans_memory.core.ops.common import MemoryInputs, MemoryOpState, check_op_inputs
from titans_memory.core.rule import UpdateRule

_CHUNK_BLOCK = 16  # chunks whose coefficients are computed together


class ChunkCoefficients(NamedTuple):
    """Scalar coefficients of the unrolled recurrence (module docstring) for a grid of segments.

    Shapes ``(..., c)`` or ``(..., c, c)``; the momentum terms are None without momentum.
    """

    decay: Tensor  # A_t = prod_{i<=t} (1 - alpha_i), (..., c)
    momentum_in: Tensor | None  # f_t: weight of the start momentum S_s in M_t, (..., c)
    momentum_decay: Tensor | None  # E_t = prod_{i<=t} eta_i, (..., c)
    mix: Tensor  # G[t, j]: weight of u_j in M_t, (..., c, c), lower triangular
    momentum_mix: Tensor | None  # P[t, j] = E_t / E_j, (..., c, c)

    def pick(self, i: int) -> ChunkCoefficients:
        """The coefficients of segment ``i`` of a ``(N, segments, ...)`` grid."""
        return ChunkCoefficients(*(None if c is None else c[:, i] for c in self))


def _segment_products(log_gate: Tensor) -> tuple[Tensor, Tensor]:
    """For log-gates ``(..., c)``: cumulative products ``(..., c)`` and the lower-triangular
    matrix of partial products ``R[t, s] = prod_{s < i <= t} gate_i`` (``(..., c, c)``, 0 above)."""
    c = log_gate.shape[-1]
    cum = log_gate.cumsum(-1)
    upper = torch.ones(c, c, dtype=torch.bool, device=log_gate.device).triu(1)
    ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill_(upper, float("-inf")).exp_()  # fresh: in place
    return cum.exp(), ratio


def chunk_coefficients(lr: Tensor, log_retention: Tensor | None, log_momentum: Tensor | None) -> ChunkCoefficients:
    """:class:`ChunkCoefficients` of segments with gates ``(..., c)`` (None: that gate is off)."""
    c = lr.shape[-1]
    if log_retention is None:
        retain = torch.ones_like(lr)
        decay = torch.ones(c, c, dtype=lr.dtype, device=lr.device).tril().expand(*lr.shape, c)
    else:
        retain, decay = _segment_products(log_retention)
    if log_momentum is None:  # eta = 0: S_t = -theta_t u_t, so P is the identity and f = 0
        return ChunkCoefficients(retain, None, None, decay * lr.unsqueeze(-2), None)
    carry, mom = _segment_products(log_momentum)
    f = (decay @ carry.unsqueeze(-1)).squeeze(-1)
    G = (decay @ mom) * lr.unsqueeze(-2)
    return ChunkCoefficients(retain, f, carry, G, mom)


def write_coefficients(lr: Tensor, coef: ChunkCoefficients, last: int) -> WriteCoefficients:
    """The coefficients of the state after token ``last``, shaped to broadcast."""
    has_momentum = coef.momentum_in is not None
    return WriteCoefficients(
        grad_weights=coef.mix[..., last, :].unsqueeze(-1),  # g_j = G[r, j]
        decay=coef.decay[..., last, None, None],  # A_r
        momentum_grad_weights=(coef.momentum_mix[..., last, :] * lr).unsqueeze(-1) if has_momentum else None,
        momentum_in=coef.momentum_in[..., last, None, None] if has_momentum else None,  # f_r
        momentum_decay=coef.momentum_decay[..., last, None, None] if has_momentum else None,  # E_r
    )


def read_coefficients(q: Tensor, k: Tensor, coef: ChunkCoefficients) -> ReadCoefficients:
    """Per-token read terms of a grid of segments: ``q, k`` ``(..., c, d)``.

    The first layer's input is q itself on the query path and k on the key path, so its dual-form
    terms ``A q``, ``f q`` and ``(q k^T) * G`` need no weights: computed here for a whole block of
    chunks at once (fewer, larger ops, and fewer autograd nodes).
    """
    has_momentum = coef.momentum_in is not None
    return ReadCoefficients(
        decay=coef.decay.unsqueeze(-1),
        momentum_in=coef.momentum_in.unsqueeze(-1) if has_momentum else None,
        mix=coef.mix,
        q_decay=coef.decay.unsqueeze(-1) * q,
        q_momentum=coef.momentum_in.unsqueeze(-1) * q if has_momentum else None,
        scores=(q @ k.transpose(-1, -2)) * coef.mix,
    )


def _token_gradient_norms(key_path: KeyPath) -> Tensor:
    """``||u_t||_F`` over all layers, ``(N, c)``: ``||H[t]^T Delta[t]||_F = ||H[t]|| ||Delta[t]||``."""
    per_layer = [h.norm(dim=-1) * d.norm(dim=-1) for h, d in zip(*key_path, strict=True)]
    return torch.stack(per_layer).norm(dim=0) if len(per_layer) > 1 else per_layer[0]


def _bound_steps(key_path: KeyPath, rule: UpdateRule) -> KeyPath:
    """The key path with every token's gradient scaled by ``min(1, tau / ||u_t||)``.

    Below the bound the scale is exactly 1 and its derivative 0, so on the CPU, where reading a
    flag costs no device synchronisation, a chunk whose tokens all stay below it is returned
    as it is (measured: the scaling otherwise costs ~5% of a forward + backward at four heads).
    """
    if key_path.deltas[0].device.type == "cpu":
        with torch.no_grad():  # sum_l (||H_l[t]|| ||Delta_l[t]||)^2 = ||u_t||^2, in place: ~4x cheaper
            squared = None
            for h, d in zip(*key_path, strict=True):
                term = torch.linalg.vector_norm(h, dim=-1).mul_(torch.linalg.vector_norm(d, dim=-1)).square_()
                squared = term if squared is None else squared.add_(term)
            if bool(squared.max() <= rule.max_step_norm**2):
                return key_path
    scale = rule.step_scale(_token_gradient_norms(key_path))
    return key_path._replace(deltas=tuple(d * scale.unsqueeze(-1) for d in key_path.deltas))


def _segment(
    rule: UpdateRule,
    weights: list[Tensor],
    momentum: list[Tensor] | None,
    anchor: Sequence[Tensor] | None,
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    coef: ChunkCoefficients,
    read: ReadCoefficients | None,
    write: WriteCoefficients,
    last: int,
    param: Tensor | None,
    *,
    want_step: bool = False,
    inplace: bool = False,
    differentiable: bool = True,
) -> tuple[Tensor | None, list[Tensor], list[Tensor] | None]:
    """One segment of c tokens of N memories.

    Args:
        weights: per layer, the start weights W_s, ``(N, d_in, d_out)``.
        momentum: per layer, the start momentum S_s, or None without momentum.
        anchor: weights where the gradients are taken; None means W_s (a chunk boundary).
        q: ``(N, c, d)`` or None (write only); k, v: ``(N, c, d)``; lr: ``(N, c)``.
        coef, read, write: the segment's coefficients (``read`` None when q is None).
        last: index of the token whose state is returned (c - 1 unless the stream ends earlier).
        param: ``(N, c)`` per-token parameter of the attentional bias, or None.
        want_step: without momentum, return S_last = -theta_last u_last (the state's S).
        inplace: overwrite ``weights`` and ``momentum`` with the new state (no autograd, and
            nobody else holds them): saves fresh weight-sized allocations, and their page faults.
        differentiable: whether autograd needs the segment (False: plain ops, no graph node).

    Returns:
        ``(y, new_weights, new_momentum)``: outputs ``(N, c, d)`` (None when q is None) and the
        state after token ``last`` (without momentum, ``new_momentum`` is S_last when asked for).
    """
    arch = rule.architecture
    if anchor is None:
        anchor = weights
    # Key path at the anchor: layer inputs H_l (N, c, d_in) and error signals Delta_l (N, c, d_out).
    key_path = arch.key_path(
        anchor, k, v, rule.bias,
        None if param is None else param.unsqueeze(-1),
        row_scale=coef.decay.unsqueeze(-1) if rule.decayed_gradient else None,
    )
    if rule.max_step_norm is not None:  # u_t <- u_t min(1, tau / ||u_t||): scaling every Delta_l[t] scales u_t
        key_path = _bound_steps(key_path, rule)
    if q is None:  # write only: the state after token `last`, no read
        y = None
        new_weights, new_momentum = arch.write(write, weights, momentum, key_path, inplace=inplace)
    else:
        # read (y_t = M_t(q_t), M_t never formed) and write: with gradients, one autograd node
        # with a hand-written backward
        y, new_weights, new_momentum = arch.read_write(
            q, read, write, weights, momentum, key_path, differentiable=differentiable, inplace=inplace
        )
    if momentum is None and want_step:  # S_r = -theta_r u_r: the only momentum a state without momentum holds
        theta = lr[:, last, None, None]
        new_momentum = [
            -theta * (a[:, last, :, None] * d[:, last, None, :]) for a, d in zip(*key_path, strict=True)
        ]
    return y, new_weights, new_momentum


def chunked_memory(
    inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule
) -> tuple[Tensor | None, MemoryOpState]:
    """Chunk-parallel twin of :func:`~titans_memory.core.ops.recurrent.recurrent_memory`.

    Same arguments, same ``(y, state)``, equal to rounding. Chunks are aligned to the stream's
    absolute position (``state.offset``), so feeding a sequence in pieces of any sizes gives the
    same result as one call. With ``inputs.q = None`` only the write is computed (no dual-form
    read, and none of its backward).
    """
    check_op_inputs(inputs, state, rule)
    if not isinstance(rule.architecture, DualFormMemory):
        raise TypeError(
            f"the chunked operator needs a DualFormMemory architecture; {type(rule.architecture).__name__} "
            "has no dual form (run it with the 'recurrent' backend)"
        )
    q, k, v, lr, log_retention, log_momentum, param, constants = inputs
    chunk_size = rule.chunk_size
    n, T, _ = k.shape
    if T == 0:
        return (None if q is None else q.new_zeros(q.shape)), state
    reads = q is not None
    has_momentum = log_momentum is not None
    weights = list(state.weights)
    momentum = list(state.momentum) if has_momentum else None
    # overwrite the state in place where autograd does not need it (inference), but never the
    # caller's tensors: only those this call made (from the second segment on)
    no_grad = not torch.is_grad_enabled() or not any(
        t.requires_grad
        for t in (q, k, v, lr, log_retention, log_momentum, param, *state.weights, *state.momentum)
        if t is not None
    )
    owned = False
    offset = state.offset
    anchor: list[Tensor] | None = list(state.anchor) if offset else None  # None: the weights
    last_step = None

    def retain(ws: list[Tensor]) -> list[Tensor]:
        """Chunk end: the non-linear retention of the weights (momentum untouched)."""
        return ws if rule.retention is None else list(rule.retention.apply(ws, constants))

    def reread_last(y: Tensor, ws: list[Tensor], q_c: Tensor) -> Tensor:
        """A chunk's last token reads the memory after the chunk-end retention, M_t(q_t) (the dual
        form read it before); without a retention nothing changes."""
        if rule.retention is None:
            return y
        return torch.cat([y[:, :-1], rule.architecture.forward(ws, q_c[:, -1:])], dim=1)

    def grid(g: Tensor | None, lo: int, hi: int, pad: int, segments: int, c: int) -> Tensor | None:
        if g is None:
            return None
        g = g[:, lo:hi]
        return (F.pad(g, (0, pad)) if pad else g).reshape(n, segments, c)

    outputs: list[Tensor] = []
    head = 0
    if offset:  # finish the chunk the stream stopped in: from (M_t, S_t), gradients at the anchor
        head = min(T, chunk_size - offset)
        lr_h, ret_h, mom_h, par_h = (grid(g, 0, head, 0, 1, head) for g in (lr, log_retention, log_momentum, param))
        coef = chunk_coefficients(lr_h, ret_h, mom_h).pick(0)
        q_h = q[:, :head] if reads else None
        read = read_coefficients(q_h, k[:, :head], coef) if reads else None
        y, weights, step = _segment(
            rule, weights, momentum, anchor, q_h, k[:, :head], v[:, :head], lr_h[:, 0], coef, read,
            write_coefficients(lr_h[:, 0], coef, head - 1), head - 1, None if par_h is None else par_h[:, 0],
            want_step=head == T, differentiable=not no_grad,
        )
        momentum, last_step = (step, None) if has_momentum else (momentum, step)
        owned = True
        offset = (offset + head) % chunk_size
        if offset == 0:
            weights, anchor = retain(weights), None
            if reads:
                y = reread_last(y, weights, q_h)
        elif rule.decayed_gradient:  # the anchor carries the decay since the chunk start
            anchor = [coef.decay[:, head - 1, None, None] * w for w in anchor]
        if reads:
            outputs.append(y)

    rest = T - head
    if rest:
        segments = -(-rest // chunk_size)
        pad = segments * chunk_size - rest
        lr_b, ret_b, mom_b, par_b = (
            grid(g, head, T, pad, segments, chunk_size) for g in (lr, log_retention, log_momentum, param)
        )
        q_b, k_b, v_b = (
            None if x is None else
            (F.pad(x[:, head:], (0, 0, 0, pad)) if pad else x[:, head:]).reshape(n, segments, chunk_size, -1)
            for x in (q, k, v)
        )
        # Coefficients and weight-free terms are computed for a block of chunks at once (fewer,
        # larger ops) but not for the whole sequence, so the temporaries stay cache-sized and the
        # cost linear in T. Inputs are split once, never sliced per chunk: a slice's backward
        # zero-fills the whole tensor, which made backprop quadratic in the number of chunks.
        starts = range(0, segments, _CHUNK_BLOCK)

        def blocks(g: Tensor | None) -> list[Tensor | None]:
            return list(g.split(_CHUNK_BLOCK, dim=1)) if g is not None else [None] * len(starts)

        def per_chunk(terms: tuple) -> list:
            """A NamedTuple of ``(N, chunks, ...)`` tensors as one NamedTuple per chunk."""
            cols = [t.unbind(1) if t is not None else None for t in terms]
            count = len(next(c for c in cols if c is not None))
            return [type(terms)(*(c[j] if c is not None else None for c in cols)) for j in range(count)]

        for q_k, k_k, v_k, lr_k, ret_k, mom_k, par_k, first in zip(
            *(blocks(g) for g in (q_b, k_b, v_b, lr_b, ret_b, mom_b, par_b)), starts, strict=True
        ):
            coef_k = chunk_coefficients(lr_k, ret_k, mom_k)
            coefs = per_chunk(coef_k)
            writes = per_chunk(write_coefficients(lr_k, coef_k, chunk_size - 1))
            reads_k = per_chunk(read_coefficients(q_k, k_k, coef_k)) if reads else [None] * len(coefs)
            qs = q_k.unbind(1) if reads else [None] * len(coefs)
            ks, vs, lrs = k_k.unbind(1), v_k.unbind(1), lr_k.unbind(1)
            params = par_k.unbind(1) if par_k is not None else [None] * len(coefs)
            for j in range(len(coefs)):
                i = first + j
                final = i == segments - 1
                last = (rest - 1) - i * chunk_size if final else chunk_size - 1
                chunk_start = weights  # every body chunk starts at a boundary: anchor = its weights
                coef = coefs[j]
                write = writes[j]
                if last != chunk_size - 1:  # the stream ends inside this chunk
                    write = write_coefficients(lrs[j], coef, last)
                y, weights, step = _segment(
                    rule, weights, momentum, None, qs[j], ks[j], vs[j], lrs[j], coef, reads_k[j], write,
                    last, params[j], want_step=final, inplace=no_grad and owned and not final,
                    differentiable=not no_grad,
                )
                momentum, last_step = (step, None) if has_momentum else (momentum, step)
                owned = True
                if last == chunk_size - 1:
                    weights = retain(weights)
                    if reads:
                        y = reread_last(y, weights, qs[j])
                if reads:
                    outputs.append(y)
        offset = rest % chunk_size
        anchor = None
        if offset:  # the stream stops inside the last chunk: keep that chunk's start weights
            anchor = chunk_start
            if rule.decayed_gradient:
                anchor = [coef.decay[:, offset - 1, None, None] * w for w in anchor]

    y = torch.cat(outputs, dim=1)[:, :T] if reads else None
    final_momentum = tuple(momentum) if has_momentum else tuple(last_step)
    return y, MemoryOpState(tuple(weights), final_momentum, tuple(weights) if anchor is None else tuple(anchor), offset)
