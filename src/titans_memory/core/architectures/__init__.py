"""Memory architectures: one class each, and a registry of the names a config uses.

* :class:`MatrixMemory` (``"matrix"``): ``M(x) = x W``;
* :class:`ResidualMLPMemory` (``"residual_mlp"``): ``M(x) = x + act(... act(x W_1) ...) W_L``;
* :class:`FunctionalMemory`: any ``fn(params, x)``, for the reference operator only.

``MemoryConfig.architecture = None`` picks ``"matrix"`` for ``depth == 1`` and ``"residual_mlp"``
otherwise. Adding an architecture is one class (a :class:`DualFormMemory` for the fast path, or a
:class:`FunctionalMemory` to try it on the reference first) and one :func:`register_architecture`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from titans_memory.core.architectures.activations import ACTIVATIONS
from titans_memory.core.architectures.base import (
    DualFormMemory,
    FunctionalMemory,
    KeyPath,
    MemoryArchitecture,
    ReadCoefficients,
    WriteCoefficients,
)
from titans_memory.core.architectures.mlp import MatrixMemory, MLPMemory, ResidualMLPMemory
from titans_memory.core.registry import add_entry

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig

ArchitectureFactory = Callable[["MemoryConfig"], MemoryArchitecture]


def _residual_mlp(config: MemoryConfig) -> ResidualMLPMemory:
    return ResidualMLPMemory(config.d_head, config.hidden_dim, config.depth, config.activation)


#: Architectures by the name ``MemoryConfig.architecture`` uses.
ARCHITECTURES: dict[str, ArchitectureFactory] = {
    "matrix": lambda config: MatrixMemory(config.d_head),
    "residual_mlp": _residual_mlp,
}


def register_architecture(name: str, factory: ArchitectureFactory, *, replace: bool = False) -> None:
    """Make ``MemoryConfig(architecture=name)`` build ``factory(config)``."""
    add_entry(ARCHITECTURES, name, factory, replace=replace, caller="register_architecture")


def architecture_name(config: MemoryConfig) -> str:
    """The registry name a config means (``None`` resolved by depth)."""
    if config.architecture is not None:
        return config.architecture
    return "matrix" if config.depth == 1 else "residual_mlp"


def make_architecture(config: MemoryConfig) -> MemoryArchitecture:
    """The memory architecture of ``config``."""
    name = architecture_name(config)
    if getattr(config, "feature_degree", None) is not None:  # ATLAS' feature map phi: keys d_phi wide
        if name not in ("matrix", "residual_mlp"):
            raise ValueError(
                f"MemoryConfig.feature_degree works with the matrix and residual_mlp memories, not {name!r}"
            )
        from titans_memory.core.features import FeatureMLPMemory, feature_dim

        return FeatureMLPMemory(
            feature_dim(config.d_head, config.feature_degree), config.d_head, config.hidden_dim,
            1 if name == "matrix" else config.depth, config.activation,
        )
    if name not in ARCHITECTURES:
        raise ValueError(f"MemoryConfig.architecture: unknown architecture {name!r}; registered: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name](config)
    if not isinstance(arch, MemoryArchitecture):
        raise TypeError(f"the factory of architecture {name!r} returned {type(arch).__name__}, "
                        "not a MemoryArchitecture")
    return arch


__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "DualFormMemory",
    "FunctionalMemory",
    "KeyPath",
    "MLPMemory",
    "MatrixMemory",
    "MemoryArchitecture",
    "ReadCoefficients",
    "ResidualMLPMemory",
    "WriteCoefficients",
    "architecture_name",
    "make_architecture",
    "register_architecture",
]
