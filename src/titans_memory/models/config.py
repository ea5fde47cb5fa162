"""``ModelConfig``: one typed configuration for :class:`~titans_memory.models.lm.TitansLM`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal, get_args

from titans_memory.core.config import MemoryConfig
from titans_memory.core.hope import HopeConfig
from titans_memory.core.ops import get_backend

Arch = Literal["mac", "mag", "mal", "lmm", "swa", "hope"]
ARCHS: tuple[str, ...] = get_args(Arch)  # the names are written once, in Arch

#: What MAC's memory writes (Titans eq. 24): ``"y"`` the attention output (the paper),
#: ``"u"`` the segment's normalised input before attention (titans-pytorch's reading),
#: ``"y+u"`` their sum.
MACWrite = Literal["y", "u", "y+u"]
MAC_WRITES: tuple[str, ...] = get_args(MACWrite)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelConfig:
    """A Titans language model (arXiv 2501.00663, section 4): which architecture, and its sizes.

    ``arch`` picks how the neural memory meets attention in a layer that has memory:

    * ``"mac"`` memory as context: per segment of ``segment`` tokens, retrieve from the memory,
      attend over ``[persistent | retrieved | segment]``, write the attention output;
    * ``"mag"`` memory as gate: sliding-window attention and the memory side by side, gated;
    * ``"mal"`` memory as layer: the memory, then sliding-window attention;
    * ``"lmm"`` the memory alone mixes the sequence;
    * ``"swa"`` no memory anywhere: the sliding-window Transformer baseline;
    * ``"hope"`` HOPE (Nested Learning, arXiv 2512.24695): the self-modifying memory, then the
      continuum memory system in place of the MLP; no attention (``hope``: its sizes, docs/hope.md).

    Layers not in ``memory_layers`` are plain sliding-window attention blocks (the SWA block),
    whatever the architecture.
    """

    arch: Arch = "mac"  # how memory and attention are combined (see above)
    vocab_size: int = 256  # token ids are 0 .. vocab_size - 1 (256: bytes)
    dim: int = 256  # model width; the memory's MemoryConfig.dim must equal it
    depth: int = 4  # number of blocks
    heads: int = 4  # attention heads, each of dim // heads channels (even, for rotary)
    window: int = 128  # sliding window: a query sees itself and the window - 1 tokens before it
    segment: int = 128  # MAC's segment length C: attention runs inside one segment
    persistent_tokens: int = 4  # N_p learnable tokens every query attends to (0: none)
    memory_layers: tuple[int, ...] | None = None  # indices of the layers with memory; None: all
    memory: MemoryConfig | None = None  # the memory of every memory layer; None: MemoryConfig(dim, heads)
    mlp_expansion: float = 4.0  # hidden width of the SwiGLU MLP is round(2/3 * expansion * dim)
    rope_base: float = 10000.0  # rotary positions: frequencies base^(-2i/d)
    norm_eps: float = 1e-6  # RMSNorm epsilon
    hope: HopeConfig | None = None  # arch="hope": its memories' sizes and frequencies; None: HopeConfig()
    backend: str = "chunked"  # the memory operator (core.ops.BACKENDS: chunked, chunked_checkpoint, recurrent, ...)
    compile_step: bool | str = False  # torch.compile the chunk step (True: inductor, or a torch.compile backend)
    mac_write: MACWrite = "y+u"  # what MAC's memory writes (eq. 24), see MAC_WRITES; "y+u": y with its residual (paper §4.4)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        for name in ("vocab_size", "dim", "depth", "heads", "window", "segment"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.persistent_tokens) or self.persistent_tokens < 0:
            raise ValueError(
                f"ModelConfig.persistent_tokens must be an integer >= 0, got {self.persistent_tokens!r}"
            )
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(
                f"ModelConfig.dim ({self.dim}) must be divisible by heads ({self.heads}) into an even "
                "number of channels per head (rotary positions rotate pairs of channels)"
            )
        if not (self.mlp_expansion > 0 and math.isfinite(self.mlp_expansion)):
            raise ValueError(f"ModelConfig.mlp_expansion must be > 0, got {self.mlp_expansion!r}")
        if not (self.rope_base > 1 and math.isfinite(self.rope_base)):
            raise ValueError(f"ModelConfig.rope_base must be > 1, got {self.rope_base!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"ModelConfig.norm_eps must be > 0, got {self.norm_eps!r}")
        try:
            get_backend(self.backend)  # a registered operator: the registry's own check
        except ValueError as err:
            raise ValueError(f"ModelConfig.{err}") from None
        if not isinstance(self.compile_step, bool | str) or self.compile_step == "":
            raise TypeError(
                f"ModelConfig.compile_step must be True, False or a torch.compile backend name, got {self.compile_step!r}"
            )
        if self.mac_write not in MAC_WRITES:
            raise ValueError(
                f"ModelConfig.mac_write must be one of {', '.join(map(repr, MAC_WRITES))}; got {self.mac_write!r}"
            )
        if self.memory_layers is not None:
            layers = self.memory_layers
            if isinstance(layers, list):  # accept a list, store a tuple (the config is hashable)
                layers = tuple(layers)
                object.__setattr__(self, "memory_layers", layers)
            if not isinstance(layers, tuple) or not all(_is_int(i) for i in layers):
                raise TypeError(
                    f"ModelConfig.memory_layers must be a tuple of layer indices or None, got {layers!r}"
                )
            bad = [i for i in layers if not 0 <= i < self.depth]
            if bad or len(set(layers)) != len(layers):
                raise ValueError(
                    f"ModelConfig.memory_layers must be distinct indices in 0..{self.depth - 1}, got {layers!r}"
                )
            if self.arch == "swa" and layers:
                raise ValueError("ModelConfig.memory_layers must be empty or None for arch='swa' (no memory)")
        if self.memory is not None:
            if not isinstance(self.memory, MemoryConfig):
                raise TypeError(f"ModelConfig.memory must be a MemoryConfig or None, got {type(self.memory).__name__}")
            if self.memory.dim != self.dim:
                raise ValueError(
                    f"ModelConfig.memory.dim ({self.memory.dim}) must equal ModelConfig.dim ({self.dim}); "
                    "e.g. preset(name, dim=...)"
                )
        if self.hope is not None and not isinstance(self.hope, HopeConfig):
            raise TypeError(f"ModelConfig.hope must be a HopeConfig or None, got {type(self.hope).__name__}")
        if self.arch == "mac" and self.has_memory:
            kernel = self.memory_config.conv_kernel
            if self.segment < kernel - 1:
                raise ValueError(
                    f"ModelConfig.segment ({self.segment}) must be >= memory.conv_kernel - 1 ({kernel - 1}) "
                    "for arch='mac': each segment's retrieval restarts the query convolution from the "
                    "layer's last conv_kernel - 1 inputs, which must all lie in the previous segments"
                )

    # ------------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.dim // self.heads

    @property
    def memory_config(self) -> MemoryConfig:
        """The memory's config: ``memory``, or ``MemoryConfig(dim=dim, heads=heads)``."""
        return self.memory if self.memory is not None else MemoryConfig(dim=self.dim, heads=self.heads)

    @property
    def hope_config(self) -> HopeConfig:
        """HOPE's config: ``hope``, or ``HopeConfig()``."""
        return self.hope if self.hope is not None else HopeConfig()

    @property
    def layers_with_memory(self) -> tuple[int, ...]:
        """The indices of the layers that hold a memory, sorted (empty for ``"swa"``)."""
        if self.arch == "swa":
            return ()
        if self.memory_layers is None:
            return tuple(range(self.depth))
        return tuple(sorted(self.memory_layers))

    @property
    def has_memory(self) -> bool:
        return bool(self.layers_with_memory)

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the SwiGLU MLP (2/3 of ``expansion * dim`` keeps its size at ``expansion``)."""
        return max(1, int(round(2 * self.mlp_expansion * self.dim / 3)))

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["memory"] = None if self.memory is None else self.memory.to_dict()
        out["memory_layers"] = None if self.memory_layers is None else list(self.memory_layers)
        out["hope"] = None if self.hope is None else self.hope.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown fields {sorted(unknown)}")
        data = dict(data)
        if isinstance(data.get("memory"), dict):
            data["memory"] = MemoryConfig.from_dict(data["memory"])
        if isinstance(data.get("hope"), dict):
            data["hope"] = HopeConfig.from_dict(data["hope"])
        if isinstance(data.get("memory_layers"), list):
            data["memory_layers"] = tuple(data["memory_layers"])
        return cls(**data)
