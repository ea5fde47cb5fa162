"""Titans models (arXiv 2501.00663, section 4): MAC, MAG, MAL, LMM and the SWA baseline.

``TitansLM(ModelConfig(arch=...))`` is a causal language model whose layers put the core's
:class:`~titans_memory.core.neural_memory.NeuralMemory` beside sliding-window attention with
persistent tokens; ``forward(tokens, cache)`` streams exactly, ``generate`` samples with the cache.
"""

from titans_memory.models.attention import Attention, KVCache
from titans_memory.models.blocks import (
    BLOCKS,
    ConvSWABlock,
    LMMBlock,
    MACBlock,
    MAGBlock,
    MALBlock,
    MemoryGate,
    RMSNorm,
    SWABlock,
    SwiGLU,
    conv_swa_blocks,
)
from titans_memory.models.cache import LayerCache, ModelCache
from titans_memory.models.config import ARCHS, ModelConfig
from titans_memory.models.lm import TitansLM, sample_logits

__all__ = [
    "ARCHS",
    "BLOCKS",
    "ConvSWABlock",
    "Attention",
    "KVCache",
    "LMMBlock",
    "LayerCache",
    "MACBlock",
    "MAGBlock",
    "MALBlock",
    "MemoryGate",
    "ModelCache",
    "ModelConfig",
    "RMSNorm",
    "SWABlock",
    "SwiGLU",
    "TitansLM",
    "conv_swa_blocks",
    "sample_logits",
]
