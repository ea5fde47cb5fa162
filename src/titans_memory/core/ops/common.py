"""What the two memory operators share: the carried state and argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class MemoryOpState(NamedTuple):
    """State of N independent memories between two calls of a memory operator.

    ``weights`` (M_t), ``momentum`` (S_t) and ``anchor`` (the weights at the start of the current
    chunk, where every gradient of the chunk is taken) are tuples with one ``(N, d_in, d_out)``
    tensor per memory layer. ``offset`` is how many tokens of the current chunk are already
    consumed (0 <= offset < chunk_size); at 0 the anchor equals the weights.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]
    anchor: tuple[Tensor, ...]
    offset: int


def fresh_op_state(initial_weights: Sequence[Tensor]) -> MemoryOpState:
    """State at the start of a sequence: weights = anchor = initial weights, momentum = 0."""
    weights = tuple(initial_weights)
    return MemoryOpState(weights, tuple(torch.zeros_like(w) for w in weights), weights, 0)


def check_op_inputs(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    log_retention: Tensor | None,
    log_momentum: Tensor | None,
    state: MemoryOpState,
    chunk_size: int,
) -> None:
    """Shape checks shared by both operators (cheap: no device sync)."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if q.dim() != 3 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k, v must share one shape (N, T, d); got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    for name, gate in (("lr", lr), ("log_retention", log_retention), ("log_momentum", log_momentum)):
        if gate is not None and gate.shape != q.shape[:2]:
            raise ValueError(f"{name} must have shape (N, T) = {tuple(q.shape[:2])}, got {tuple(gate.shape)}")
    if not 0 <= state.offset < chunk_size:
        raise ValueError(f"state.offset must be in [0, chunk_size={chunk_size}), got {state.offset}")
    if len(state.weights) != len(state.momentum) or len(state.weights) != len(state.anchor):
        raise ValueError("state.weights, state.momentum and state.anchor must have one entry per layer")
    n, _, d = q.shape
    if state.weights[0].shape[0] != n or state.weights[0].shape[-2] != d:
        raise ValueError(
            f"state weights {tuple(state.weights[0].shape)} do not fit inputs with N={n}, d={d}"
        )
