"""The reference memory operator: token by token, written to be read (the spec).

For each token t of each of N independent memories (Titans eqs. 9-15; docs/design.md)::

    u_t = grad_W l(W_anchor; k_t, v_t)        gradient at the chunk-start weights ("anchor")
    u_t = u_t min(1, tau / ||u_t||)            the per-token bound on the step, if the rule has one
    S_t = eta_t * S_{t-1} - theta_t * u_t      surprise with momentum            (Titans eq. 10)
    M_t = (1 - alpha_t) * M_{t-1} + S_t        forgetting, then the write        (Titans eq. 13)
    M_t = retention(M_t)                       at chunk ends, a non-linear retention (MIRAS), if any
    y_t = M_t(q_t)                             read after token t's own update   (Titans eq. 15)

With ``chunk_size = 1`` the anchor is always the previous weights, which is the plain token rule;
with ``chunk_size = b`` every gradient inside a chunk of b tokens is taken at the weights from the
chunk's start (Titans sec. 3.2), which is what the chunk-parallel operator computes in parallel.
It runs any :class:`~titans_memory.core.architectures.MemoryArchitecture`, a
:class:`~titans_memory.core.architectures.FunctionalMemory` included.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
    q, k, v, lr, log_retention, log_momentum, param, constants = inputs
    arch = rule.architecture
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else list(weights)
    outputs = []
    for t in range(k.shape[1]):
        theta = lr[:, t, None, None]
        eta = 0.0 if log_momentum is None else torch.exp(log_momentum[:, t, None, None])
        retain = 1.0 if log_retention is None else torch.exp(log_retention[:, t, None, None])
        if rule.decayed_gradient:  # Gated DeltaNet: the gradient is taken at the decayed memory
            anchor = [retain * w for w in anchor]

        # u_t: gradient of the attentional bias at the anchor, one (N, d_in, d_out) per layer
        p_t = None if param is None else param[:, t : t + 1, None]
        grads = [g[:, 0] for g in arch.token_gradients(anchor, k[:, t : t + 1], v[:, t : t + 1], rule.bias, p_t)]
        scale = rule.step_scale(torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0))
        if scale is not None:  # the per-token bound on the step: u_t <- u_t min(1, tau / ||u_t||)
            grads = [g * scale[:, None, None] for g in grads]

        momentum = [eta * s - theta * g for s, g in zip(momentum, grads, strict=True)]  # S_t
        weights = [retain * w + s for w, s in zip(weights, momentum, strict=True)]  # M_t

        offset += 1
        if offset == rule.chunk_size and rule.retention is not None:  # chunk end: non-linear retention
            weights = list(rule.retention.apply(weights, constants))
        if q is not None:
            outputs.append(arch.forward(weights, q[:, t : t + 1]))  # y_t = M_t(q_t)
        if offset == rule.chunk_size:  # chunk boundary: later gradients are taken at M_t
            anchor, offset = list(weights), 0
    y = None
    if q is not None:
        y = torch.cat(outputs, dim=1) if outputs else q.new_zeros(q.shape)
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset)
