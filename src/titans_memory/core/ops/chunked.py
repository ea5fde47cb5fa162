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
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._pytree import tree_map_only

from titans_memory.core.algorithms import (
    ChunkCoefficients,
    ChunkEnd,
    chunk_coefficients,
    segment_products,
)
from titans_memory.core.architectures import (
    DualFormMemory,
    KeyPath,
    ReadCoefficients,
    WriteCoefficients,
)
from titans_memory.core.ops.common import MemoryInputs, MemoryOpState, check_op_inputs
from titans_memory.core.rule import UpdateRule

_CHUNK_BLOCK = 16  # chunks whose coefficients are computed together
_segment_products = segment_products  # the coefficients moved to core/algorithms/coefficients.py

__all__ = [
    "ChunkCoefficients",
    "ChunkStep",
    "ChunkStepInputs",
    "ChunkStepOutput",
    "chunk_coefficients",
    "chunk_step",
    "chunked_memory",
    "compiled_chunk_step",
    "read_coefficients",
    "write_coefficients",
]


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


class ChunkStepInputs(NamedTuple):
    """Everything one chunk (or segment) of c tokens of N memories needs: the kernel seam's input.

    Attributes:
        weights: per layer, the start weights W_s, ``(N, d_in, d_out)``.
        momentum: per layer, the start momentum S_s, or None for an algorithm without momentum.
        anchor: weights where the gradients are taken; None means W_s (a chunk boundary).
        q: ``(N, c, d)`` or None (write only); k, v: ``(N, c, d)``.
        coef: the segment's :class:`ChunkCoefficients` (``(N, c)`` and ``(N, c, c)``).
        read: the dual-form read terms (None when q is None); write: the write coefficients of
            the token whose state is wanted.
        param: ``(N, c)`` per-token parameter of the attentional bias, or None.
        inplace: overwrite ``weights`` and ``momentum`` with the new state (no autograd, and
            nobody else holds them): saves fresh weight-sized allocations, and their page faults.
        differentiable: whether autograd needs the segment (False: plain ops, no graph node).
    """

    weights: list[Tensor]
    momentum: list[Tensor] | None
    anchor: Sequence[Tensor] | None
    q: Tensor | None
    k: Tensor
    v: Tensor
    coef: ChunkCoefficients
    read: ReadCoefficients | None
    write: WriteCoefficients
    param: Tensor | None
    inplace: bool = False
    differentiable: bool = True


class ChunkStepOutput(NamedTuple):
    """What one chunk step returns: the kernel seam's output.

    Attributes:
        y: ``(N, c, d)`` every token's read ``M_t(q_t)`` (None when q is None).
        weights, momentum: the state after the token the write coefficients name (momentum None
            without momentum).
        key_path: the bounded key path (layer inputs ``H_l`` and error signals ``Delta_l``).
    """

    y: Tensor | None
    weights: list[Tensor]
    momentum: list[Tensor] | None
    key_path: KeyPath


#: The kernel seam: ``step(rule, inputs) -> output``. :func:`chunk_step` is the reference one; a
#: device kernel with the same contract is passed as ``chunked_memory(..., step=kernel)``.
ChunkStep = Callable[[UpdateRule, ChunkStepInputs], ChunkStepOutput]


def chunk_step(rule: UpdateRule, inputs: ChunkStepInputs) -> ChunkStepOutput:
    """The work of one chunk (or segment) of c tokens of N memories: the key path at the anchor
    with the step bound, the dual-form read of every token and the write.

    A plain function of tensors with a fixed shape per chunk size, so
    ``torch.compile(chunk_step, fullgraph=True)`` captures it whole (the opt-in compiled path).
    The loop over chunks, the coefficients, the chunk-end retention and the algorithm's hook stay
    in :func:`chunked_memory`; a replacement (a fused kernel) only has to compute this.

    Args:
        rule: the update rule (architecture, bias, step bound, algorithm's ``decayed_gradient``).
        inputs: the chunk's :class:`ChunkStepInputs`.

    Returns:
        :class:`ChunkStepOutput`: the reads, the state after the token the write coefficients
        name, and the bounded key path.
    """
    arch = rule.architecture
    weights, momentum, anchor, q, k, v, coef, read, write, param, inplace, differentiable = inputs
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
    return ChunkStepOutput(y, new_weights, new_momentum, key_path)


