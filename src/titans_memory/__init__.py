"""titans-miras: neural long-term memory (Titans, MIRAS) in PyTorch.

Two layers:

* the demo layer (:class:`SurpriseMetric`, :class:`MemoryModule`, :class:`TitansMemoryLayer`,
  the synthetic data generators): small, one token at a time, made to teach;
* the core (:class:`NeuralMemory`, :class:`MemoryConfig`, :class:`MemoryState`): the memory of
  the papers, batched, multi-head, chunk-parallel, exact and streaming;
* the models (:class:`TitansLM`, :class:`ModelConfig`, :class:`ModelCache`): the Titans
  architectures MAC, MAG, MAL, LMM and a sliding-window baseline, built on the core.
"""

from importlib.metadata import PackageNotFoundError, version

from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.presets import PRESETS, preset
from titans_memory.core.state import MemoryState
from titans_memory.data import generate_frequency_shift, generate_repeating_with_anomalies
from titans_memory.demo import MemoryModule, SurpriseMetric, TitansMemoryLayer
from titans_memory.models import ModelCache, ModelConfig, TitansLM

try:  # the version is written once, in pyproject.toml
    __version__ = version("titans-miras")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

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
