"""titans-miras: neural long-term memory (Titans, MIRAS) in PyTorch.

Two layers:

* the demo layer (:class:`SurpriseMetric`, :class:`MemoryModule`, :class:`TitansMemoryLayer`,
  the synthetic data generators): small, one token at a time, made to teach;
* the core (:class:`NeuralMemory`, :class:`MemoryConfig`, :class:`MemoryState`): the memory of
  the papers, batched, multi-head, chunk-parallel, exact and streaming;
* the models (:class:`TitansLM`, :class:`ModelConfig`, :class:`ModelCache`): the Titans
  architectures MAC, MAG, MAL, LMM and a sliding-window baseline, built on the core.

The public names are imported on first use (PEP 562), so that importing a light submodule (the
``titans`` command's parser) does not import torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:  # the version is written once, in pyproject.toml
    __version__ = version("titans-miras")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> the module that defines it
_EXPORTS = {
    "MemoryConfig": "titans_memory.core.config",
    "NeuralMemory": "titans_memory.core.neural_memory",
    "PRESETS": "titans_memory.core.presets",
    "preset": "titans_memory.core.presets",
    "MemoryState": "titans_memory.core.state",
    "generate_frequency_shift": "titans_memory.demo.data",
    "generate_repeating_with_anomalies": "titans_memory.demo.data",
    "MemoryModule": "titans_memory.demo",
    "SurpriseMetric": "titans_memory.demo",
    "TitansMemoryLayer": "titans_memory.demo",
    "ModelCache": "titans_memory.models",
    "ModelConfig": "titans_memory.models",
    "TitansLM": "titans_memory.models",
}

__all__ = [
    "PRESETS",
    "MemoryConfig",
    "MemoryModule",
    "MemoryState",
    "ModelCache",
    "ModelConfig",
    "NeuralMemory",
    "SurpriseMetric",
    "TitansLM",
    "TitansMemoryLayer",
    "generate_frequency_shift",
    "generate_repeating_with_anomalies",
    "preset",
]

if TYPE_CHECKING:  # static tools (type checkers, IDEs) see the names without running the imports
    from titans_memory.core.config import MemoryConfig
    from titans_memory.core.neural_memory import NeuralMemory
    from titans_memory.core.presets import PRESETS, preset
    from titans_memory.core.state import MemoryState
    from titans_memory.demo import MemoryModule, SurpriseMetric, TitansMemoryLayer
    from titans_memory.demo.data import generate_frequency_shift, generate_repeating_with_anomalies
    from titans_memory.models import ModelCache, ModelConfig, TitansLM


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'titans_memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
