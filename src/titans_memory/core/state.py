"""``MemoryState``: everything needed to continue a stream exactly where it stopped."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from torch import Tensor

from titans_memory.core.ops.common import MemoryOpState

_FORMAT = "titans-miras/MemoryState/1"


@dataclass(frozen=True)
class MemoryState:
    """The state of a :class:`~titans_memory.core.neural_memory.NeuralMemory` between calls.

    A state belongs to one batch of streams: ``weights[l]`` is ``(batch, heads, d_in, d_out)``.

    Attributes:
        weights: the memory M_t after the last token seen, one tensor per memory layer.
        momentum: the surprise S_t (momentum of the gradient steps), same shapes.
        anchor: the weights at the start of the current chunk; every gradient inside a chunk is
            taken there (Titans sec. 3.2). Equal to ``weights`` when ``offset == 0``.
        conv_tail: ``(batch, conv_kernel - 1, 3 * heads * head_dim)``, the last inputs of the causal
            convolution on q, k, v (None when ``conv_kernel == 1``).
        position: tokens consumed since the state was fresh.
        chunk_size: the chunk size the state was produced with; chunks are aligned to ``position``.

    When it resets: never by itself. ``forward(x)`` without a state starts from the learned
    initial memory; pass the returned state back to continue the same streams. It is part of the
    autograd graph: call :meth:`detach` between calls to truncate backpropagation through time.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]
    anchor: tuple[Tensor, ...]
    conv_tail: Tensor | None
    position: int
    chunk_size: int = field(default=64)

    @property
    def offset(self) -> int:
        """Tokens of the current chunk already consumed (0 at a chunk boundary)."""
        return self.position % self.chunk_size

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def tensors(self) -> dict[str, Tensor]:
        """All tensors by name (the names used on disk)."""
        out: dict[str, Tensor] = {}
        for name in ("weights", "momentum", "anchor"):
            for i, t in enumerate(getattr(self, name)):
                out[f"{name}.{i}"] = t
        if self.conv_tail is not None:
            out["conv_tail"] = self.conv_tail
        return out

    def detach(self) -> MemoryState:
        """A copy cut from the autograd graph (truncated backprop across calls)."""
        return self._map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> MemoryState:
        """Move or cast every tensor, as ``Tensor.to``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def _map(self, fn) -> MemoryState:
        return MemoryState(
            weights=tuple(fn(t) for t in self.weights),
            momentum=tuple(fn(t) for t in self.momentum),
            anchor=tuple(fn(t) for t in self.anchor),
            conv_tail=None if self.conv_tail is None else fn(self.conv_tail),
            position=self.position,
            chunk_size=self.chunk_size,
        )

    # --- bridge to the operators, which see (batch * heads) independent memories ---------------
    def to_op_state(self) -> MemoryOpState:
        def flat(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.reshape(-1, *t.shape[2:]) for t in ts)

        return MemoryOpState(flat(self.weights), flat(self.momentum), flat(self.anchor), self.offset)

    @classmethod
    def from_op_state(
        cls, op: MemoryOpState, batch: int, conv_tail: Tensor | None, position: int, chunk_size: int
    ) -> MemoryState:
        def unflat(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.reshape(batch, -1, *t.shape[1:]) for t in ts)

        return cls(unflat(op.weights), unflat(op.momentum), unflat(op.anchor), conv_tail, position, chunk_size)

    # --- save / load: safetensors, never executes code -----------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the state to a ``.safetensors`` file (tensors and plain-text metadata only)."""
        from safetensors.torch import save_file

        # clone: safetensors refuses tensors that share memory (anchor is weights at offset 0)
        tensors = {k: v.detach().contiguous().clone().cpu() for k, v in self.tensors().items()}
        meta = {
            "format": _FORMAT,
            "position": str(self.position),
            "chunk_size": str(self.chunk_size),
            "layers": str(len(self.weights)),
        }
        save_file(tensors, os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> MemoryState:
        """Read a state written by :meth:`save`. Plain tensors and text; no code is executed."""
        from safetensors import SafetensorError, safe_open

        try:
            handle = safe_open(os.fspath(path), framework="pt", device=str(device))
        except SafetensorError as err:
            raise ValueError(f"{os.fspath(path)!r} is not a safetensors file: {err}") from err
        with handle as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{os.fspath(path)!r} is not a MemoryState file (metadata {json.dumps(meta)})")
            layers = int(meta["layers"])
            names = set(f.keys())

            def group(name: str) -> tuple[Tensor, ...]:
                return tuple(f.get_tensor(f"{name}.{i}") for i in range(layers))

            return cls(
                weights=group("weights"),
                momentum=group("momentum"),
                anchor=group("anchor"),
                conv_tail=f.get_tensor("conv_tail") if "conv_tail" in names else None,
                position=int(meta["position"]),
                chunk_size=int(meta["chunk_size"]),
            )
