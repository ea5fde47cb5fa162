"""``UpdateRule``: the memory's update rule, built once from a :class:`MemoryConfig`.

The four MIRAS choices (arXiv 2504.13173) as objects, plus the chunking of Titans sec. 3.2::

    architecture   the memory network M (matrix, residual MLP, ...)       architectures/
    bias           the attentional bias: inner loss and its error signal  objectives.py
    retention      a non-linear retention at chunk ends, or None (decay)  retention.py
    algorithm      the learning algorithm: gates, recurrence, chunk coefficients   algorithms/
    chunk_size     tokens whose gradients share the chunk-start weights

Both operators, :class:`~titans_memory.core.neural_memory.NeuralMemory` and ``tasks/`` consume
this object; nothing outside ``objectives.py``, ``retention.py``, ``algorithms/`` and
``architectures/`` looks at the names in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from titans_memory.core.algorithms import GradientDescent, LearningAlgorithm, make_algorithm
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
        algorithm: the learning algorithm (:class:`~titans_memory.core.algorithms.LearningAlgorithm`):
            its gates, its recurrence, its chunk-parallel coefficients and chunk-end hook.
        chunk_size: b, tokens whose gradients share the chunk-start weights.
        max_step_norm: tau, a per-token bound on the gradient's Frobenius norm over all layers:
            ``u_t <- u_t min(1, tau / ||u_t||)`` (None: no bound). A per-token scalar, so the
            chunked form stays exact (docs/design.md, "Stability").
    """

    architecture: MemoryArchitecture
    bias: AttentionalBias
    retention: Retention | None
    algorithm: LearningAlgorithm
    chunk_size: int
    max_step_norm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"UpdateRule.chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if not isinstance(self.algorithm, LearningAlgorithm):
            raise TypeError(f"UpdateRule.algorithm must be a LearningAlgorithm, got {type(self.algorithm).__name__}")
        if self.max_step_norm is not None and not (0 < self.max_step_norm < float("inf")):
            raise ValueError(f"UpdateRule.max_step_norm must be a finite number > 0 or None, got {self.max_step_norm!r}")

    @property
    def momentum(self) -> bool:
        """Whether the algorithm has a momentum gate eta_t (False: eta = 0)."""
        return self.algorithm.has_momentum

    @property
    def forget(self) -> bool:
        """Whether the algorithm has a forget gate alpha_t (False: alpha = 0)."""
        return self.algorithm.has_forget

    @property
    def decayed_gradient(self) -> bool:
        """Whether token t's gradient is taken at the anchor times the decay since the chunk start."""
        return self.algorithm.decayed_gradient

    @classmethod
    def gradient_descent(
        cls,
        architecture: MemoryArchitecture,
        bias: AttentionalBias,
        retention: Retention | None,
        momentum: bool,
        forget: bool,
        decayed_gradient: bool,
        chunk_size: int,
        max_step_norm: float | None = None,
    ) -> UpdateRule:
        """A rule with Titans' gradient descent (the three flags of the built-in algorithms)."""
        algorithm = GradientDescent(momentum=momentum, forget=forget, decayed_gradient=decayed_gradient)
        return cls(architecture, bias, retention, algorithm, chunk_size, max_step_norm)

    def carried_shapes(self) -> dict[str, tuple[int, ...]]:
        """The tensors a state carries beside weights and momentum, by name, with one memory's shape:
        those the learning algorithm declares and those the architecture declares."""
        shapes = self.architecture.layer_shapes
        own = self.algorithm.carried_shapes(shapes, shapes[0][0])
        theirs = self.architecture.carried_shapes()
        clash = set(own) & set(theirs)
        if clash:
            raise ValueError(f"the algorithm and the architecture both declare the carried tensors {sorted(clash)}")
        return {**own, **theirs}

    def init_carried(self, n: int, dtype: torch.dtype, device) -> dict[str, Tensor]:
        """The carried tensors of ``n`` fresh memories, ``(n, *shape)`` each."""
        shapes = self.architecture.layer_shapes
        carried = self.algorithm.init_carried(n, shapes, shapes[0][0], dtype, device)
        carried.update(self.architecture.init_carried(n, dtype, device))
        return carried

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
            algorithm=make_algorithm(config),
            chunk_size=config.chunk_size,
            max_step_norm=config.max_step_norm,
        )

    def replace(self, **changes) -> UpdateRule:
        """A copy with some fields changed (e.g. another chunk size). ``momentum``, ``forget`` and
        ``decayed_gradient`` change the flags of a :class:`GradientDescent` algorithm."""
        flags = {name: changes.pop(name) for name in ("momentum", "forget", "decayed_gradient") if name in changes}
        if flags:
            algorithm = changes.get("algorithm", self.algorithm)
            if not isinstance(algorithm, GradientDescent):
                raise ValueError(
                    f"UpdateRule.replace: {', '.join(flags)} are flags of GradientDescent, not of "
                    f"{type(algorithm).__name__}; pass algorithm=... instead"
                )
            changes["algorithm"] = replace(algorithm, **flags)
        return replace(self, **changes)