def _segment(
    step: ChunkStep, rule: UpdateRule, inputs: ChunkStepInputs, lr: Tensor, last: int, want_step: bool
) -> tuple[Tensor | None, list[Tensor], list[Tensor] | None]:
    """``step(rule, inputs)``, and without momentum, if ``want_step``, the state's
    ``S_last = -theta_last u_last`` (``last``: the token the write coefficients name;
    ``lr``: ``(N, c)``).

    Returns:
        ``(y, new_weights, new_momentum)``.
    """
    y, new_weights, new_momentum, key_path = step(rule, inputs)
    if inputs.momentum is None and want_step:  # S_r = -theta_r u_r: the only momentum a state without momentum holds
        theta = lr[:, last, None, None]
        new_momentum = [
            -theta * (a[:, last, :, None] * d[:, last, None, :]) for a, d in zip(*key_path, strict=True)
        ]
    return y, new_weights, new_momentum


def _chunk_end(
    rule: UpdateRule, weights: list[Tensor], momentum: list[Tensor] | None, carried: dict[str, Tensor], constants
) -> tuple[list[Tensor], list[Tensor] | None, dict[str, Tensor], bool]:
    """Chunk end: the non-linear retention of the weights, then the algorithm's hook.

    Returns:
        ``(weights, momentum, carried, changed)``; ``changed``: the weights are not those the
        chunk's dual-form read saw (so its last token must read again).
    """
    changed = False
    if rule.retention is not None:
        weights, changed = list(rule.retention.apply(weights, constants)), True
    algorithm = rule.algorithm
    if algorithm.has_chunk_end:
        end = algorithm.chunk_end(ChunkEnd(weights, momentum, carried))
        changed = changed or any(a is not b for a, b in zip(end.weights, weights, strict=True))
        weights, carried = list(end.weights), end.carried
        momentum = None if momentum is None else list(end.momentum)
    return weights, momentum, carried, changed


def _reread_last(rule: UpdateRule, y: Tensor, weights: list[Tensor], q: Tensor) -> Tensor:
    """A chunk's last token reads the memory after the chunk-end retention and hook,
    ``M_t(q_t)`` (the dual form read it before)."""
    return torch.cat([y[:, :-1], rule.architecture.forward(weights, q[:, -1:])], dim=1)


def _per_chunk(terms: tuple) -> list:
    """A NamedTuple of ``(N, chunks, ...)`` tensors as one NamedTuple per chunk."""
    cols = [t.unbind(1) if t is not None else None for t in terms]
    count = len(next(c for c in cols if c is not None))
    return [type(terms)(*(c[j] if c is not None else None for c in cols)) for j in range(count)]


def _coefficients(run: _Run, gates: Mapping[str, Tensor | None]) -> ChunkCoefficients:
    """The algorithm's coefficients for gates ``(..., c)`` by name (``lr``, ``log_retention``,
    ``log_momentum``, then the algorithm's own)."""
    extra = {name: g for name, g in gates.items() if name not in _GATES}
    return run.rule.algorithm.chunk_coefficients(
        gates["lr"], gates["log_retention"], gates["log_momentum"], extra, run.work
    )


_GATES = ("lr", "log_retention", "log_momentum", "param")  # the per-token inputs every rule has a slot for


class _Run(NamedTuple):
    """What every block of one call shares."""

    rule: UpdateRule
    constants: tuple[Tensor, ...] | None
    segments: int  # chunks after the head segment
    rest: int  # tokens after the head segment
    reads: bool
    no_grad: bool  # no autograd: plain ops, and in-place state updates where safe
    work: torch.dtype  # the dtype of the chunk step (q, k, v, state, coefficients)
    step: ChunkStep  # chunk_step, its compiled twin, or a kernel
    plain: bool  # step is the eager chunk_step (in-place updates allowed)


