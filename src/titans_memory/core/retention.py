"""Retention rules: how the memory keeps or lets go of what it holds (MIRAS, arXiv 2504.13173).

Every memory here first *decays*: ``M_t = (1 - alpha_t) M_{t-1} + S_t`` (Titans eq. 13, the forget
gate; MIRAS's local l2 retention). That part is linear, so it lives inside the chunk-parallel
update and is not a rule of this module (``MemoryConfig.retention = "decay"`` means nothing more).

A *non-linear* retention is applied on top at every chunk end (and to the fresh memory), as the
paper does for parallel training; inside a chunk the update stays linear. Token by token
(``chunk_size = 1``) that is the paper's per-token rule; with chunks of b tokens the map acts every
b tokens. A rule maps the list of weight tensors ``(N, d_in, d_out)`` (N = batch x heads) to
another:

* ``lq`` (Moneta, MIRAS sec. 5.2 and eqs. 24-25): rescale each weight matrix to a fixed q-norm radius rho,
  ``W <- rho W / ||W||_q``. The paper writes Moneta with an accumulator ``A_t`` and reads
  ``W_t = A_t / ||A_t||_q^{q-2}``; that map is not idempotent, so applied to the weights
  themselves it would swing the scale chunk to chunk. Projecting the weights onto the q-sphere
  keeps the l_q geometry of the retention and keeps ``||W||_q = rho`` at every chunk end. rho is
  each layer's q-norm at initialisation (a *constant* of the rule, see :meth:`Retention.constants`).
* ``kl`` (Memora, MIRAS eqs. 21 and 27): the weights live on the scaled simplex ``{W >= 0, sum W = c}``;
  at chunk ends ``W <- c softmax(a log W)`` over each matrix (the KL step with the gradient
  already applied linearly), ``a = 1 - strength`` pulling towards uniform; entries the linear
  steps pushed below 0 are clamped to a tiny positive value first.
* ``elastic_net`` (MIRAS eq. 22): soft thresholding ``W <- sign(W) max(|W| - lambda, 0)``.

**Adding a retention** is one class and one registration (see :func:`register_retention`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from titans_memory.core.registry import add_entry

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig

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


@dataclass(frozen=True)
class Retention:
    """Base class of the chunk-end retention rules.

    Subclasses set :attr:`name` and implement :meth:`apply`; :meth:`init_memory` and
    :meth:`constants` are optional.
    """

    name: ClassVar[str] = "base"

    def init_memory(self, weights: Sequence[Tensor]) -> list[Tensor]:
        """The initial memory ``(heads, d_in, d_out)`` per layer, put where the rule wants it.

        Called once, on a fresh module's ``memory_init`` (e.g. Memora starts uniform on its
        simplex). Default: unchanged.
        """
        return list(weights)

    def constants(self, weights: Sequence[Tensor]) -> Tensor | None:
        """Constants of the rule taken from the initial memory: ``(layers, heads)`` or None.

        Stored as the module's buffer ``retention_constants`` and handed back to :meth:`apply`
        as one ``(N, 1, 1)`` tensor per layer. Default: None.
        """
        return None

    def apply(self, weights: Sequence[Tensor], constants: Sequence[Tensor] | None) -> list[Tensor]:
        """The chunk-end map on ``(N, d_in, d_out)`` weights (one per layer)."""
        raise NotImplementedError(f"{type(self).__name__} defines no apply")

    def norm_bound(self, layer_shapes: Sequence[tuple[int, int]], constants: Tensor | None) -> Tensor | None:
        """What the map guarantees: a bound on ``||W||_F`` over all layers right after it, per head
        (a tensor broadcastable to ``(heads,)``), or None for a map that never increases the norm.

        Used by the stability envelope (``core/stability.py``). The default, None, claims the map
        is non-expansive: a rule that can grow the weights must override it.
        """
        return None


@dataclass(frozen=True)
class LqRetention(Retention):
    """Moneta: every weight matrix back onto its initial q-norm sphere at chunk ends."""

    q: float = 4.0
    name: ClassVar[str] = "lq"

    def constants(self, weights):
        return torch.stack([w.detach().abs().pow(self.q).sum((-2, -1)).pow(1 / self.q) for w in weights])

    def apply(self, weights, constants):
        if constants is None:
            raise ValueError("lq retention needs one radius per layer (constants), got None")
        return [lq_normalize(w, self.q, r) for w, r in zip(weights, constants, strict=True)]

    def norm_bound(self, layer_shapes, constants):
        # ||W||_q = rho after the map, and ||x||_2 <= n^(1/2 - 1/q) ||x||_q for q >= 2 (else <= ||x||_q)
        per_layer = [
            radius * float(d_in * d_out) ** max(0.0, 0.5 - 1.0 / self.q)
            for radius, (d_in, d_out) in zip(constants, layer_shapes, strict=True)
        ]
        return torch.stack(per_layer).norm(dim=0)


@dataclass(frozen=True)
class KLRetention(Retention):
    """Memora: the weights on the scaled simplex (scale c = d_out), softmax of log-weights."""

    strength: float = 1e-3
    name: ClassVar[str] = "kl"

    @staticmethod
    def scale(w: Tensor) -> float:
        """The simplex scale c of a ``(d_in, d_out)`` matrix: a uniform memory then averages its
        inputs (each entry ``1 / d_in``)."""
        return float(w.shape[-1])

    def init_memory(self, weights):
        return [torch.full_like(w, self.scale(w) / (w.shape[-2] * w.shape[-1])) for w in weights]

    def apply(self, weights, constants):
        return [kl_simplex(w, self.scale(w), 1.0 - self.strength) for w in weights]

    def norm_bound(self, layer_shapes, constants):
        # entries >= 0 summing to c = d_out: ||W||_F <= ||W||_1 = c, per layer
        return torch.tensor(sum(float(d_out) ** 2 for _, d_out in layer_shapes) ** 0.5, dtype=torch.float64)


@dataclass(frozen=True)
class ElasticNetRetention(Retention):
    """Soft thresholding of every weight by ``strength`` (the elastic net's l1 part)."""

    strength: float = 1e-3
    name: ClassVar[str] = "elastic_net"

    def apply(self, weights, constants):
        return [soft_threshold(w, self.strength) for w in weights]


# --- the registry: name -> factory(config), None for plain decay ---------------------------------
RetentionFactory = Callable[["MemoryConfig"], "Retention | None"]

#: Retentions by the name ``MemoryConfig.retention`` uses. Extend with :func:`register_retention`.
RETENTIONS: dict[str, RetentionFactory] = {
    "decay": lambda config: None,
    "lq": lambda config: LqRetention(q=config.q),
    "kl": lambda config: KLRetention(strength=config.retention_strength),
    "elastic_net": lambda config: ElasticNetRetention(strength=config.retention_strength),
}


def register_retention(name: str, factory: RetentionFactory, *, replace: bool = False) -> None:
    """Make ``MemoryConfig(retention=name)`` build ``factory(config)`` (a :class:`Retention`)."""
    add_entry(
        RETENTIONS, name, factory, replace=replace, caller="register_retention",
        expected="factory must be callable (config -> Retention)",
    )


def make_retention(config: MemoryConfig) -> Retention | None:
    """The chunk-end retention ``config.retention`` names (None for plain decay)."""
    if config.retention not in RETENTIONS:
        raise ValueError(f"MemoryConfig.retention: unknown retention {config.retention!r}; registered: {', '.join(RETENTIONS)}")
    rule = RETENTIONS[config.retention](config)
    if rule is not None and not isinstance(rule, Retention):
        raise TypeError(f"the factory of retention {config.retention!r} returned {type(rule).__name__}, "
                        "not a Retention or None")
    return rule
