"""Scalar coefficients of the chunk-parallel unrolling of a linear learning algorithm.

Inside a segment of c tokens every gradient is taken at the anchor, so for an algorithm whose
momentum and forgetting are linear in the gradients ``u_j`` the state after token t is, from the
segment's start state ``(W_s, S_s)`` (Titans sec. 3.2, eqs. 16-18; docs/design.md, sec. 3.1)::

    S_t = E_t S_s - sum_{j<=t} theta_j P[t, j] u_j
    M_t = A_t W_s + f_t S_s - sum_{j<=t} G[t, j] u_j

:class:`ChunkCoefficients` holds ``A, f, E, G, P``; :func:`chunk_coefficients` computes them for
Titans' rule (``E_t = prod eta_i``, ``P[t, j] = E_t / E_j``, ``A_t = prod (1 - alpha_i)``,
``D[t, s] = A_t / A_s``, ``f_t = sum_{s<=t} D[t, s] E_s``, ``G = (D @ P) diag(theta)``). Another
linear algorithm (Nesterov momentum, a windowed rule) builds its own from the same pieces
(:func:`segment_products`). Products of gates are taken in log space, so long chunks and tiny
gates neither underflow to 0/0 nor lose the momentum.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


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


def segment_products(log_gate: Tensor) -> tuple[Tensor, Tensor]:
    """For log-gates ``(..., c)``: cumulative products ``(..., c)`` and the lower-triangular
    matrix of partial products ``R[t, s] = prod_{s < i <= t} gate_i`` (``(..., c, c)``, 0 above)."""
    c = log_gate.shape[-1]
    cum = log_gate.cumsum(-1)
    upper = torch.ones(c, c, dtype=torch.bool, device=log_gate.device).triu(1)
    ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill_(upper, float("-inf")).exp_()  # fresh: in place
    return cum.exp(), ratio


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype gate products are accumulated in: ``dtype``, at least float32."""
    return torch.promote_types(dtype, torch.float32)


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
    acc = accumulation_dtype(dtype)
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
        retain, decay = segment_products(log_retention)
    if log_momentum is None:  # eta = 0: S_t = -theta_t u_t, so P is the identity and f = 0
        return ChunkCoefficients(retain, None, None, decay * lr.unsqueeze(-2), None)
    carry, mom = segment_products(log_momentum)
    f = (decay @ carry.unsqueeze(-1)).squeeze(-1)
    G = (decay @ mom) * lr.unsqueeze(-2)
    return ChunkCoefficients(retain, f, carry, G, mom)
