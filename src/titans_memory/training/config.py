"""``TrainConfig``: one typed configuration for ``titans train`` (model, data, optimiser, run)."""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from titans_memory.core.presets import PRESETS, preset
from titans_memory.models.config import ARCHS, ModelConfig


def read_json_file(
    path: Path, what: str, *, error: type[ValueError] = ValueError, missing: str | None = None
) -> object:
    """The parsed JSON of ``path``; an unreadable file or invalid JSON raises ``error`` naming
    ``what`` and the path (``missing``: the message for a file that does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        if missing is not None and isinstance(err, FileNotFoundError):
            raise error(missing) from None
        raise error(f"cannot read {what} {str(path)!r}: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{what} {str(path)!r} is not valid JSON: {err}") from None

PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on, printed in full at its start and stored in each checkpoint.

    The model fields are the :class:`~titans_memory.models.config.ModelConfig` of the model (its
    memory is the MIRAS preset ``memory_preset`` at width ``dim``); the data fields say what is
    read and how; the rest is the optimiser, the schedule and the bookkeeping of the run.

    **Batches and streams.** A step reads ``batch_size`` sequences of ``seq_len`` tokens (across all
    processes and accumulation steps together). Each sequence comes from its own *stream*: a
    contiguous walk through that stream's share of the training documents, so consecutive steps
    continue the same text. The model's cache (the memory state, the attention's keys) is carried
    from one segment of a stream to the next for ``state_segments`` segments, detached in between
    (truncated backpropagation through time), then restarted fresh. Memory models learn to use a
    memory written over ``seq_len * state_segments`` tokens this way, at the cost of one segment's
    activations.
    """

    # --- model --------------------------------------------------------------------------------
    arch: str = "mac"  # mac, mag, mal, lmm or swa (see ModelConfig)
    dim: int = 128  # model width
    depth: int = 2  # number of blocks
    heads: int = 4  # attention heads (and memory heads); dim // heads must be even
    window: int = 128  # sliding-window attention: tokens a query sees, itself included
    segment: int = 128  # MAC's segment length C
    persistent_tokens: int = 4  # learnable tokens every attention query sees
    memory_preset: str = "titans"  # the MIRAS preset of every memory (titans presets lists them)
    memory_chunk: int = 16  # tokens whose memory gradients share the chunk-start weights
    memory_layers: str | None = None  # comma-separated layer indices with memory, e.g. "1,3"; None: all
    backend: str = "chunked"  # the memory operator: a name in titans_memory.core.ops.BACKENDS
    compile_step: bool | str = False  # torch.compile the memory's chunk step (true, or a torch.compile backend)
    tokenizer: str | None = None  # None: bytes (vocabulary 256); else an installed HF tokenizer name or path
    # --- data ---------------------------------------------------------------------------------
    data: str = "stdlib"  # "stdlib" (Python's own sources), a text file or folder, or "hf:NAME[:CONFIG]"
    held_out_fraction: float = 0.05  # share of the documents (by a hash of their name) held out
    seq_len: int = 256  # tokens per sequence and step: one segment of truncated backprop
    state_segments: int = 4  # segments a stream carries its cache across (1: every segment fresh)
    # --- batch and optimiser ------------------------------------------------------------------
    batch_size: int = 16  # sequences per optimiser step, all processes and accumulation steps together
    grad_accum: int = 1  # micro-steps per optimiser step (each takes batch_size / (grad_accum * ranks))
    steps: int = 2000  # optimiser steps
    lr: float = 3e-3  # peak learning rate of AdamW
    min_lr_ratio: float = 0.1  # the cosine schedule ends at lr * min_lr_ratio
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    weight_decay: float = 0.1  # AdamW decay, on matrices only (not norms, gains, biases)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0: no clipping
    # --- run ----------------------------------------------------------------------------------
    seed: int = 0  # weights, data order: the same seed gives the same run
    device: str = "auto"  # auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # fp32, bf16 (autocast), auto: bf16 on a GPU that supports it, else fp32
    threads: int | None = None  # torch threads on CPU; None: torch's default
    parallel: str = "ddp"  # under torchrun: ddp (replicas) or fsdp (FSDP2 fully_shard, sharded)
    eval_every: int = 200  # evaluate held-out loss and bits per byte every this many steps (and at the end)
    eval_tokens: int = 32768  # held-out tokens scored per evaluation (the same ones each time)
    eval_context: int = 1024  # tokens per evaluation window: each window starts from a fresh state
    eval_batch: int = 8  # evaluation windows per forward call (per process)
    save_every: int | None = None  # write a checkpoint every this many steps; None: at each evaluation
    keep_last: int = 2  # checkpoints kept besides the best one
    log_every: int = 10  # refresh the progress bar's loss and tokens/s every this many steps

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in (
            "dim", "depth", "heads", "window", "segment", "memory_chunk", "seq_len", "state_segments",
            "batch_size", "grad_accum", "steps", "eval_every", "eval_tokens", "eval_context",
            "eval_batch", "log_every", "keep_last",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("persistent_tokens", "warmup_steps", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.arch not in ARCHS:
            raise ValueError(f"TrainConfig.arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.memory_preset not in PRESETS:
            raise ValueError(
                f"TrainConfig.memory_preset must be one of {', '.join(PRESETS)}, got {self.memory_preset!r}"
            )
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"TrainConfig.held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        for name in ("lr", "beta1", "beta2"):
            if not (0 < getattr(self, name) < (math.inf if name == "lr" else 1)):
                raise ValueError(f"TrainConfig.{name} must be in (0, {'inf' if name == 'lr' else 1}), got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("weight_decay", "grad_clip"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"TrainConfig.parallel must be one of {', '.join(PARALLEL)}, got {self.parallel!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"TrainConfig.threads must be >= 1 or None, got {self.threads}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"TrainConfig.save_every must be >= 1 or None, got {self.save_every}")
        if self.checkpoint_every % self.state_segments:
            raise ValueError(
                f"TrainConfig.save_every ({self.checkpoint_every}; eval_every when save_every is None) must be "
                f"a multiple of state_segments ({self.state_segments}): a checkpoint is written where every "
                "stream's carried state restarts, so that a resumed run continues exactly"
            )
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"TrainConfig.batch_size ({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})"
            )
        if not self.data.strip():
            raise ValueError("TrainConfig.data must name a source: 'stdlib', a path or 'hf:NAME'")
        self.model_config(256)  # the model's own checks (e.g. dim divisible by heads), now

    # ------------------------------------------------------------------------------------------
    @property
    def checkpoint_every(self) -> int:
        """Steps between checkpoints: ``save_every``, or ``eval_every`` when that is None."""
        return self.eval_every if self.save_every is None else self.save_every

    @property
    def memory_layer_indices(self) -> tuple[int, ...] | None:
        """``memory_layers`` parsed: a tuple of layer indices, or None for every layer."""
        if self.memory_layers is None:
            return None
        text = self.memory_layers.strip()
        if not text:
            return ()
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            raise ValueError(
                f"TrainConfig.memory_layers must be comma-separated integers like '0,2' or None, got {self.memory_layers!r}"
            ) from None

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The :class:`ModelConfig` of the model this run trains, for a vocabulary of ``vocab_size``."""
        memory = None
        if self.arch != "swa":
            memory = preset(self.memory_preset, dim=self.dim, heads=self.heads, chunk_size=self.memory_chunk)
        return ModelConfig(
            arch=self.arch, vocab_size=vocab_size, dim=self.dim, depth=self.depth, heads=self.heads,
            window=self.window, segment=self.segment, persistent_tokens=self.persistent_tokens,
            memory_layers=None if self.arch == "swa" else self.memory_layer_indices, memory=memory,
            backend=self.backend, compile_step=self.compile_step,
        )

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> TrainConfig:
        """Build from a dict; unknown fields and ill-typed values are ``ValueError``s naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object of TrainConfig fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown TrainConfig fields {unknown}; fields: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a JSON file of TrainConfig fields (any subset; the rest keep their defaults)."""
        path = Path(path)
        data = read_json_file(path, "the config file")
        return cls.from_dict(data, source=f"config file {str(path)!r}")


def _check_type(name: str, value: object, hint: object) -> None:
    """TypeError unless ``value`` fits ``hint`` (int, float, str, bool, each possibly | None)."""
    options = typing.get_args(hint) or (hint,)
    for kind in options:
        if kind is type(None) and value is None:
            return
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return
        if kind is str and isinstance(value, str):
            return
    wanted = " or ".join("None" if k is type(None) else k.__name__ for k in options)
    raise TypeError(f"TrainConfig.{name} must be {wanted}, got {value!r}")
