"""The reference memory operator: token by token, written to be read (the spec).

For each token t of each of N independent memories (Titans eqs. 9-14; DESIGN section 2)::

    u_t = grad_W l(W_anchor; k_t, v_t)        gradient at the chunk-start weights ("anchor")
    S_t = eta_t * S_{t-1} - theta_t * u_t      surprise with momentum
    M_t = (1 - alpha_t) * M_{t-1} + S_t        forgetting, then the write
    y_t = M_t(q_t)                             read after token t's own update

With ``chunk_size = 1`` the anchor is always the previous weights, which is the plain token rule;
with ``chunk_size = b`` every gradient inside a chunk of b tokens is taken at the weights from the
chunk's start (Titans sec. 3.2), which is what the chunk-parallel operator computes in parallel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from titans_memory.core.models import memory_backward, memory_forward
from titans_memory.core.objectives import l2_error
from titans_memory.core.ops.common import MemoryOpState, check_op_inputs


def recurrent_memory(
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
    """Run N memories over T tokens, one token at a time.

    Args:
        q, k, v: ``(N, T, d)`` queries, keys, values.
        lr: ``(N, T)`` inner learning rate theta_t > 0.
        log_retention: ``(N, T)`` log(1 - alpha_t), or None for no forgetting (alpha = 0).
        log_momentum: ``(N, T)`` log(eta_t), or None for no momentum (eta = 0).
        state: the memories' state before the first token (see :class:`MemoryOpState`).
        chunk_size: tokens whose gradients share the chunk-start weights.
        activation: hidden non-linearity of a deep memory.
        error_fn: ``d loss / d M(k)`` of the attentional bias, ``(pred, target, param) -> (N, 1, d)``.
        objective_param: ``(N, T)`` per-token parameter of the bias (Huber's delta_t), or None.
        decayed_gradient: take token t's gradient at the *decayed* anchor ``(1 - alpha_t) M``
            (Gated DeltaNet) instead of the anchor itself (Titans).
        chunk_end_retention: a non-linear retention applied to the weights at every chunk end
            (MIRAS: Lq normalisation, KL, elastic net), after the chunk's last read.

    Returns:
        ``(y, state)`` with ``y`` of shape ``(N, T, d)`` and the state after the last token.
    """
    check_op_inputs(q, k, v, lr, log_retention, log_momentum, state, chunk_size)
    weights, momentum, offset = list(state.weights), list(state.momentum), state.offset
    anchor = list(state.anchor) if offset else list(weights)
    outputs = []
    for t in range(q.shape[1]):
        theta = lr[:, t, None, None]
        eta = 0.0 if log_momentum is None else torch.exp(log_momentum[:, t, None, None])
        retain = 1.0 if log_retention is None else torch.exp(log_retention[:, t, None, None])
        if decayed_gradient:  # Gated DeltaNet: the gradient is taken at the decayed memory
            anchor = [retain * w for w in anchor]

        # u_t: gradient of the attentional bias at the anchor weights, one (N, d_in, d_out) per layer
        param = None if objective_param is None else objective_param[:, t : t + 1, None]
        pred, inputs, preacts = memory_forward(anchor, k[:, t : t + 1], activation)
        deltas = memory_backward(anchor, preacts, error_fn(pred, v[:, t : t + 1], param), activation)
        grads = [a.transpose(-1, -2) @ d for a, d in zip(inputs, deltas, strict=True)]

        momentum = [eta * s - theta * g for s, g in zip(momentum, grads, strict=True)]  # S_t
        weights = [retain * w + s for w, s in zip(weights, momentum, strict=True)]  # M_t

        outputs.append(memory_forward(weights, q[:, t : t + 1], activation)[0])  # y_t = M_t(q_t)
        offset += 1
        if offset == chunk_size:  # chunk boundary: later gradients are taken at M_t
            if chunk_end_retention is not None:
                weights = list(chunk_end_retention(weights))
            anchor, offset = list(weights), 0
    y = torch.cat(outputs, dim=1) if outputs else q.new_zeros(q.shape)
    anchor_out = tuple(anchor) if offset else tuple(weights)
    return y, MemoryOpState(tuple(weights), tuple(momentum), anchor_out, offset)
