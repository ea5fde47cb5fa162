"""Attentional biases: the memory's inner loss, as error signals ``d loss / d M(k)``.

MIRAS (arXiv 2504.13173) calls the memory's inner objective its *attentional bias*. The
chunk-parallel operator only needs the derivative of that loss with respect to the memory's
output, per token, so a bias is a pair

* ``loss(pred, target, param)``: the loss per token, for references and tests;
* ``error(pred, target, param)``: ``d loss / d pred``, what the update uses (Titans eq. 12 for l2).

``param`` is an optional data-dependent parameter per token, shape ``(..., T, 1)`` (Yaad's Huber
threshold delta_t), or None. A bias that wants one says so with :attr:`AttentionalBias.param_init`;
:class:`~titans_memory.core.neural_memory.NeuralMemory` then learns a gate for it.

Shapes: ``pred, target: (..., T, d)``; ``loss: (..., T)``; ``error: (..., T, d)``.

**Adding a bias** is one class and one registration, from anywhere::

    class LogCoshBias(AttentionalBias):
        name = "logcosh"
        def loss(self, pred, target, param=None):
            return torch.log(torch.cosh(pred - target)).sum(-1)
        def error(self, pred, target, param=None):
            return torch.tanh(pred - target)

    register_bias("logcosh", lambda config: LogCoshBias())
    MemoryConfig(objective="logcosh")       # both operators use it
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_memory.core.registry import add_entry

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = log(1 + e^x) = y``, for any ``y > 0`` (no overflow for large y)."""
    if not y > 0:
        raise ValueError(f"inverse_softplus needs y > 0, got {y!r}")
    # log(e^y - 1) = y + log(1 - e^-y): the second form never overflows
    return y + math.log(-math.expm1(-y))