def _block(
    run: _Run,
    first: int,
    owned: bool,
    weights: list[Tensor],
    momentum: list[Tensor] | None,
    carried: dict[str, Tensor],
    q: Tensor | None,
    k: Tensor,
    v: Tensor,
    gates: dict[str, Tensor | None],
):
    """Whole chunks ``first, first + 1, ...`` of the body: ``q, k, v`` ``(N, chunks, c, d)``, the
    gates ``(N, chunks, c)`` by name; the state at the first chunk's start.

    Returns:
        ``(outputs, weights, momentum, carried, last_step, chunk_start, decay)``: the reads per
        chunk, the state after the block (``last_step``: S_r of a rule without momentum, final
        chunk only), the weights the last chunk started from and that chunk's cumulative decay
        ``(N, c)``.
    """
    rule, c = run.rule, run.rule.chunk_size
    coef_k = _coefficients(run, gates)
    lr = gates["lr"].to(run.work)
    param = gates["param"]
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
        inputs = ChunkStepInputs(
            weights, momentum, None, qs[j], ks[j], vs[j], coefs[j], reads[j], write, params[j],
            inplace=run.no_grad and owned and not final and run.plain, differentiable=not run.no_grad,
        )
        y, weights, step = _segment(run.step, rule, inputs, lrs[j], last, want_step=final)
        momentum, last_step = (step, None) if momentum is not None else (momentum, step)
        owned = True
        if last == c - 1:
            weights, momentum, carried, changed = _chunk_end(rule, weights, momentum, carried, run.constants)
            if run.reads and changed:
                y = _reread_last(rule, y, weights, qs[j])
        outputs.append(y)
    return outputs, weights, momentum, carried, last_step, chunk_start, coefs[-1].decay


@torch.compiler.disable  # the loop over chunks stays in Python: one compiled step for any length
def chunked_memory(
    inputs: MemoryInputs,
    state: MemoryOpState,
    rule: UpdateRule,
    *,
    checkpoint: bool = False,
    compile_step: bool | str = False,
    step: ChunkStep | None = None,
) -> tuple[Tensor | None, MemoryOpState]:
    """Chunk-parallel twin of :func:`~titans_memory.core.ops.recurrent.recurrent_memory`.

    Same arguments, same ``(y, state)``, equal to rounding. Chunks are aligned to the stream's
    absolute position (``state.offset``), so feeding a sequence in pieces of any sizes gives the
    same result as one call. With ``inputs.q = None`` only the write is computed (no dual-form
    read, and none of its backward). It runs a learning algorithm through its chunk coefficients
    (:meth:`~titans_memory.core.algorithms.LearningAlgorithm.chunk_coefficients`) and its
    chunk-end hook; an algorithm without a chunk-parallel form is refused (``TypeError``).

    Args:
        checkpoint: with autograd, keep only each block of chunks' start state and inputs, and
            recompute the block's intermediates in the backward (chunk-level activation
            checkpointing: the memory of the per-chunk intermediates for one forward more).
        compile_step: run every whole chunk through ``torch.compile(step, fullgraph=True)``
            (True: inductor; a string: that ``torch.compile`` backend), compiled once per shape,
            dtype and autograd pattern, and cached on disk by inductor (see
            :func:`compiled_chunk_step`). The loop over chunks stays in Python, so no length ever
            recompiles. Needs a working ``torch.compile`` (a C++ compiler on the CPU).
        step: the per-chunk step, the kernel seam (:data:`ChunkStep`; default :func:`chunk_step`).

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
    if not rule.algorithm.has_chunked_form:
        raise TypeError(
            f"the chunked operator cannot run the learning algorithm {rule.algorithm.name!r} "
            f"({type(rule.algorithm).__name__}): it has no chunk-parallel form (chunk_coefficients); "
            "run it with the 'recurrent' backend"
        )
    if step is None:
        step = chunk_step
    elif not callable(step):
        raise TypeError(f"chunked_memory: step must be a callable (rule, ChunkStepInputs) -> ChunkStepOutput, got {step!r}")
    device = inputs.k.device.type
    work = _autocast_dtype(device)
    if work is not None:
        # run in the autocast dtype throughout (in-place matmuls do not autocast), then hand the
        # state back in its own dtype
        with torch.autocast(device, enabled=False):
            y, out = _chunked(_cast_inputs(inputs, work), _cast_state(state, work), rule, checkpoint, compile_step, step)
        return y, _cast_state(out, state.weights[0].dtype)
    return _chunked(inputs, state, rule, checkpoint, compile_step, step)


def _autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype of an active ``torch.autocast`` on ``device``, else None."""
    if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def _cast_inputs(inputs: MemoryInputs, dtype: torch.dtype) -> MemoryInputs:
    """q, k, v and the bias' parameter in ``dtype``; the gates as they are (the coefficients are
    accumulated in float32 at least)."""
    q, k, v, *gates, param, constants, extra = inputs
    cast = [None if t is None else t.to(dtype) for t in (q, k, v)]
    return MemoryInputs(*cast, *gates, None if param is None else param.to(dtype),
                        None if constants is None else tuple(c.to(dtype) for c in constants), extra)


