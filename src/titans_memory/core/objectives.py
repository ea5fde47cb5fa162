"""Attentional biases: the inner loss of the memory, as error signals ``d loss / d M(k)``.

MIRAS (arXiv 2504.13173) calls the memory's inner objective its *attentional bias*. The
chunk-parallel form only needs the derivative of that loss with respect to the memory's output,
per token, so each bias is a pair ``loss(pred, target, param)`` (for references and tests) and
``error(pred, target, param)`` (what the update uses). ``param`` is an optional per-token,
data-dependent parameter of shape ``(N, T, 1)`` (Huber's threshold delta_t), else None.

All shapes: ``pred, target: (..., T, d)``; ``loss: (..., T)``; ``error: (..., T, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def l2_error(pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
    """``d/d pred ||pred - target||^2 = 2 (pred - target)`` (Titans eq. 12)."""
    return 2.0 * (pred - target)


def l2_loss(pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
    """``||pred - target||^2`` per token."""
    return ((pred - target) ** 2).sum(-1)


@dataclass(frozen=True)
class AttentionalBias:
    """Base class: a named inner loss with its error signal."""

    name = "base"
    needs_param = False  # True: a data-dependent per-token parameter (a gate) is required

    def loss(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def error(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def __call__(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        return self.error(pred, target, param)


@dataclass(frozen=True)
class L2Bias(AttentionalBias):
    """``l = ||M(k) - v||^2``: Titans, DeltaNet, TTT, Memora."""

    name = "l2"

    def loss(self, pred, target, param=None):
        return l2_loss(pred, target)

    def error(self, pred, target, param=None):
        return l2_error(pred, target)


@dataclass(frozen=True)
class LpBias(AttentionalBias):
    """``l = sum_i |r_i|^p`` with ``r = M(k) - v`` and the smooth ``|x| ~ sqrt(x^2 + eps)``.

    The error is the exact derivative of the smoothed loss, ``p (r^2 + eps)^{(p-2)/2} r``, which is
    the paper's ``p |r|^{p-1} sign(r)`` with both |.| and sign smoothed consistently; for p = 2 it
    is exactly the l2 error ``2 r`` (eps drops out). Moneta uses p = 3.
    """

    p: float = 3.0
    eps: float = 1e-6
    name = "lp"

    def __post_init__(self) -> None:
        if not self.p >= 1:
            raise ValueError(f"LpBias.p must be >= 1, got {self.p!r}")
        if not self.eps > 0:
            raise ValueError(f"LpBias.eps must be > 0, got {self.eps!r}")

    def loss(self, pred, target, param=None):
        r = pred - target
        return (r * r + self.eps).pow(self.p / 2).sum(-1)

    def error(self, pred, target, param=None):
        r = pred - target
        if self.p == 2:
            return 2.0 * r
        return self.p * (r * r + self.eps).pow((self.p - 2) / 2) * r


@dataclass(frozen=True)
class HuberBias(AttentionalBias):
    """Yaad's Huber bias: an l2 step when ``||M(k) - v|| <= delta_t``, else a delta_t-scaled l1 step.

    ``error = 2 r`` if ``||r||_2 <= delta_t`` else ``delta_t * sign(r)`` (per token; delta_t > 0 is
    data-dependent, shape (N, T, 1)). An outlier therefore moves the memory by a bounded step.
    """

    name = "huber"
    needs_param = True

    def loss(self, pred, target, param=None):
        r = pred - target
        norm = r.norm(dim=-1)
        delta = param.squeeze(-1)
        return torch.where(norm <= delta, (r * r).sum(-1), delta * r.abs().sum(-1))

    def error(self, pred, target, param=None):
        if param is None:
            raise ValueError("HuberBias needs a per-token threshold delta_t (param)")
        r = pred - target
        inside = r.norm(dim=-1, keepdim=True) <= param
        return torch.where(inside, 2.0 * r, param * torch.sign(r))


@dataclass(frozen=True)
class DotProductBias(AttentionalBias):
    """``l = -<M(k), v>``: its gradient step is Hebbian, ``M += theta v k^T`` (linear attention)."""

    name = "dot"

    def loss(self, pred, target, param=None):
        return -(pred * target).sum(-1)

    def error(self, pred, target, param=None):
        return -target.expand_as(pred)  # independent of the memory: no error-correction


BIASES = {"l2": L2Bias, "lp": LpBias, "huber": HuberBias, "dot": DotProductBias}


def make_objective(config) -> AttentionalBias:
    """The attentional bias a :class:`~titans_memory.core.config.MemoryConfig` asks for."""
    if config.objective == "lp":
        return LpBias(p=config.p)
    return BIASES[config.objective]()
