"""The blocks of a Titans model (arXiv 2501.00663, section 4), one class per architecture.

Every block is pre-norm and residual, and ends with a SwiGLU MLP::

    x <- x + mixer(x)              (what differs between architectures)
    x <- x + MLP(RMSNorm(x))

and every block maps ``(x, LayerCache, position) -> (x, LayerCache)``: ``position`` is the
absolute position of ``x[:, 0]`` in the stream, and the cache carries whatever the block needs to
continue the stream exactly (attention keys and values, the memory's state).

==========  ===================================================================================
``SWA``     ``x + SWA(norm x)``: sliding-window attention with persistent tokens (the baseline)
``LMM``     ``x + M(norm x)``: the neural memory alone mixes the sequence
``MAG``     ``x + gate(SWA(u), M(u))``, ``u = norm x``: attention and memory side by side (sec. 4.2)
``MAL``     ``x + M(norm x)``, then ``x + SWA(norm x)``: memory, then attention (sec. 4.3)
``MAC``     per segment: retrieve, attend over ``[p | h | x]``, write, gate (sec. 4.1)
``HOPE``    self-modifying memory, then the CMS in place of the MLP (:mod:`titans_memory.models.hope`)
==========  ===================================================================================

:class:`ConvSWABlock` is the SWA block with the memory's short causal convolution on q, k, v:
the fair no-memory control of the long-context benchmarks (``TitansLM(config,
block_factory=conv_swa_blocks(kernel))``). The architecture names are written once, in
:data:`~titans_memory.models.config.Arch`; :data:`BLOCKS` maps each to its block class.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from titans_memory.core.config import MemoryConfig
from titans_memory.core.conv import causal_depthwise_conv
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.models.attention import Attention
from titans_memory.models.cache import LayerCache
from titans_memory.models.config import ARCHS, Arch, ModelConfig
from titans_memory.models.hope import HopeBlock


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    """``W_out (silu(x W_a) * x W_b)``: the gated MLP of every block."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_in = nn.Linear(dim, 2 * hidden, bias=False)
        self.w_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(nn.functional.silu(a) * b)


