"""Learning algorithms: one class each, and a registry of the names a config uses.

* ``"titans"``: gradient descent with momentum (Titans eq. 10) and, where the config says so, a
  forget gate (eq. 13);
* ``"no_momentum"``: eta = 0;
* ``"decayed_gradient"``: the gradient at the decayed memory (Gated DeltaNet);
* ``"omeganet"``, ``"atlas"``: ATLAS' Omega rule, with Titans' momentum or with Muon
  (``algorithms/omega.py``, docs/atlas.md).

``MemoryConfig.algorithm = None`` picks one of these from the config's ``momentum`` and
``decayed_gradient`` flags. Adding an algorithm is one :class:`LearningAlgorithm` subclass and one
:func:`register_algorithm` (docs/design.md, "How to add a learning algorithm").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from titans_memory.core.algorithms.base import (
    FORGET,
    MOMENTUM,
    ChunkEnd,
    GateInputs,
    GateSpec,
    LearningAlgorithm,
    MomentumForgetGates,
    TokenStep,
    TokenUpdate,
)
from titans_memory.core.algorithms.coefficients import (
    ChunkCoefficients,
    accumulation_dtype,
    chunk_coefficients,
    segment_products,
)
from titans_memory.core.algorithms.omega import OmegaRule, atlas, omeganet
from titans_memory.core.algorithms.titans import GradientDescent
from titans_memory.core.registry import add_entry

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig

AlgorithmFactory = Callable[["MemoryConfig"], LearningAlgorithm]


def _titans(config: MemoryConfig) -> GradientDescent:
    if not config.momentum or config.decayed_gradient:
        raise ValueError(
            "MemoryConfig.algorithm='titans' is gradient descent with momentum: it needs momentum=True "
            f"and decayed_gradient=False, got momentum={config.momentum}, decayed_gradient={config.decayed_gradient}"
        )
    return GradientDescent(True, config.forget, False, config.momentum_init, config.forget_init)


def _no_momentum(config: MemoryConfig) -> GradientDescent:
    if config.momentum or config.decayed_gradient:
        raise ValueError(
            "MemoryConfig.algorithm='no_momentum' needs momentum=False and decayed_gradient=False, "
            f"got momentum={config.momentum}, decayed_gradient={config.decayed_gradient}"
        )
    return GradientDescent(False, config.forget, False, config.momentum_init, config.forget_init)


def _decayed_gradient(config: MemoryConfig) -> GradientDescent:
    if not (config.forget and config.decayed_gradient):
        raise ValueError(
            "MemoryConfig.algorithm='decayed_gradient' needs forget=True and decayed_gradient=True, "
            f"got forget={config.forget}, decayed_gradient={config.decayed_gradient}"
        )
    return GradientDescent(config.momentum, True, True, config.momentum_init, config.forget_init)


#: Learning algorithms by the name ``MemoryConfig.algorithm`` uses.
ALGORITHMS: dict[str, AlgorithmFactory] = {
    "titans": _titans,
    "no_momentum": _no_momentum,
    "decayed_gradient": _decayed_gradient,
    "omeganet": omeganet,
    "atlas": atlas,
}


def register_algorithm(name: str, factory: AlgorithmFactory, *, replace: bool = False) -> None:
    """Make ``MemoryConfig(algorithm=name)`` build ``factory(config)``."""
    add_entry(ALGORITHMS, name, factory, replace=replace, caller="register_algorithm")


_RESERVED = ("lr", "bias_param", "param", "log_retention", "log_momentum")  # names of the other per-token inputs


def algorithm_name(config: MemoryConfig) -> str:
    """The registry name a config means (``None`` resolved by its ``momentum`` and
    ``decayed_gradient`` flags)."""
    if config.algorithm is not None:
        return config.algorithm
    if config.decayed_gradient:
        return "decayed_gradient"
    return "titans" if config.momentum else "no_momentum"


def make_algorithm(config: MemoryConfig) -> LearningAlgorithm:
    """The learning algorithm of ``config``."""
    name = algorithm_name(config)
    if name not in ALGORITHMS:
        raise ValueError(f"MemoryConfig.algorithm: unknown algorithm {name!r}; registered: {', '.join(ALGORITHMS)}")
    algorithm = ALGORITHMS[name](config)
    if not isinstance(algorithm, LearningAlgorithm):
        raise TypeError(f"the factory of algorithm {name!r} returned {type(algorithm).__name__}, "
                        "not a LearningAlgorithm")
    for spec in algorithm.gates():
        spec.validate(f"algorithm {name!r}")
    names = [g.name for g in algorithm.gates()]
    if len(set(names)) != len(names) or set(_RESERVED) & set(names):
        raise ValueError(f"algorithm {name!r}: gate names must be unique and none of {_RESERVED}, got {names}")
    return algorithm


__all__ = [
    "ALGORITHMS",
    "FORGET",
    "MOMENTUM",
    "ChunkCoefficients",
    "ChunkEnd",
    "GateInputs",
    "GateSpec",
    "GradientDescent",
    "LearningAlgorithm",
    "MomentumForgetGates",
    "OmegaRule",
    "TokenStep",
    "TokenUpdate",
    "accumulation_dtype",
    "algorithm_name",
    "chunk_coefficients",
    "make_algorithm",
    "register_algorithm",
    "segment_products",
]
