"""``MemoryState``: everything needed to continue a stream exactly where it stopped."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from titans_memory._tensors import all_finite
from titans_memory.core.ops.common import MemoryOpState

FORMAT = "titans-miras/MemoryState/3"
_FORMAT_V2 = "titans-miras/MemoryState/2"  # no carried tensors
_FORMAT_V1 = "titans-miras/MemoryState/1"  # one conv tail for q, k and v together, no carried tensors
_CARRIED = "carried."  # prefix of the carried tensors' names on disk
_GROUPS = ("weights", "momentum", "anchor")


@dataclass(frozen=True)
class MemoryState:
    """The state of a :class:`~titans_memory.core.neural_memory.NeuralMemory` between calls.

    A state belongs to one batch of streams: ``weights[l]`` is ``(batch, heads, d_in, d_out)``.

    Attributes:
        weights: the memory M_t after the last token written, one tensor per memory layer.
        momentum: the surprise S_t (momentum of the gradient steps), same shapes.
        anchor: where the current chunk's gradients are taken (Titans sec. 3.2): the weights at
            the start of the current chunk, and for a ``decayed_gradient`` rule (Gated DeltaNet)
            those weights times the decay since the chunk start. Equal to ``weights`` when
            ``offset == 0``.
        query_tail: ``(batch, conv_kernel - 1, heads * head_dim)``, the last inputs of the causal
            convolution on the query path (None when ``conv_kernel == 1``). Advanced by
            ``retrieve`` and ``forward``.
        kv_tail: ``(batch, conv_kernel - 1, 2 * heads * head_dim)``, the same for keys and values.
            Advanced by ``store`` and ``forward``. (MAC reads and writes with different inputs, so
            the two paths keep separate tails.)
        position: tokens written since the state was fresh.
        chunk_size: the chunk size the state was produced with; chunks are aligned to ``position``.
        carried: the named tensors the learning algorithm and the architecture declare
            (``UpdateRule.carried_shapes``), ``(batch, heads, ...)`` each: e.g. a tail of the last
            keys and values, or a second memory. Empty for the built-in algorithms.

    When it resets: never by itself. ``forward(x)`` without a state starts from the learned
    initial memory; pass the returned state back to continue the same streams. It is part of the
    autograd graph: call :meth:`detach` between calls to truncate backpropagation through time.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]
    anchor: tuple[Tensor, ...]
    query_tail: Tensor | None
    kv_tail: Tensor | None
    position: int
    chunk_size: int = field(default=64)
    carried: dict[str, Tensor] = field(default_factory=dict)

    @property
    def offset(self) -> int:
        """Tokens of the current chunk already written (0 at a chunk boundary)."""
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
        for name in _GROUPS:
            for i, t in enumerate(getattr(self, name)):
                out[f"{name}.{i}"] = t
        for name in ("query_tail", "kv_tail"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name, t in self.carried.items():
            out[_CARRIED + name] = t
        return out

    def detach(self) -> MemoryState:
        """A copy cut from the autograd graph (truncated backprop across calls)."""
        return self._map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> MemoryState:
        """Move or cast every tensor, as ``Tensor.to``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def replace(self, **changes) -> MemoryState:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def _map(self, fn) -> MemoryState:
        return MemoryState(
            weights=tuple(fn(t) for t in self.weights),
            momentum=tuple(fn(t) for t in self.momentum),
            anchor=tuple(fn(t) for t in self.anchor),
            query_tail=None if self.query_tail is None else fn(self.query_tail),
            kv_tail=None if self.kv_tail is None else fn(self.kv_tail),
            position=self.position,
            chunk_size=self.chunk_size,
            carried={name: fn(t) for name, t in self.carried.items()},
        )

    # --- validation ----------------------------------------------------------------------------------
    def validate(self, *, check_finite: bool = True) -> MemoryState:
        """Raise ``ValueError`` naming the field if the state is malformed; return it otherwise.

        Checks the types, that ``position >= 0`` and ``chunk_size >= 1``, that every group has one
        tensor per layer with matching shapes, dtype and device, and (``check_finite``) that no
        tensor holds NaN or Inf.
        """
        for name in ("position", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"MemoryState.{name} must be an integer, got {value!r}")
        if self.position < 0:
            raise ValueError(f"MemoryState.position must be >= 0, got {self.position}")
        if self.chunk_size < 1:
            raise ValueError(f"MemoryState.chunk_size must be >= 1, got {self.chunk_size}")
        if not isinstance(self.carried, dict) or not all(
            isinstance(k, str) and k and isinstance(t, Tensor) for k, t in self.carried.items()
        ):
            raise ValueError("MemoryState.carried must be a dict from non-empty names to tensors")
        for name in _GROUPS:
            group = getattr(self, name)
            if not isinstance(group, tuple) or not group or not all(isinstance(t, Tensor) for t in group):
                raise ValueError(f"MemoryState.{name} must be a non-empty tuple of tensors, got {type(group).__name__}")
        shapes = [tuple(t.shape) for t in self.weights]
        for name in ("momentum", "anchor"):
            got = [tuple(t.shape) for t in getattr(self, name)]
            if got != shapes:
                raise ValueError(f"MemoryState.{name} has shapes {got}, but weights has {shapes}")
        if any(len(s) != 4 for s in shapes) or len({s[:2] for s in shapes}) != 1:
            raise ValueError(f"MemoryState.weights must be (batch, heads, d_in, d_out) per layer, got {shapes}")
        ref = self.weights[0]
        for name, t in self.tensors().items():
            if t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError(
                    f"MemoryState.{name} is {t.dtype} on {t.device}, but weights.0 is {ref.dtype} on {ref.device}"
                )
        for name in ("query_tail", "kv_tail"):
            tail = getattr(self, name)
            if tail is not None and (tail.dim() != 3 or tail.shape[0] != ref.shape[0]):
                raise ValueError(
                    f"MemoryState.{name} must be (batch={ref.shape[0]}, conv_kernel - 1, channels), "
                    f"got {tuple(tail.shape)}"
                )
        for name, t in self.carried.items():
            if t.dim() < 2 or tuple(t.shape[:2]) != tuple(ref.shape[:2]):
                raise ValueError(
                    f"MemoryState.carried[{name!r}] must be (batch={ref.shape[0]}, heads={ref.shape[1]}, ...), "
                    f"got {tuple(t.shape)}"
                )
        if check_finite:
            for name, t in self.tensors().items():
                if not all_finite(t):
                    raise ValueError(f"MemoryState.{name} contains NaN or Inf")
        return self

    # --- bridge to the operators, which see (batch * heads) independent memories ---------------
    def to_op_state(self) -> MemoryOpState:
        def flat(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.reshape(-1, *t.shape[2:]) for t in ts)

        carried = {name: t.reshape(-1, *t.shape[2:]) for name, t in self.carried.items()}
        return MemoryOpState(flat(self.weights), flat(self.momentum), flat(self.anchor), self.offset, carried)

    def with_op_state(self, op: MemoryOpState, written: int) -> MemoryState:
        """This state after an operator wrote ``written`` more tokens (tails unchanged)."""
        batch = self.batch_size

        def unflat(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.reshape(batch, -1, *t.shape[1:]) for t in ts)

        return replace(
            self,
            weights=unflat(op.weights),
            momentum=unflat(op.momentum),
            anchor=unflat(op.anchor),
            position=self.position + written,
            carried={name: t.reshape(batch, -1, *t.shape[1:]) for name, t in op.carried.items()},
        )

    # --- save / load: safetensors, never executes code -----------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the state to a ``.safetensors`` file (tensors and plain-text metadata only)."""
        from safetensors.torch import save_file

        target = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(parent):
            raise ValueError(f"cannot save the state to {target!r}: the directory {parent!r} does not exist")
        if os.path.isdir(target):
            raise ValueError(f"cannot save the state to {target!r}: it is a directory")
        # clone: safetensors refuses tensors that share memory (anchor is weights at offset 0)
        tensors = {k: v.detach().contiguous().clone().cpu() for k, v in self.tensors().items()}
        meta = {
            "format": FORMAT,
            "position": str(self.position),
            "chunk_size": str(self.chunk_size),
            "layers": str(len(self.weights)),
        }
        save_file(tensors, target, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> MemoryState:
        """Read a state written by :meth:`save` (format 3; format 2, without carried tensors; or
        format 1, whose single conv tail is split into the query and key/value tails). Plain
        tensors and text; no code is executed. Whether the carried tensors are those a memory
        expects is checked when the state is handed to it (a clear error naming the field).

        Raises:
            ValueError: the path is not a file, not a safetensors file, not a MemoryState, or a
                field is missing or malformed (the message names it).
        """
        from safetensors import SafetensorError

        source, handle = open_state_file(path, "MemoryState", device)
        with handle as f:
            meta = f.metadata() or {}
            fmt = meta.get("format")
            if fmt not in (FORMAT, _FORMAT_V2, _FORMAT_V1):
                raise ValueError(f"{source!r} is not a MemoryState file (metadata {json.dumps(meta)})")
            layers = int_field(meta, "layers", source, minimum=1)
            position = int_field(meta, "position", source, minimum=0)
            chunk_size = int_field(meta, "chunk_size", source, minimum=1)
            names = set(f.keys())

            def get(name: str) -> Tensor:
                if name not in names:
                    raise ValueError(f"{source!r}: the MemoryState tensor {name!r} is missing")
                try:
                    return f.get_tensor(name)
                except (SafetensorError, OSError, ValueError, RuntimeError) as err:
                    raise ValueError(f"{source!r}: the tensor {name!r} cannot be read: {err}") from err

            groups = {name: tuple(get(f"{name}.{i}") for i in range(layers)) for name in _GROUPS}
            if fmt == _FORMAT_V1:
                tail = get("conv_tail") if "conv_tail" in names else None
                inner = None if tail is None else tail.shape[-1] // 3  # the layout was [q | k | v]
                query_tail = None if tail is None else tail[..., :inner].contiguous()
                kv_tail = None if tail is None else tail[..., inner:].contiguous()
            else:
                query_tail = get("query_tail") if "query_tail" in names else None
                kv_tail = get("kv_tail") if "kv_tail" in names else None
            carried = {}
            if fmt == FORMAT:
                carried = {name[len(_CARRIED):]: get(name) for name in sorted(names) if name.startswith(_CARRIED)}
            known = {f"{g}.{i}" for g in _GROUPS for i in range(layers)} | {"query_tail", "kv_tail", "conv_tail"}
            unknown = sorted(n for n in names - known if not n.startswith(_CARRIED) or fmt != FORMAT)
            if unknown:
                raise ValueError(f"{source!r}: unexpected tensors {unknown} in a MemoryState file")
        state = cls(**groups, query_tail=query_tail, kv_tail=kv_tail, position=position, chunk_size=chunk_size,
                    carried=carried)
        return state.validate()


def open_state_file(path: str | os.PathLike, kind: str, device: str | torch.device = "cpu"):
    """``(source, handle)``: a state file of ``kind`` (for the messages) opened with safetensors.

    A path that is not a file, or a file safetensors cannot read, is a ``ValueError`` naming it.
    Shared by every state that saves itself (:class:`MemoryState`, HOPE's ``HopeState``).
    """
    from safetensors import SafetensorError, safe_open

    source = os.fspath(path)
    if not os.path.isfile(source):
        what = "a directory, not a file" if os.path.isdir(source) else "not a file"
        raise ValueError(f"cannot load a {kind} from {source!r}: it is {what}")
    try:
        handle = safe_open(source, framework="pt", device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{source!r} is not a readable safetensors file: {err}") from err
    return source, handle


def int_field(meta: dict, name: str, source: str, minimum: int, kind: str = "MemoryState") -> int:
    """The integer metadata field ``name`` of the state file ``source``, at least ``minimum``."""
    raw = meta.get(name)
    if raw is None:
        raise ValueError(f"{source!r}: the {kind} field {name!r} is missing")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{source!r}: the {kind} field {name!r} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{source!r}: the {kind} field {name!r} must be >= {minimum}, got {value}")
    return value
