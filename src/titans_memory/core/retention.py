"""Retention rules: how the memory keeps or lets go of what it holds (MIRAS, arXiv 2504.13173).

Every memory here first *decays*: ``M_t = (1 - alpha_t) M_{t-1} + S_t`` (Titans' forget gate; the
local l2 retention of MIRAS). That part is linear, so it lives inside the chunk-parallel update.
A *non-linear* retention is applied on top at every chunk end (and to the fresh memory), as the
paper does for parallel training; inside a chunk the update stays linear. Token by token
(``chunk_size = 1``) that is the paper's per-token rule; with chunks of b tokens the map acts every
b tokens. Each rule maps one weight tensor ``(N, d_in, d_out)`` (N = batch x heads) to another:

* ``lq`` (Moneta): rescale each weight matrix to a fixed q-norm radius rho,
  ``W <- rho W / ||W||_q``. The paper writes Moneta with an accumulator ``A_t`` and reads
  ``W_t = A_t / ||A_t||_q^{q-2}``; that map is not idempotent, so applied to the weights
  themselves it would swing the scale chunk to chunk. Projecting the weights onto the q-sphere
  keeps the l_q geometry of the retention and keeps ``||W||_q = rho`` at every chunk end.
* ``kl`` (Memora): the weights live on the scaled simplex ``{W >= 0, sum W = c}``; at chunk ends
  ``W <- c softmax(a log W)`` over each matrix (the KL-retention step of MIRAS eq. 21 with the
  gradient already applied linearly), ``a = 1 - strength`` pulling towards uniform; entries the
  linear steps pushed below 0 are clamped to a tiny positive value first.
* ``elastic_net``: soft thresholding ``W <- sign(W) max(|W| - lambda, 0)`` (MIRAS eq. 22).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

_TINY = 1e-30


def lq_normalize(w: Tensor, q: float, radius: Tensor) -> Tensor:
    """``radius * w / ||w||_q`` over the last two dims; ``radius`` broadcasts as ``(N, 1, 1)``."""
    norm = w.abs().pow(q).sum((-2, -1), keepdim=True).pow(1.0 / q)
    return w * (radius / norm.clamp_min(_TINY))


def kl_simplex(w: Tensor, scale: float, exponent: float) -> Tensor:
    """``scale * softmax(exponent * log w)`` over all entries of each ``(d_in, d_out)`` matrix."""
    logits = exponent * torch.log(w.clamp_min(_TINY))
    flat = logits.flatten(-2).softmax(-1)
    return scale * flat.view_as(w)


def soft_threshold(w: Tensor, lam: float) -> Tensor:
    """``sign(w) max(|w| - lam, 0)`` (the proximal map of ``lam ||w||_1``)."""
    return torch.sign(w) * torch.relu(w.abs() - lam)


def simplex_scale(d_in: int, d_out: int) -> float:
    """Memora's simplex scale c for a ``(d_in, d_out)`` matrix: a uniform memory then averages
    its inputs (each entry ``1 / d_in``)."""
    return float(d_out)


def make_retention(
    config, radii: Sequence[Tensor] | None = None
) -> Callable[[list[Tensor]], list[Tensor]] | None:
    """The chunk-end retention of a :class:`~titans_memory.core.config.MemoryConfig`.

    Args:
        config: the memory's config (``retention``, ``q``, ``retention_strength``).
        radii: for ``lq``, one ``(N, 1, 1)`` q-norm radius per layer.

    Returns:
        ``weights -> weights`` on lists of ``(N, d_in, d_out)`` tensors, or None for plain decay.
    """
    kind = config.retention
    if kind == "decay":
        return None
    if kind == "lq":
        if radii is None:
            raise ValueError("lq retention needs one radius per layer")
        return lambda ws: [lq_normalize(w, config.q, r) for w, r in zip(ws, radii, strict=True)]
    if kind == "kl":
        exponent = 1.0 - config.retention_strength
        return lambda ws: [kl_simplex(w, simplex_scale(*w.shape[-2:]), exponent) for w in ws]
    if kind == "elastic_net":
        return lambda ws: [soft_threshold(w, config.retention_strength) for w in ws]
    raise ValueError(f"unknown retention {kind!r}")
