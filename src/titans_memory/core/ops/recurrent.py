"""The reference memory operator: token by token, written to be read (the spec).

For each token t of each of N independent memories (Titans eqs. 9-15; docs/design.md), with
Titans' learning algorithm (``core/algorithms/titans.py``)::

    u_t = grad_W l(W_anchor; k_t, v_t)        gradient at the chunk-start weights ("anchor")
    u_t = u_t min(1, tau / ||u_t||)            the per-token bound on the step, if the rule has one
    S_t = eta_t * S_{t-1} - theta_t * u_t      surprise with momentum            (Titans eq. 10)
    M_t = (1 - alpha_t) * M_{t-1} + S_t        forgetting, then the write        (Titans eq. 13)
    M_t = retention(M_t)                       at chunk ends, a non-linear retention (MIRAS), if any
    (M_t, S_t) = algorithm.chunk_end(...)      at chunk ends, the algorithm's hook, if any
    y_t = M_t(q_t)                             read after token t's own update   (Titans eq. 15)

The middle two lines are the learning algorithm's :meth:`~titans_memory.core.algorithms.LearningAlgorithm.token_step`
(any registered algorithm runs here, with or without a chunk-parallel form). With
``chunk_size = 1`` the anchor is always the previous weights, which is the plain token rule;
with ``chunk_size = b`` every gradient inside a chunk of b tokens is taken at the weights from the
chunk's start (Titans sec. 3.2), which is what the chunk-parallel operator computes in parallel.
It runs any :class:`~titans_memory.core.architectures.MemoryArchitecture`, a
:class:`~titans_memory.core.architectures.FunctionalMemory` included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from titans_memory.core.algorithms import ChunkEnd, TokenStep
from titans_memory.core.ops.common import MemoryInputs, MemoryOpState, check_op_inputs
from titans_memory.core.rule import UpdateRule


def recurrent_memory(
    inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule
) -> tuple[Tensor | None, MemoryOpState]:
    """Run N memories over T tokens, one token at a time.

    Args:
        inputs: queries (None: write only), keys, values and per-token gates (:class:`MemoryInputs`).
        state: the memories' state before the first token (:class:`MemoryOpState`).
        rule: the update rule.

    Returns:
        ``(y, state)``: ``y`` ``(N, T, d)`` (None when ``inputs.q`` is None) and the state after the
        last token.
    """
    check_op_inputs(inputs, state, rule)
    q, k, v, lr, log_retention, log_momentum, param, constants, extra = inputs
    arch, algorithm = rule.architecture, rule.algorithm
    extra = extra or {}
    weights, momentum, offset, carried = list(state.weights), list(state.momentum), state.offset, dict(state.carried)
    anchor = list(state.anchor) if offset else list(weights)

    def gradient(at: Sequence[Tensor], k_: Tensor, v_: Tensor, p_: Tensor | None) -> list[Tensor]:
        """Per-token gradients at ``at``, each bounded: ``u_t <- u_t min(1, tau / ||u_t||)``."""
        grads = arch.token_gradients(at, k_, v_, rule.bias, p_)  # (N, T, d_in, d_out) per layer
        scale = rule.step_scale(torch.stack([g.flatten(2).norm(dim=2) for g in grads]).norm(dim=0))
        if scale is None:
            return grads
        return [g * scale[:, :, None, None] for g in grads]

    def per_token(g: Tensor | None, t: int) -> Tensor | None:
        return None if g is None else g[:, t, None, None]

    outputs = []
    for t in range(k.shape[1]):
        update = algorithm.token_step(TokenStep(
            weights, momentum, anchor, carried, lr[:, t, None, None],
            per_token(log_retention, t), per_token(log_momentum, t),
            {name: g[:, t, None, None] for name, g in extra.items()},
            k[:, t : t + 1], v[:, t : t + 1], None if param is None else param[:, t : t + 1, None],
            gradient, offset,
        ))
        weights, momentum, anchor, carried = list(update.weights), list(update.momentum), list(update.anchor), update.carried

        offset += 1
        if offset == rule.chunk_size:  # chunk end: non-linear retention, then the algorithm's hook
            if rule.retention is not None:
                weights = list(rule.retention.apply(weights, constants))
            if algorithm.has_chunk_end:
                end = algorithm.chunk_end(ChunkEnd(weights, momentum if algorithm.has_momentum else None, carried))
                weights, carried = list(end.weights), end.carried
                if algorithm.has_momentum:
                    momentum = list(end.momentum)
        if q is not None:
            outputs.append(arch.forward(weights, q[:, t : t + 1]))  # y_t = M_t(q_t)
        if offset == rule.chunk_size:  # chunk boundary: later gradients are taken at M_t
            anchor, offset = list(weights), 0
    y = None
    if q is not None:
        y = torch.cat(outputs, dim=1) if outputs else q.new_zeros(q.shape)
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset, carried)
