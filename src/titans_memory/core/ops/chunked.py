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

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._pytree import tree_map_only

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


def chunk_coefficients(
    lr: Tensor, log_retention: Tensor | None, log_momentum: Tensor | None, dtype: torch.dtype | None = None
) -> ChunkCoefficients:
    """:class:`ChunkCoefficients` of segments with gates ``(..., c)`` (None: that gate is off).

    The cumulative sums of the log-gates and their products are taken in at least float32, then
    the coefficients are cast to ``dtype`` (default: the gates' dtype): held in bfloat16, the
    cumulative sum of 64 log-momenta near log(0.9) reaches -6.7, where bfloat16's spacing is 0.03,
    and the ratios ``P[t, s] = exp(cum_t - cum_s)`` would be off by percents.
    """
    dtype = dtype or lr.dtype
    acc = torch.promote_types(dtype, torch.float32)
    if acc != lr.dtype or any(g is not None and g.dtype != acc for g in (log_retention, log_momentum)):
        lr, log_retention, log_momentum = (None if g is None else g.to(acc) for g in (lr, log_retention, log_momentum))
        return ChunkCoefficients(*(None if t is None else t.to(dtype) for t in _coefficients(lr, log_retention, log_momentum)))
    return _coefficients(lr, log_retention, log_momentum)


def _coefficients(lr: Tensor, log_retention: Tensor | None, log_momentum: Tensor | None) -> ChunkCoefficients:
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


def chunk_step(
    rule: UpdateRule,
    weights: list[Tensor],
    momentum: list[Tensor] | None,
    anchor: Sequence[Tensor] | None,
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    coef: ChunkCoefficients,
    read: ReadCoefficients | None,
    write: WriteCoefficients,
    param: Tensor | None,
    inplace: bool = False,
    differentiable: bool = True,
) -> tuple[Tensor | None, list[Tensor], list[Tensor] | None, KeyPath]:
    """The work of one chunk (or segment) of c tokens of N memories: the key path at the anchor
    with the step bound, the dual-form read of every token and the write. A plain function of
    tensors with a fixed shape per chunk size, so ``torch.compile(chunk_step, fullgraph=True)``
    captures it whole (the opt-in compiled path).

    Args:
        weights: per layer, the start weights W_s, ``(N, d_in, d_out)``.
        momentum: per layer, the start momentum S_s, or None without momentum.
        anchor: weights where the gradients are taken; None means W_s (a chunk boundary).
        q: ``(N, c, d)`` or None (write only); k, v: ``(N, c, d)``.
        coef, read, write: the segment's coefficients (``read`` None when q is None).
        param: ``(N, c)`` per-token parameter of the attentional bias, or None.
        inplace: overwrite ``weights`` and ``momentum`` with the new state (no autograd, and
            nobody else holds them): saves fresh weight-sized allocations, and their page faults.
        differentiable: whether autograd needs the segment (False: plain ops, no graph node).

    Returns:
        ``(y, new_weights, new_momentum, key_path)``: outputs ``(N, c, d)`` (None when q is None),
        the state after the token the write coefficients name, and the bounded key path.
    """
    arch = rule.architecture
    if anchor is None:
        anchor = weights
    # Key path at the anchor: layer inputs H_l (N, c, d_in) and error signals Delta_l (N, c, d_out).
    # (with the step bound: u_t <- u_t min(1, tau / ||u_t||), by scaling every Delta_l[t])
    key_path = arch.bounded_key_path(
        anchor, k, v, rule.bias,
        None if param is None else param.unsqueeze(-1),
        coef.decay.unsqueeze(-1) if rule.decayed_gradient else None,
        rule.max_step_norm,
        differentiable=differentiable,
    )
    if q is None:  # write only: the state after the write's token, no read
        y = None
        new_weights, new_momentum = arch.write(write, weights, momentum, key_path, inplace=inplace)
    else:
        # read (y_t = M_t(q_t), M_t never formed) and write: with gradients, one autograd node
        # with a hand-written backward
        y, new_weights, new_momentum = arch.read_write(
            q, read, write, weights, momentum, key_path, differentiable=differentiable, inplace=inplace
        )
    return y, new_weights, new_momentum, key_path


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
    step=chunk_step,
) -> tuple[Tensor | None, list[Tensor], list[Tensor] | None]:
    """:func:`chunk_step` (or its compiled twin ``step``), and without momentum, if ``want_step``,
    the state's ``S_last = -theta_last u_last`` (``last``: the token the write coefficients name;
    ``lr``: ``(N, c)``).

    Returns:
        ``(y, new_weights, new_momentum)``.
    """
    y, new_weights, new_momentum, key_path = step(
        rule, weights, momentum, anchor, q, k, v, coef, read, write, param, inplace, differentiable
    )
    if momentum is None and want_step:  # S_r = -theta_r u_r: the only momentum a state without momentum holds
        theta = lr[:, last, None, None]
        new_momentum = [
            -theta * (a[:, last, :, None] * d[:, last, None, :]) for a, d in zip(*key_path, strict=True)
        ]
    return y, new_weights, new_momentum


