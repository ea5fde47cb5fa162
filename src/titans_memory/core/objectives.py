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
    """``l = sum_i |r_i|^p`` with ``r = M(k) - v`` (MIRAS eq. 10; Moneta uses p = 3).

    The error is ``p sign(r) |r|^{p-1}`` (MIRAS eq. 11) with the paper's smooth approximations
    (Remark 5): ``|x| ~ sqrt(x^2 + eps)`` and either

    * ``sharpness=None`` (default): ``sign(x) ~ x / sqrt(x^2 + eps)``, the sign that goes with the
      smooth |x|. The error is then the exact derivative of the smoothed loss,
      ``p (r^2 + eps)^{(p-2)/2} r``, and for p = 2 it is exactly the l2 error ``2 r``;
    * ``sharpness=a``: ``sign(x) ~ tanh(a x)``, as the paper writes it (a ~ 10 in public
      reproductions). Then p = 2 is only close to l2, and the error is no longer a gradient.
    """

    p: float = 3.0
    eps: float = 1e-6
    sharpness: float | None = None
    name = "lp"

    def __post_init__(self) -> None:
        if not self.p >= 1:
            raise ValueError(f"LpBias.p must be >= 1, got {self.p!r}")
        if not self.eps > 0:
            raise ValueError(f"LpBias.eps must be > 0, got {self.eps!r}")
        if self.sharpness is not None and not self.sharpness > 0:
            raise ValueError(f"LpBias.sharpness must be > 0 or None, got {self.sharpness!r}")

    def loss(self, pred, target, param=None):
        r = pred - target
        return (r * r + self.eps).pow(self.p / 2).sum(-1)

    def error(self, pred, target, param=None):
        r = pred - target
        if self.sharpness is not None:  # the paper's tanh sign with the smooth |r|
            return self.p * torch.tanh(self.sharpness * r) * (r * r + self.eps).pow((self.p - 1) / 2)
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
        return LpBias(p=config.p, sharpness=config.lp_sign_sharpness)
    return BIASES[config.objective]()
