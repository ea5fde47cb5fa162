"""Attentional biases (the inner loss of the memory) as error signals ``d loss / d M(k)``.

MIRAS (arXiv 2504.13173) calls the inner objective the *attentional bias*. The chunk-parallel
form only needs its derivative with respect to the memory's output, per token.
"""

from __future__ import annotations

from torch import Tensor


def l2_error(pred: Tensor, target: Tensor) -> Tensor:
    """``d/d pred ||pred - target||^2 = 2 (pred - target)``; shapes ``(..., T, d)``."""
    return 2.0 * (pred - target)


def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``||pred - target||^2`` per token: ``(..., T)``. Used by references and tests."""
    return ((pred - target) ** 2).sum(-1)