def _retain(rule: UpdateRule, weights: list[Tensor], constants) -> list[Tensor]:
    """Chunk end: the non-linear retention of the weights (momentum untouched)."""
    return weights if rule.retention is None else list(rule.retention.apply(weights, constants))


def _reread_last(rule: UpdateRule, y: Tensor, weights: list[Tensor], q: Tensor) -> Tensor:
    """A chunk's last token reads the memory after the chunk-end retention, ``M_t(q_t)`` (the dual
    form read it before); without a retention nothing changes."""
    if rule.retention is None:
        return y
    return torch.cat([y[:, :-1], rule.architecture.forward(weights, q[:, -1:])], dim=1)


def _per_chunk(terms: tuple) -> list:
    """A NamedTuple of ``(N, chunks, ...)`` tensors as one NamedTuple per chunk."""
    cols = [t.unbind(1) if t is not None else None for t in terms]
    count = len(next(c for c in cols if c is not None))
    return [type(terms)(*(c[j] if c is not None else None for c in cols)) for j in range(count)]


class _Run(NamedTuple):
    """What every block of one call shares."""

    rule: UpdateRule
    constants: tuple[Tensor, ...] | None
    segments: int  # chunks after the head segment
    rest: int  # tokens after the head segment
    reads: bool
    no_grad: bool  # no autograd: plain ops, and in-place state updates where safe
    work: torch.dtype  # the dtype of the chunk step (q, k, v, state, coefficients)
    step: Callable  # chunk_step or its compiled twin


def _block(
    run: _Run,
    first: int,
    owned: bool,
    weights: list[Tensor],
    momentum: list[Tensor] | None,
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    log_retention: Tensor | None,
    log_momentum: Tensor | None,
    param: Tensor | None,
):
    """Whole chunks ``first, first + 1, ...`` of the body: ``q, k, v`` ``(N, chunks, c, d)``, the
    gates ``(N, chunks, c)``; the state at the first chunk's start.

    Returns:
        ``(outputs, weights, momentum, last_step, chunk_start, decay)``: the reads per chunk, the
        state after the block (``last_step``: S_r of a rule without momentum, final chunk only),
        the weights the last chunk started from and that chunk's cumulative decay ``(N, c)``.
    """
    rule, c = run.rule, run.rule.chunk_size
    coef_k = chunk_coefficients(lr, log_retention, log_momentum, run.work)
    lr = lr.to(run.work)
    coefs = _per_chunk(coef_k)
    count = len(coefs)
    writes = _per_chunk(write_coefficients(lr, coef_k, c - 1))
    reads = _per_chunk(read_coefficients(q, k, coef_k)) if run.reads else [None] * count
    qs = q.unbind(1) if run.reads else [None] * count
    ks, vs, lrs = k.unbind(1), v.unbind(1), lr.unbind(1)
    params = param.unbind(1) if param is not None else [None] * count
    outputs, last_step, chunk_start = [], None, weights
    for j in range(count):
        i = first + j
        final = i == run.segments - 1
        last = (run.rest - 1) - i * c if final else c - 1
        chunk_start = weights  # every body chunk starts at a boundary: anchor = its weights
        write = writes[j] if last == c - 1 else write_coefficients(lrs[j], coefs[j], last)  # ends inside
        y, weights, step = _segment(
            rule, weights, momentum, None, qs[j], ks[j], vs[j], lrs[j], coefs[j], reads[j], write, last,
            params[j], want_step=final, inplace=run.no_grad and owned and not final and run.step is chunk_step,
            differentiable=not run.no_grad, step=run.step,
        )
        momentum, last_step = (step, None) if momentum is not None else (momentum, step)
        owned = True
        if last == c - 1:
            weights = _retain(rule, weights, run.constants)
            if run.reads:
                y = _reread_last(rule, y, weights, qs[j])
        outputs.append(y)
    return outputs, weights, momentum, last_step, chunk_start, coefs[-1].decay


