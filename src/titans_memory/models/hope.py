"""The HOPE block (Nested Learning, arXiv 2512.24695, sec. 8.3, eqs. 94-97).

HOPE is the self-modifying Titans followed by the continuum memory system; here, pre-norm and
residual like every block of :mod:`titans_memory.models.blocks`::

    x <- x + SMT(RMSNorm(x))             eqs. 94-96: o_t = M_memory(q_t), the memories written in context
    u = RMSNorm(x);  x <- x + CMS(u) - u  eq. 97: y_t = MLP^(f_k)(... MLP^(f_1)(o_t))

The CMS replaces the block's feed-forward MLP (its levels are residual MLPs themselves, so the
chain's output minus its input is what it adds to the stream). There is no attention: the
self-modifying memory is the only sequence mixer, as in the paper's HOPE (not Hope-Attention).
"""

from __future__ import annotations

from torch import Tensor, nn

from titans_memory.core.hope import ContinuumMemory, HopeState, SelfModifyingMemory
from titans_memory.models.cache import LayerCache
from titans_memory.models.config import ModelConfig


class HopeBlock(nn.Module):
    """Self-modifying memory, then the CMS; maps ``(x, LayerCache, position) -> (x, LayerCache)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hope = cfg.hope_config
        # torch's RMSNorm computes the blocks' x / sqrt(mean(x^2) + eps) * weight; blocks.py
        # imports this module, so this one does not import blocks.py
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.smt = SelfModifyingMemory(cfg.dim, cfg.heads, hope)
        self.cms_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.cms = ContinuumMemory(cfg.dim, hope)

    def forward(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        """``x`` ``(B, T, dim)``, its first token at ``position``; returns the new ``x`` and cache."""
        state = cache.hope or HopeState()
        y, smt = self.smt(self.norm(x), state.smt)
        x = x + y
        u = self.cms_norm(x)
        c, cms = self.cms(u, state.cms)
        return x + (c - u), LayerCache(hope=HopeState(smt, cms))
