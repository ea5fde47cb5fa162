"""``ModelCache``: what a :class:`~titans_memory.models.lm.TitansLM` carries from one call to the next.

Feeding a sequence in pieces with the cache gives the logits of one call, exactly, for any split.
The cache's size is bounded by the attention window (or the MAC segment) and by the memory: it
does not grow with the number of tokens seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from titans_memory.core.hope import HopeState
from titans_memory.core.state import MemoryState
from titans_memory.models.attention import KVCache
from titans_memory.models.config import ModelConfig


@dataclass(frozen=True)
class LayerCache:
    """One layer's carried state. Fields a layer does not use stay None.

    Attributes:
        attention: the keys and values its attention may still need: the last ``window - 1``
            tokens of a sliding window, or, in a MAC layer, the current segment's tokens so far.
        memory_tokens: MAC only: keys and values of the memory tokens ``h`` retrieved for the
            current segment's tokens so far.
        memory: the memory's state after the last token (its weights, momentum and convolution
            tails); None means the learned initial memory (no token yet).
        segment_memory: MAC only: the memory as it was at the current segment's start, which
            every token of the segment retrieves from; None means the initial memory.
        retrieve_inputs: MAC only: ``(B, <= conv_kernel - 1, dim)``, the layer's last inputs,
            which restart the retrieval's query convolution at the next piece.
        hope: HOPE only: the in-context weights of its self-modifying memory and CMS levels.
    """

    attention: KVCache | None = None
    memory_tokens: KVCache | None = None
    memory: MemoryState | None = None
    segment_memory: MemoryState | None = None
    retrieve_inputs: Tensor | None = None
    hope: HopeState | None = None

    def _map(self, kv_fn, state_fn, tensor_fn) -> LayerCache:
        def opt(fn, value):
            return None if value is None else fn(value)

        return LayerCache(
            attention=opt(kv_fn, self.attention),
            memory_tokens=opt(kv_fn, self.memory_tokens),
            memory=opt(state_fn, self.memory),
            segment_memory=opt(state_fn, self.segment_memory),
            retrieve_inputs=opt(tensor_fn, self.retrieve_inputs),
            hope=opt(state_fn, self.hope),
        )

    def tensors(self) -> list[Tensor]:
        """Every tensor held (memory states included)."""
        out: list[Tensor] = []
        for kv in (self.attention, self.memory_tokens):
            if kv is not None:
                out += [kv.keys, kv.values]
        for state in (self.memory, self.segment_memory):
            if state is not None:
                out += list(state.tensors().values())
        if self.retrieve_inputs is not None:
            out.append(self.retrieve_inputs)
        if self.hope is not None:
            out += list(self.hope.tensors().values())
        return out


@dataclass(frozen=True)
class ModelCache:
    """Every layer's :class:`LayerCache`, the stream position, and what the cache belongs to.

    Attributes:
        config: the :class:`ModelConfig` of the model that made it; a model with another config
            refuses it.
        batch_size: the number of streams.
        position: tokens consumed so far (rotary positions and MAC segments are aligned to it).
        dtype, device: of the activations that produced it.
        layers: one :class:`LayerCache` per block.

    It is part of the autograd graph when made with grad enabled: :meth:`detach` cuts it
    (truncated backprop through time).
    """

    config: ModelConfig
    batch_size: int
    position: int
    dtype: torch.dtype
    device: torch.device
    layers: tuple[LayerCache, ...]

    @classmethod
    def empty(cls, config: ModelConfig, batch_size: int, dtype: torch.dtype, device) -> ModelCache:
        """The cache of a fresh stream: no token seen, every memory at its learned initial state."""
        return cls(config, batch_size, 0, dtype, torch.device(device), tuple(LayerCache() for _ in range(config.depth)))

    def detach(self) -> ModelCache:
        """A copy cut from the autograd graph."""
        layers = tuple(
            lc._map(lambda kv: kv.detach(), lambda s: s.detach(), lambda t: t.detach()) for lc in self.layers
        )
        return replace(self, layers=layers)

    def to(self, device=None, dtype: torch.dtype | None = None) -> ModelCache:
        """Move (and cast) every tensor; the model must be moved alike to use it."""
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        layers = tuple(
            lc._map(lambda kv: kv.to(**kwargs), lambda s: s.to(**kwargs), lambda t: t.to(**kwargs))
            for lc in self.layers
        )
        return replace(
            self,
            layers=layers,
            dtype=dtype or self.dtype,
            device=torch.device(device) if device is not None else self.device,
        )

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors (a tensor shared by two fields counts once)."""
        seen: dict[int, int] = {}
        for lc in self.layers:
            for t in lc.tensors():
                seen[id(t)] = t.numel() * t.element_size()
        return sum(seen.values())

    def check(self, config: ModelConfig, batch_size: int, dtype: torch.dtype, device: torch.device) -> None:
        """Raise a ValueError naming what does not match the model and the input."""
        if self.config != config:
            raise ValueError(
                "cache was made by a model with another config; pass the cache returned by this "
                f"model (cache: arch={self.config.arch!r}, dim={self.config.dim}, depth={self.config.depth}; "
                f"model: arch={config.arch!r}, dim={config.dim}, depth={config.depth})"
            )
        if self.batch_size != batch_size:
            raise ValueError(
                f"cache holds {self.batch_size} streams but tokens has batch size {batch_size}"
            )
        if len(self.layers) != config.depth:
            raise ValueError(f"cache has {len(self.layers)} layers, the model {config.depth}")
        if self.dtype != dtype:
            raise ValueError(f"cache dtype {self.dtype} does not match the model's {dtype}")
        if self.device.type != device.type:
            raise ValueError(f"cache is on {self.device} but the model is on {device}")