@torch.compiler.disable  # the loop over chunks stays in Python: one compiled step for any length
def chunked_memory(
    inputs: MemoryInputs,
    state: MemoryOpState,
    rule: UpdateRule,
    *,
    checkpoint: bool = False,
    compile_step: bool | str = False,
) -> tuple[Tensor | None, MemoryOpState]:
    """Chunk-parallel twin of :func:`~titans_memory.core.ops.recurrent.recurrent_memory`.

    Same arguments, same ``(y, state)``, equal to rounding. Chunks are aligned to the stream's
    absolute position (``state.offset``), so feeding a sequence in pieces of any sizes gives the
    same result as one call. With ``inputs.q = None`` only the write is computed (no dual-form
    read, and none of its backward).

    Args:
        checkpoint: with autograd, keep only each block of chunks' start state and inputs, and
            recompute the block's intermediates in the backward (chunk-level activation
            checkpointing: the memory of the per-chunk intermediates for one forward more).
        compile_step: run every whole chunk through ``torch.compile(chunk_step, fullgraph=True)``
            (True: inductor; a string: that ``torch.compile`` backend), compiled once per shape,
            dtype and autograd pattern, and cached on disk by inductor (see
            :func:`compiled_chunk_step`). The loop over chunks stays in Python, so no length ever
            recompiles. Needs a working ``torch.compile`` (a C++ compiler on the CPU).

    Under ``torch.compile`` of a caller the operator is not traced (a graph break): its chunk
    loop runs as Python (the same for any length), calling the compiled step when
    ``compile_step`` is set.

    Precision: q, k, v, the state and the per-chunk work run in the inputs' dtype, or under
    ``torch.autocast`` in the autocast dtype (the state handed back keeps its own dtype); gate
    products and their cumulative sums are accumulated in at least float32.
    """
    check_op_inputs(inputs, state, rule)
    if not isinstance(rule.architecture, DualFormMemory):
        raise TypeError(
            f"the chunked operator needs a DualFormMemory architecture; {type(rule.architecture).__name__} "
            "has no dual form (run it with the 'recurrent' backend)"
        )
    device = inputs.k.device.type
    work = _autocast_dtype(device)
    if work is not None:
        # run in the autocast dtype throughout (in-place matmuls do not autocast), then hand the
        # state back in its own dtype
        with torch.autocast(device, enabled=False):
            y, out = _chunked(_cast_inputs(inputs, work), _cast_state(state, work), rule, checkpoint, compile_step)
        return y, _cast_state(out, state.weights[0].dtype)
    return _chunked(inputs, state, rule, checkpoint, compile_step)