@dataclass(frozen=True)
class AttentionalBias:
    """Base class of the inner losses.

    Subclasses set :attr:`name` and implement :meth:`error` (and :meth:`loss` for references).

    Attributes:
        name: the name a :class:`~titans_memory.core.config.MemoryConfig` uses for it.
        param_init: None for a bias without a data-dependent parameter; else the parameter's
            value at initialisation, and the bias maps a raw gate value to the parameter with
            :meth:`param_from_raw` (and back with :meth:`raw_from_param`).
    """

    name: ClassVar[str] = "base"

    @property
    def param_init(self) -> float | None:
        return None

    def param_from_raw(self, raw: Tensor) -> Tensor:
        """The parameter from a raw gate value (a linear map of x_t): positive by default."""
        return F.softplus(raw)

    def raw_from_param(self, value: float) -> float:
        """Inverse of :meth:`param_from_raw` (sets the gate's initial bias)."""
        return inverse_softplus(value)

    def loss(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no loss")

    def error(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no error signal")

    def __call__(self, pred: Tensor, target: Tensor, param: Tensor | None = None) -> Tensor:
        return self.error(pred, target, param)


@dataclass(frozen=True)
class L2Bias(AttentionalBias):
    """``l = ||M(k) - v||^2`` (Titans eq. 12): Titans, DeltaNet, TTT, Memora.

    Its error ``2 (M(k) - v)`` carries the factor 2, so DeltaNet's beta is ``2 theta`` here.
    """

    name: ClassVar[str] = "l2"

    def loss(self, pred, target, param=None):
        return ((pred - target) ** 2).sum(-1)

    def error(self, pred, target, param=None):
        return 2.0 * (pred - target)


@dataclass(frozen=True)
class LpBias(AttentionalBias):
    """``l = sum_i |r_i|^p`` with ``r = M(k) - v`` (MIRAS eq. 10; Moneta uses p = 3).

    The error is ``p sign(r) |r|^{p-1}`` (MIRAS eq. 11) with the paper's smooth approximations
    (its Remark 5): ``|x| ~ sqrt(x^2 + eps)`` and either

    * ``sharpness=None`` (default): ``sign(x) ~ x / sqrt(x^2 + eps)``, the sign that goes with the
      smooth |x|. The error is then the exact derivative of the smoothed loss,
      ``p (r^2 + eps)^{(p-2)/2} r``, and for p = 2 it is exactly the l2 error ``2 r``;
    * ``sharpness=a``: ``sign(x) ~ tanh(a x)``, as the paper writes it (a ~ 10 in public
      reproductions). Then p = 2 is only close to l2, and the error is no longer a gradient.
    """

    p: float = 3.0
    eps: float = 1e-6
    sharpness: float | None = None
    name: ClassVar[str] = "lp"

    def __post_init__(self) -> None:
        if not (self.p >= 1 and math.isfinite(self.p)):
            raise ValueError(f"LpBias.p must be a finite number >= 1, got {self.p!r}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"LpBias.eps must be a finite number > 0, got {self.eps!r}")
        if self.sharpness is not None and not (self.sharpness > 0 and math.isfinite(self.sharpness)):
            raise ValueError(f"LpBias.sharpness must be a finite number > 0 or None, got {self.sharpness!r}")

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
    """Yaad's Huber bias (MIRAS eqs. 14-16; Yaad, eq. 26): an l2 step when ``||M(k) - v|| <= delta_t``,
    else a delta_t-scaled l1 step.

    ``error = 2 r`` if ``||r||_2 <= delta_t`` else ``delta_t * sign(r)`` (per token; delta_t > 0
    is data-dependent, ``softplus`` of a gate, shape ``(..., T, 1)``). An outlier therefore moves
    the memory by a bounded step.
    """

    delta_init: float = 1.0
    name: ClassVar[str] = "huber"

    def __post_init__(self) -> None:
        if not (self.delta_init > 0 and math.isfinite(self.delta_init)):
            raise ValueError(f"HuberBias.delta_init must be a finite number > 0, got {self.delta_init!r}")

    @property
    def param_init(self) -> float:
        return self.delta_init

    def loss(self, pred, target, param=None):
        param = self._check(param)
        r = pred - target
        norm = r.norm(dim=-1)
        delta = param.squeeze(-1)
        return torch.where(norm <= delta, (r * r).sum(-1), delta * r.abs().sum(-1))

    def error(self, pred, target, param=None):
        param = self._check(param)
        r = pred - target
        inside = r.norm(dim=-1, keepdim=True) <= param
        return torch.where(inside, 2.0 * r, param * torch.sign(r))

    @staticmethod
    def _check(param: Tensor | None) -> Tensor:
        if param is None:
            raise ValueError("HuberBias needs a per-token threshold delta_t (param), got None")
        return param


@dataclass(frozen=True)
class DotProductBias(AttentionalBias):
    """``l = -<M(k), v>``: its gradient step is Hebbian, ``M += theta v k^T`` (linear attention)."""

    name: ClassVar[str] = "dot"

    def loss(self, pred, target, param=None):
        return -(pred * target).sum(-1)

    def error(self, pred, target, param=None):
        return -target.expand_as(pred)  # independent of the memory: no error correction


# --- the registry: name -> factory(config) -------------------------------------------------------
BiasFactory = Callable[["MemoryConfig"], AttentionalBias]

#: Attentional biases by the name ``MemoryConfig.objective`` uses. Extend with :func:`register_bias`.
BIASES: dict[str, BiasFactory] = {
    "l2": lambda config: L2Bias(),
    "lp": lambda config: LpBias(p=config.p, sharpness=config.lp_sign_sharpness),
    "huber": lambda config: HuberBias(delta_init=config.huber_delta_init),
    "dot": lambda config: DotProductBias(),
}


def register_bias(name: str, factory: BiasFactory, *, replace: bool = False) -> None:
    """Make ``MemoryConfig(objective=name)`` build ``factory(config)``.

    Args:
        name: the objective's name.
        factory: ``config -> AttentionalBias`` (it may read any config field).
        replace: allow replacing an existing entry (else that is an error).
    """
    add_entry(
        BIASES, name, factory, replace=replace, caller="register_bias",
        expected="factory must be callable (config -> AttentionalBias)",
    )


def make_bias(config: MemoryConfig) -> AttentionalBias:
    """The attentional bias ``config.objective`` names."""
    if config.objective not in BIASES:
        raise ValueError(f"MemoryConfig.objective: unknown objective {config.objective!r}; registered: {', '.join(BIASES)}")
    bias = BIASES[config.objective](config)
    if not isinstance(bias, AttentionalBias):
        raise TypeError(f"the factory of objective {config.objective!r} returned {type(bias).__name__}, "
                        "not an AttentionalBias")
    return bias
