"""``UpdateRule``: the memory's update rule, built once from a :class:`MemoryConfig`.

The four MIRAS choices (arXiv 2504.13173) as objects, plus the chunking of Titans sec. 3.2::

    architecture   the memory network M (matrix, residual MLP, ...)       architectures/
    bias           the attentional bias: inner loss and its error signal  objectives.py
    retention      a non-linear retention at chunk ends, or None (decay)  retention.py
    algorithm      momentum on/off, forget gate on/off, gradient at the decayed memory or not
    chunk_size     tokens whose gradients share the chunk-start weights

Both operators, :class:`~titans_memory.core.neural_memory.NeuralMemory` and ``tasks/`` consume
this object; nothing outside ``objectives.py``, ``retention.py`` and ``architectures/`` looks at
the names in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from torch import Tensor

from titans_memory.core.architectures import MemoryArchitecture, make_architecture
from titans_memory.core.architectures.base import bound_scale
from titans_memory.core.objectives import AttentionalBias, make_bias
from titans_memory.core.retention import Retention, make_retention

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig


@dataclass(frozen=True)
class UpdateRule:
    """One memory update rule (Titans eqs. 9-15 with the MIRAS parts).

    Attributes:
        architecture: the memory network.
        bias: the attentional bias; ``bias.param_init`` is not None when it needs a per-token
            parameter (a gate).
        retention: the chunk-end retention, or None for plain decay.
        momentum: whether the surprise carries momentum (eta_t); False means eta = 0.
        forget: whether the memory decays (alpha_t); False means alpha = 0.
        decayed_gradient: token t's gradient at ``(1 - alpha_t) M`` (Gated DeltaNet) instead of M.
        chunk_size: b, tokens whose gradients share the chunk-start weights.
        max_step_norm: tau, a per-token bound on the gradient's Frobenius norm over all layers:
            ``u_t <- u_t min(1, tau / ||u_t||)`` (None: no bound). A per-token scalar, so the
            chunked form stays exact (docs/design.md, "Stability"). For an Omega rule it bounds
            the window gradient g_t.
        omega_window: c, the Omega rule's window (ATLAS eq. 9): the update at t uses the gradients
            of the last c tokens (``core/omega.py``); 1 is the Titans rule.
        muon: Atlas' inner optimiser: the momentum is orthogonalised by ``ns_steps`` Newton-Schulz
            steps per weight matrix before it is applied (ATLAS eqs. 32-33).
        ns_steps: Newton-Schulz steps of the Muon update (>= 0).
        feature_degree: p of the polynomial feature map phi on keys and queries (ATLAS sec. 3.1,
            ``core/features.py``), or None (off).
    """

    architecture: MemoryArchitecture
    bias: AttentionalBias
    retention: Retention | None
    momentum: bool
    forget: bool
    decayed_gradient: bool
    chunk_size: int
    max_step_norm: float | None = None
    omega_window: int = 1
    muon: bool = False
    ns_steps: int = 5
    feature_degree: int | None = None

    @property
    def uses_omega(self) -> bool:
        """Whether the rule needs the Omega operators (``core/omega.py``): a window c > 1, Muon or
        feature maps (the Titans operators handle none of them)."""
        return self.omega_window > 1 or self.muon or self.feature_degree is not None

    def __post_init__(self) -> None:
        for name in ("omega_window", "ns_steps"):
            value, low = getattr(self, name), 1 if name == "omega_window" else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"UpdateRule.{name} must be an integer >= {low}, got {value!r}")
        if self.feature_degree is not None and (
            not isinstance(self.feature_degree, int) or isinstance(self.feature_degree, bool) or self.feature_degree < 1
        ):
            raise ValueError(f"UpdateRule.feature_degree must be None or an integer >= 1, got {self.feature_degree!r}")
        if self.uses_omega and (self.retention is not None or self.decayed_gradient):
            raise ValueError(
                "the Omega rule, Muon and feature maps (omega_window > 1, muon, feature_degree) need "
                "retention='decay' and decayed_gradient=False"
            )
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"UpdateRule.chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if self.decayed_gradient and not self.forget:
            raise ValueError("UpdateRule.decayed_gradient needs forget=True (it decays by alpha_t)")
        if self.max_step_norm is not None and not (0 < self.max_step_norm < float("inf")):
            raise ValueError(f"UpdateRule.max_step_norm must be a finite number > 0 or None, got {self.max_step_norm!r}")

    def step_scale(self, norm: Tensor) -> Tensor | None:
        """``min(1, tau / ||u_t||)`` for per-token gradient norms (any shape); None without a bound."""
        if self.max_step_norm is None:
            return None
        return bound_scale(norm, self.max_step_norm)

    @classmethod
    def from_config(cls, config: MemoryConfig) -> UpdateRule:
        """The rule a config describes (its names looked up in the registries)."""
        return cls(
            architecture=make_architecture(config),
            bias=make_bias(config),
            retention=make_retention(config),
            momentum=config.momentum,
            forget=config.forget,
            decayed_gradient=config.decayed_gradient,
            chunk_size=config.chunk_size,
            max_step_norm=config.max_step_norm,
            omega_window=config.omega_window,
            muon=config.muon,
            ns_steps=config.ns_steps,
            feature_degree=config.feature_degree,
        )

    def replace(self, **changes) -> UpdateRule:
        """A copy with some fields changed (e.g. another chunk size)."""
        return replace(self, **changes)
