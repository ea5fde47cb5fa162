"""The core: the memory of the Titans and MIRAS papers, batched, chunk-parallel and exact.

Extension points (one class plus one registration each; see docs/design.md):
:func:`register_bias` (attentional biases), :func:`register_retention` (retention rules),
:func:`register_algorithm` (learning algorithms), :func:`register_architecture` (memory
networks), :func:`register_backend` (operators).
"""

from titans_memory.core.algorithms import (
    ALGORITHMS,
    ChunkCoefficients,
    ChunkEnd,
    GateSpec,
    GradientDescent,
    LearningAlgorithm,
    TokenStep,
    TokenUpdate,
    register_algorithm,
)
from titans_memory.core.architectures import (
    ARCHITECTURES,
    FunctionalMemory,
    MatrixMemory,
    MemoryArchitecture,
    ResidualMLPMemory,
    register_architecture,
)
from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import MemoryGates, NeuralMemory
from titans_memory.core.objectives import BIASES, AttentionalBias, register_bias
from titans_memory.core.ops import BACKENDS, register_backend
from titans_memory.core.presets import PRESETS, preset
from titans_memory.core.retention import RETENTIONS, Retention, register_retention
from titans_memory.core.rule import UpdateRule
from titans_memory.core.state import MemoryState

__all__ = [
    "ALGORITHMS",
    "ARCHITECTURES",
    "BACKENDS",
    "BIASES",
    "PRESETS",
    "RETENTIONS",
    "AttentionalBias",
    "ChunkCoefficients",
    "ChunkEnd",
    "GateSpec",
    "GradientDescent",
    "LearningAlgorithm",
    "FunctionalMemory",
    "MatrixMemory",
    "MemoryArchitecture",
    "MemoryConfig",
    "MemoryGates",
    "MemoryState",
    "NeuralMemory",
    "ResidualMLPMemory",
    "Retention",
    "TokenStep",
    "TokenUpdate",
    "UpdateRule",
    "preset",
    "register_algorithm",
    "register_architecture",
    "register_backend",
    "register_bias",
    "register_retention",
]
