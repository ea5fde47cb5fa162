"""The demo layer: a surprise-gated MLP memory, one token at a time, made to teach.

* :class:`SurpriseMetric`: how unexpected an input is (error of a small online predictor);
* :class:`MemoryModule`: an MLP whose weights are the memory (read = forward, write = one step);
* :class:`TitansMemoryLayer`: both together, with momentum, forgetting and a bounded write gate;
* :mod:`titans_memory.demo.data`: the synthetic sequences the demo's scenarios feed it.

The public API is the original educational demo's (names, arguments, defaults, return types),
made numerically sound; see :class:`TitansMemoryLayer` for what changed and why.
"""

from titans_memory.demo.data import generate_frequency_shift, generate_repeating_with_anomalies
from titans_memory.demo.layer import TitansMemoryLayer
from titans_memory.demo.memory import MemoryModule
from titans_memory.demo.surprise import SurpriseMetric

__all__ = [
    "MemoryModule",
    "SurpriseMetric",
    "TitansMemoryLayer",
    "generate_frequency_shift",
    "generate_repeating_with_anomalies",
]