def _cast_state(state: MemoryOpState, dtype: torch.dtype) -> MemoryOpState:
    return MemoryOpState(
        *(tuple(t.to(dtype) for t in group) for group in state[:3]), state.offset,
        {name: t.to(dtype) for name, t in state.carried.items()},
    )


def _chunked(
    inputs: MemoryInputs,
    state: MemoryOpState,
    rule: UpdateRule,
    checkpoint: bool,
    compile_step: bool | str,
    step_fn: ChunkStep,
) -> tuple[Tensor | None, MemoryOpState]:
    q, k, v, lr, log_retention, log_momentum, param, constants, extra = inputs
    per_token = {"lr": lr, "log_retention": log_retention, "log_momentum": log_momentum, "param": param, **(extra or {})}
    chunk_size = rule.chunk_size
    n, T, _ = k.shape
    if T == 0:
        return (None if q is None else q.new_zeros(q.shape)), state
    work = k.dtype
    reads = q is not None
    has_momentum = log_momentum is not None
    weights = list(state.weights)
    momentum = list(state.momentum) if has_momentum else None
    carried = dict(state.carried)
    # overwrite the state in place where autograd does not need it (inference), but never the
    # caller's tensors: only those this call made (from the second segment on)
    no_grad = not torch.is_grad_enabled() or not any(
        t.requires_grad
        for t in (q, k, v, *per_token.values(), *state.weights, *state.momentum, *carried.values())
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
        gates_h = {name: grid(g, 0, head, 0, 1, head) for name, g in per_token.items()}
        run_h = _Run(rule, constants, 1, head, reads, no_grad, work, chunk_step, True)
        coef = _coefficients(run_h, gates_h).pick(0)
        lr_h = gates_h["lr"][:, 0].to(work)
        par_h = gates_h["param"]
        q_h = q[:, :head] if reads else None
        read = read_coefficients(q_h, k[:, :head], coef) if reads else None
        head_in = ChunkStepInputs(
            weights, momentum, anchor, q_h, k[:, :head], v[:, :head], coef, read,
            write_coefficients(lr_h, coef, head - 1), None if par_h is None else par_h[:, 0],
            differentiable=not no_grad,
        )
        y, weights, step = _segment(step_fn, rule, head_in, lr_h, head - 1, want_step=head == T)
        momentum, last_step = (step, None) if has_momentum else (momentum, step)
        owned = True
        offset = (offset + head) % chunk_size
        if offset == 0:
            weights, momentum, carried, changed = _chunk_end(rule, weights, momentum, carried, constants)
            anchor = None
            if reads and changed:
                y = _reread_last(rule, y, weights, q_h)
        elif rule.decayed_gradient:  # the anchor carries the decay since the chunk start
            anchor = [coef.decay[:, head - 1, None, None] * w for w in anchor]
        if reads:
            outputs.append(y)

    rest = T - head
    if rest:
        segments = -(-rest // chunk_size)
        pad = segments * chunk_size - rest
        gates = {name: grid(g, head, T, pad, segments, chunk_size) for name, g in per_token.items()}
        q_b, k_b, v_b = (
            None if x is None else
            (F.pad(x[:, head:], (0, 0, 0, pad)) if pad else x[:, head:]).reshape(n, segments, chunk_size, -1)
            for x in (q, k, v)
        )
        # Coefficients and weight-free terms are computed for a block of chunks at once (fewer,
        # larger ops) but not for the whole sequence, so the temporaries stay cache-sized and the
        # cost linear in T. Inputs are split once, never sliced per chunk: a slice's backward
        # zero-fills the whole tensor, which made backprop quadratic in the number of chunks.
        step = step_fn
        if compile_step is not False:
            step = compiled_chunk_step("inductor" if compile_step is True else compile_step, step_fn)
        run = _Run(rule, constants, segments, rest, reads, no_grad, work, step, step is chunk_step)
        starts = range(0, segments, _CHUNK_BLOCK)

        def blocks(g: Tensor | None) -> list[Tensor | None]:
            return list(g.split(_CHUNK_BLOCK, dim=1)) if g is not None else [None] * len(starts)

        names = list(gates)
        recompute = checkpoint and not no_grad
        for first, q_k, k_k, v_k, *gate_k in zip(
            starts, *(blocks(g) for g in (q_b, k_b, v_b, *gates.values())), strict=True
        ):
            block_gates = dict(zip(names, gate_k, strict=True))
            if recompute:  # keep the block's inputs only; its forward runs again in the backward
                out = torch.utils.checkpoint.checkpoint(
                    _block, run, first, owned, weights, momentum, carried, q_k, k_k, v_k, block_gates,
                    use_reentrant=False, preserve_rng_state=False,
                )
            else:
                out = _block(run, first, owned, weights, momentum, carried, q_k, k_k, v_k, block_gates)
            ys, weights, momentum, carried, step_out, chunk_start, decay = out
            if not has_momentum:
                last_step = step_out
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
    return y, MemoryOpState(
        tuple(weights), final_momentum, tuple(weights) if anchor is None else tuple(anchor), offset, carried
    )


# --- the opt-in compiled step ---------------------------------------------------------------------
_log = logging.getLogger("titans_memory")
_COMPILED: dict[tuple[str, ChunkStep], ChunkStep] = {}


def compiled_chunk_step(backend: str = "inductor", step: ChunkStep = chunk_step) -> ChunkStep:
    """``torch.compile(step, fullgraph=True, backend=backend)``, made once per process and step.

    Dynamo traces it once per shape, dtype and autograd pattern (a few per model: grad or not,
    the first chunk's zero momentum); inductor keeps the generated code in its on-disk cache
    (``TORCHINDUCTOR_CACHE_DIR``, by default a ``torchinductor_<user>`` folder in the temporary
    directory), so a later process pays the tracing (about a second per graph), not the C++
    compilation. The first call of each variant, which compiles, is logged (logger
    ``titans_memory``, level INFO) with its duration.
    """
    if (backend, step) not in _COMPILED:
        compiled = torch.compile(step, fullgraph=True, backend=backend)
        seen: set = set()

        def compiled_step(rule: UpdateRule, inputs: ChunkStepInputs) -> ChunkStepOutput:
            # contiguous copies: the per-chunk slices' strides depend on how many chunks a block
            # holds, and every new stride pattern would be one more graph
            inputs = tree_map_only(Tensor, Tensor.contiguous, inputs)
            k = inputs.k
            key = (id(rule), tuple(k.shape), k.dtype, k.device.type, torch.is_grad_enabled(), inputs.differentiable,
                   tuple(w.requires_grad for w in inputs.weights), inputs.q is None)
            if key in seen:
                return compiled(rule, inputs)
            start = time.perf_counter()
            out = compiled(rule, inputs)
            seen.add(key)
            _log.info("compiled the chunk step for %s in %.1f s", key[1:], time.perf_counter() - start)
            return out

        _COMPILED[(backend, step)] = compiled_step
    return _COMPILED[(backend, step)]