def _autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype of an active ``torch.autocast`` on ``device``, else None."""
    if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def _cast_inputs(inputs: MemoryInputs, dtype: torch.dtype) -> MemoryInputs:
    """q, k, v and the bias' parameter in ``dtype``; the gates as they are (the coefficients are
    accumulated in float32 at least)."""
    q, k, v, *gates, param, constants = inputs
    cast = [None if t is None else t.to(dtype) for t in (q, k, v)]
    return MemoryInputs(*cast, *gates, None if param is None else param.to(dtype),
                        None if constants is None else tuple(c.to(dtype) for c in constants))


def _cast_state(state: MemoryOpState, dtype: torch.dtype) -> MemoryOpState:
    return MemoryOpState(*(tuple(t.to(dtype) for t in group) for group in state[:3]), state.offset)


def _chunked(
    inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule, checkpoint: bool, compile_step: bool | str
) -> tuple[Tensor | None, MemoryOpState]:
    q, k, v, lr, log_retention, log_momentum, param, constants = inputs
    chunk_size = rule.chunk_size
    n, T, _ = k.shape
    if T == 0:
        return (None if q is None else q.new_zeros(q.shape)), state
    work = k.dtype
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
        coef = chunk_coefficients(lr_h, ret_h, mom_h, work).pick(0)
        lr_h = lr_h[:, 0].to(work)
        q_h = q[:, :head] if reads else None
        read = read_coefficients(q_h, k[:, :head], coef) if reads else None
        y, weights, step = _segment(
            rule, weights, momentum, anchor, q_h, k[:, :head], v[:, :head], lr_h, coef, read,
            write_coefficients(lr_h, coef, head - 1), head - 1, None if par_h is None else par_h[:, 0],
            want_step=head == T, differentiable=not no_grad,
        )
        momentum, last_step = (step, None) if has_momentum else (momentum, step)
        owned = True
        offset = (offset + head) % chunk_size
        if offset == 0:
            weights, anchor = _retain(rule, weights, constants), None
            if reads:
                y = _reread_last(rule, y, weights, q_h)
        elif rule.decayed_gradient:  # the anchor carries the decay since the chunk start
            anchor = [coef.decay[:, head - 1, None, None] * w for w in anchor]
        if reads:
            outputs.append(y)

    rest = T - head
    if rest:
        segments = -(-rest // chunk_size)
        pad = segments * chunk_size - rest
        gates = [grid(g, head, T, pad, segments, chunk_size) for g in (lr, log_retention, log_momentum, param)]
        q_b, k_b, v_b = (
            None if x is None else
            (F.pad(x[:, head:], (0, 0, 0, pad)) if pad else x[:, head:]).reshape(n, segments, chunk_size, -1)
            for x in (q, k, v)
        )
        # Coefficients and weight-free terms are computed for a block of chunks at once (fewer,
        # larger ops) but not for the whole sequence, so the temporaries stay cache-sized and the
        # cost linear in T. Inputs are split once, never sliced per chunk: a slice's backward
        # zero-fills the whole tensor, which made backprop quadratic in the number of chunks.
        step = chunk_step
        if compile_step is not False:
            step = compiled_chunk_step("inductor" if compile_step is True else compile_step)
        run = _Run(rule, constants, segments, rest, reads, no_grad, work, step)
        starts = range(0, segments, _CHUNK_BLOCK)

        def blocks(g: Tensor | None) -> list[Tensor | None]:
            return list(g.split(_CHUNK_BLOCK, dim=1)) if g is not None else [None] * len(starts)

        recompute = checkpoint and not no_grad
        for first, *block in zip(starts, *(blocks(g) for g in (q_b, k_b, v_b, *gates)), strict=True):
            if recompute:  # keep the block's inputs only; its forward runs again in the backward
                out = torch.utils.checkpoint.checkpoint(
                    _block, run, first, owned, weights, momentum, *block, use_reentrant=False,
                    preserve_rng_state=False,
                )
            else:
                out = _block(run, first, owned, weights, momentum, *block)
            ys, weights, momentum, step, chunk_start, decay = out
            if not has_momentum:
                last_step = step
            owned = True
            if reads:
                outputs.extend(ys)
        offset = rest % chunk_size
        anchor = None
        if offset:  # the stream stops inside the last chunk: keep that chunk's start weights
            anchor = chunk_start
            if rule.decayed_gradient:
                anchor = [decay[:, offset - 1, None, None] * w for w in anchor]

    y = torch.cat(outputs, dim=1)[:, :T] if reads else None
    final_momentum = tuple(momentum) if has_momentum else tuple(last_step)
    return y, MemoryOpState(tuple(weights), final_momentum, tuple(weights) if anchor is None else tuple(anchor), offset)


# --- the opt-in compiled step ---------------------------------------------------------------------
_log = logging.getLogger("titans_memory")
_COMPILED: dict[str, Callable] = {}


def compiled_chunk_step(backend: str = "inductor") -> Callable:
    """``torch.compile(chunk_step, fullgraph=True, backend=backend)``, made once per process.

    Dynamo traces it once per shape, dtype and autograd pattern (a few per model: grad or not,
    the first chunk's zero momentum); inductor keeps the generated code in its on-disk cache
    (``TORCHINDUCTOR_CACHE_DIR``, by default a ``torchinductor_<user>`` folder in the temporary
    directory), so a later process pays the tracing (about a second per graph), not the C++
    compilation. The first call of each variant, which compiles, is logged (logger
    ``titans_memory``, level INFO) with its duration.
    """
    if backend not in _COMPILED:
        compiled = torch.compile(chunk_step, fullgraph=True, backend=backend)
        seen: set = set()

        def step(rule, *args):
            # contiguous copies: the per-chunk slices' strides depend on how many chunks a block
            # holds, and every new stride pattern would be one more graph
            args = tree_map_only(Tensor, Tensor.contiguous, args)
            weights, q, k = args[0], args[3], args[4]
            key = (id(rule), tuple(k.shape), k.dtype, k.device.type, torch.is_grad_enabled(), args[-1],
                   tuple(w.requires_grad for w in weights), q is None)
            if key in seen:
                return compiled(rule, *args)
            start = time.perf_counter()
            out = compiled(rule, *args)
            seen.add(key)
            _log.info("compiled the chunk step for %s in %.1f s", key[1:], time.perf_counter() - start)
            return out

        _COMPILED[backend] = step
    return _COMPILED[backend]