class MemoryGate(nn.Module):
    """``y ⊗ m``: the non-linear gate of MAG (eq. 28) and MAC (eq. 25).

    The paper normalises both branches with learnable vector-valued weights and then applies a
    non-linearity; here ``o = RMSNorm_y(y) * sigmoid(RMSNorm_m(m))``: the memory decides, per
    channel, how much of the attention output passes.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm_y = RMSNorm(dim, eps)
        self.norm_m = RMSNorm(dim, eps)

    def forward(self, y: Tensor, m: Tensor) -> Tensor:
        return self.norm_y(y) * torch.sigmoid(self.norm_m(m))


def _attention(cfg: ModelConfig) -> Attention:
    return Attention(cfg.dim, cfg.heads, cfg.window, cfg.persistent_tokens, cfg.rope_base)


def _memory(cfg: ModelConfig) -> NeuralMemory:
    mem_cfg: MemoryConfig = cfg.memory_config
    return NeuralMemory(mem_cfg, backend=cfg.backend, compile_step=cfg.compile_step)


class Block(nn.Module):
    """The part every block shares: the SwiGLU MLP after the mixer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.dim, cfg.mlp_hidden)

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        raise NotImplementedError

    def forward(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        """``x`` ``(B, T, dim)``, its first token at ``position``; returns the new ``x`` and cache."""
        x, cache = self.mix(x, cache, position)
        return x + self.mlp(self.mlp_norm(x)), cache


class SWABlock(Block):
    """Sliding-window attention with persistent tokens: the baseline, and every layer without memory."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = _attention(cfg)

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        y, kv = self.attn.sliding(self.norm(x), cache.attention, position)
        return x + y, LayerCache(attention=kv)


class LMMBlock(Block):
    """The neural memory as the only sequence mixer: ``x + M(norm x)`` (read after write, per token)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.memory = _memory(cfg)

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        y, state = self.memory(self.norm(x), cache.memory)
        return x + y, LayerCache(memory=state)


class MAGBlock(Block):
    """Memory as a gate (Titans sec. 4.2): attention and memory in parallel on the same input.

    With ``u = RMSNorm(x)``::

        y = SW-Attn*(u)        eq. 27: sliding window, persistent tokens prepended (eq. 26)
        m = M(u)               the memory read after each token's write
        o = y ⊗ m              eq. 28, see :class:`MemoryGate`
        x <- x + o

    The paper also prepends the persistent tokens to the memory's input; here they enter the
    attention only. For the memory they would be a constant prefix written at every stream's
    start, which only moves its initial state, and that state (``memory_init``) is learned already.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = _attention(cfg)
        self.memory = _memory(cfg)
        self.gate = MemoryGate(cfg.dim, cfg.norm_eps)

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        u = self.norm(x)
        y, kv = self.attn.sliding(u, cache.attention, position)
        m, state = self.memory(u, cache.memory)
        return x + self.gate(y, m), LayerCache(attention=kv, memory=state)


class MALBlock(Block):
    """Memory as a layer (Titans sec. 4.3): the memory, then sliding-window attention on its output.

    ::

        x <- x + M(RMSNorm(x))            eq. 30
        x <- x + SW-Attn(RMSNorm(x))      eq. 31, persistent tokens prepended (eq. 29)

    As in :class:`MAGBlock`, the persistent tokens enter the attention, not the memory.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.mem_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.memory = _memory(cfg)
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = _attention(cfg)

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        m, state = self.memory(self.mem_norm(x), cache.memory)
        x = x + m
        y, kv = self.attn.sliding(self.attn_norm(x), cache.attention, position)
        return x + y, LayerCache(attention=kv, memory=state)


class MACBlock(Block):
    """Memory as context (Titans sec. 4.1), in the paper's order: retrieve, attend, write, gate.

    The sequence is cut into segments ``S`` of ``C = segment`` tokens, aligned to the absolute
    position (segment ``s`` holds positions ``sC .. sC + C - 1``). With ``u = RMSNorm(x)``, for
    each segment, ``M`` being the memory as the previous segments left it::

        h = M*(q)             eq. 21: retrieve with the segment's queries q = u W_Q; no write
        S~ = [p | h | u]      eq. 22: persistent tokens, memory tokens, the segment
        y = Attn(S~)          eq. 23: causal inside the segment (see below)
        M <- M(y + u)         eq. 24: write the memory with the attention output and its residual
        o = y ⊗ M*(y + u)     eq. 25: read the written memory with it; gate (:class:`MemoryGate`)
        x <- x + o

    ``ModelConfig.mac_write`` picks what eq. 24 writes (and eq. 25 reads with). ``"y+u"`` (the
    default): the attention sublayer's output with its residual, the paper's ``y`` once the
    residual connections it leaves out of the equations are put back ("In all blocks, we use
    residual connections", section 4.4). ``"y"``: the equations read literally, attention's output
    alone; the memory then stores a token only once attention has learned to pass it through,
    and in training its far recall stalled (2-4% where ``"y+u"`` reached 81-100%). ``"u"``: the
    segment's input before attention, as titans-pytorch does (docs/evidence.md, "MAC diagnosis").

    **Causal by construction.** The paper states eqs. 24-25 per segment; taken literally, a token
    would see the writes of the tokens after it in its segment. Here eq. 24-25 is the memory's
    fused read-after-write (``NeuralMemory.forward(y)``): token ``t`` is written, then read with
    the memory holding the writes of tokens ``<= t`` only. In eq. 23 the query at ``t`` attends
    to ``p`` and to ``h_s``, ``u_s`` for ``s <= t`` in its segment (``h_s`` was retrieved with
    ``u_s``'s query, so it carries token ``s``).

    **A token in the middle of a segment**, then, retrieves from the memory as of the segment's
    start (no token of its own segment has been written into what it reads), and attends to its
    segment so far. Streaming follows from that: the cache carries the memory at the segment's
    start (``segment_memory``), the memory as written so far (``memory``), the keys and values of
    the segment so far, and the last ``conv_kernel - 1`` inputs ``u``. A piece that ends inside a
    segment leaves them there; the next piece continues the same segment, so pieces that cut
    segments give the logits of one call.

    The retrieval's query convolution runs over the ``u`` stream, while the memory's own state
    carries the convolution tails of the ``y`` stream it writes. So each retrieval restarts the
    query convolution from the last ``conv_kernel - 1`` inputs ``u`` (prepended, their outputs
    dropped); ``segment >= conv_kernel - 1`` guarantees those all exist once the first segment is
    over, and inside the first segment the memory's fresh state supplies the zeros before them.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.segment_size = cfg.segment
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = _attention(cfg)
        self.memory = _memory(cfg)
        self.gate = MemoryGate(cfg.dim, cfg.norm_eps)
        self.conv_context = cfg.memory_config.conv_kernel - 1
        self.write = cfg.mac_write

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        C, K1 = self.segment_size, self.conv_context
        u = self.norm(x)
        T = x.shape[1]
        segment_memory, memory = cache.segment_memory, cache.memory
        kv = None if cache.attention is None else (cache.memory_tokens, cache.attention)
        recent = cache.retrieve_inputs  # (B, <= K - 1, dim): the last inputs u
        outputs = []
        start = 0
        while start < T:
            pos = position + start
            stop = min(T, start + C - pos % C)  # the piece ends at the segment's end or at T
            u_piece = u[:, start:stop]
            # eq. 21: retrieve from the memory as of the segment start, restarting the query conv
            # from the last inputs of the u stream
            primed = u_piece if recent is None else torch.cat([recent, u_piece], dim=1)
            h, _ = self.memory.retrieve(primed, segment_memory)
            h = h[:, primed.shape[1] - u_piece.shape[1] :]
            # eqs. 22-23: attend over [p | h | u] inside the segment, causally
            y, kv = self.attn.segment(u_piece, h, kv, pos)
            # eqs. 24-25: write y, then read the written memory with y (per token, causal);
            # mac_write="u" / "y+u" write (and read with) the segment's input instead / as well
            w = y if self.write == "y" else u_piece if self.write == "u" else y + u_piece
            m, memory = self.memory(w, memory)
            outputs.append(self.gate(y, m))
            # a copy: a view of u would keep the whole call's inputs alive in the cache
            recent = primed[:, max(0, primed.shape[1] - K1) :].clone() if K1 else None
            if (position + stop) % C == 0:  # the segment is complete: the next one starts here
                segment_memory, kv = memory, None
            start = stop
        if outputs:
            x = x + torch.cat(outputs, dim=1)
        new_cache = LayerCache(
            attention=None if kv is None else kv[1],
            memory_tokens=None if kv is None else kv[0],
            memory=memory,
            segment_memory=segment_memory,
            retrieve_inputs=recent,
        )
        return x, new_cache


class ConvSWABlock(SWABlock):
    """The SWA block with a short causal convolution on q, k, v (the memory's, on attention).

    ``q, k, v = conv(u W_QKV)``, ``u = RMSNorm(x)``, each channel convolved over its last
    ``kernel`` tokens, then rotary positions and sliding-window attention as in :class:`SWABlock`.
    It is the fair no-memory control beside the memory models, whose q, k, v pass the same kind of
    convolution. Streams like every block: the cache's ``retrieve_inputs`` carries the last
    ``kernel - 1`` normalised inputs, whose projections restart the convolution on the next piece.

    Args:
        cfg: the model's sizes (as for :class:`SWABlock`).
        kernel: the convolution's width in tokens, >= 1 (1: a per-channel scale only).
    """

    def __init__(self, cfg: ModelConfig, kernel: int) -> None:
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
            raise ValueError(f"ConvSWABlock kernel must be an integer >= 1, got {kernel!r}")
        super().__init__(cfg)
        self.kernel = kernel
        bound = 1.0 / math.sqrt(kernel)
        self.conv_weight = nn.Parameter(torch.empty(3 * cfg.dim, kernel).uniform_(-bound, bound))
        with torch.no_grad():  # start close to no convolution: the current token dominates
            self.conv_weight[:, -1] += 1.0

    def mix(self, x: Tensor, cache: LayerCache, position: int) -> tuple[Tensor, LayerCache]:
        K1 = self.kernel - 1
        u = self.norm(x)  # (B, T, dim)
        recent = cache.retrieve_inputs  # (B, K - 1, dim): the last normalised inputs
        if recent is None:
            recent = u.new_zeros(u.shape[0], K1, u.shape[-1])
        primed = torch.cat([recent, u], dim=1)  # (B, K - 1 + T, dim)
        qkv = self.attn.to_qkv(primed)  # (B, K - 1 + T, 3 dim)
        tail, qkv = qkv[:, :K1], qkv[:, K1:]
        qkv, _ = causal_depthwise_conv(qkv, self.conv_weight, tail)  # (B, T, 3 dim)
        y, kv = self.attn.sliding(u, cache.attention, position, qkv=qkv)
        new_recent = primed[:, primed.shape[1] - K1 :]
        return x + y, LayerCache(attention=kv, retrieve_inputs=new_recent)


#: The block of each architecture (a layer with memory); the keys are exactly ``ARCHS``.
BLOCKS: dict[Arch, type[nn.Module]] = {
    "swa": SWABlock,
    "lmm": LMMBlock,
    "mag": MAGBlock,
    "mal": MALBlock,
    "mac": MACBlock,
    "hope": HopeBlock,
}
if set(BLOCKS) != set(ARCHS):  # a name added to Arch needs its block here, and only then
    raise RuntimeError(f"BLOCKS {sorted(BLOCKS)} and ARCHS {sorted(ARCHS)} name different architectures")

#: Builds the block of layer ``layer`` of a model: ``factory(cfg, layer) -> Block``.
BlockFactory = Callable[[ModelConfig, int], nn.Module]


def make_block(cfg: ModelConfig, layer: int) -> nn.Module:
    """The block of layer ``layer``: the architecture's if the layer has memory, else SWA."""
    if layer in cfg.layers_with_memory:
        return BLOCKS[cfg.arch](cfg)
    return SWABlock(cfg)


def conv_swa_blocks(kernel: int) -> BlockFactory:
    """A block factory for ``arch="swa"`` models whose every block is a :class:`ConvSWABlock`.

    ``kernel == 1`` gives plain :class:`SWABlock` s (no convolution), as :func:`make_block` does.
    """
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"conv_swa_blocks kernel must be an integer >= 1, got {kernel!r}")

    def factory(cfg: ModelConfig, layer: int) -> Block:
        if cfg.arch != "swa":
            raise ValueError(f"conv_swa_blocks builds the blocks of arch='swa' models, got arch={cfg.arch!r}")
        return ConvSWABlock(cfg, kernel) if kernel > 1 else SWABlock(cfg)

    return factory
