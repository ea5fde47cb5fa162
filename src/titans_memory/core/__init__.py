"""The core: the memory of the Titans and MIRAS papers, batched, chunk-parallel and exact."""

from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.presets import PRESETS, preset
from titans_memory.core.state import MemoryState

__all__ = ["PRESETS", "MemoryConfig", "MemoryState", "NeuralMemory", "preset"]
