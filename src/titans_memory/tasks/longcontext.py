"""Small models for the long-context tasks, their training on answers, and answer accuracy.

* :data:`MODELS` names every model the benchmarks compare (architectures, MIRAS presets inside
  the LMM, ablations of the LMM, and the sliding-window baseline); :func:`build_model` makes one
  from a :class:`TaskModelConfig` (the sizes shared by all of them).
* :func:`train_on_answers` trains with AdamW on the cross-entropy of the answer tokens only
  (task-specific training: the filler carries no loss).
* :func:`answer_logits` and :func:`evaluate` read a model's logits at the answer positions,
  feeding long sequences in pieces with the model's cache (exactly the logits of one call), and
  score them as :class:`~titans_memory.tasks.needles.TaskBatch` says.

A model here is anything called like :class:`~titans_memory.models.TitansLM`:
``model(tokens, cache) -> (logits, cache)``; the evaluation works the same on hand-built models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_memory.core.config import MemoryConfig
from titans_memory.core.hope import HopeConfig
from titans_memory.core.presets import preset
from titans_memory.models.blocks import conv_swa_blocks
from titans_memory.models.config import ModelConfig
from titans_memory.models.lm import TitansLM
from titans_memory.tasks.needles import TaskBatch

# --- the models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskModelConfig:
    """Sizes and memory gates shared by every model of a benchmark (one field changes per model).

    ``forget_init`` differs from :class:`~titans_memory.core.config.MemoryConfig`'s 0.005
    (half-life ~140 tokens) because of a measurement: an LMM trained on 128-token passkey
    sequences with 0.005 answered 100% at 2,048 tokens and 6% at 8,192 (the forget gate wipes
    the needle), with 5e-5 100% at 8,192 (README, "Long-context evidence"; the benchmark keeps
    the library's value as the ablation ``lmm-libforget``).
    """

    vocab_size: int = 64  # token ids 0 .. vocab_size - 1
    dim: int = 64  # model width
    depth: int = 2  # blocks; every block holds a memory (not the SWA baseline)
    heads: int = 2  # attention heads and memory heads
    window: int = 32  # sliding window (and MAC's segment)
    persistent_tokens: int = 4  # N_p learnable tokens in every attention
    chunk_size: int = 16  # the memory's chunk (gradients at the chunk start)
    conv_kernel: int = 4  # the causal convolution on q, k, v (memory, and the SWA baseline)
    forget_init: float = 5e-5  # the memory's initial forget rate alpha: half-life ~14k tokens
    lr_init: float = 0.01  # the memory's initial inner learning rate theta
    max_lr: float = 0.1  # theta's ceiling


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model: an architecture and what changes in its memory.

    Attributes:
        arch: ``"lmm"``, ``"mac"``, ``"mag"``, ``"mal"``, ``"swa"`` or ``"hope"``.
        memory: :class:`MemoryConfig` fields changed on top of the task's defaults.
        preset: a MIRAS preset the memory starts from (None: Titans' memory).
        group: ``"architecture"``, ``"miras"``, ``"ablation"`` (how the report groups it; these
            three are the default runs), ``"baseline"`` (full attention: MQAR's default run only),
            ``"variant"`` (options of an architecture, run when named) or ``"atlas"`` (ATLAS'
            memories, run when named).
        text: one line for the report.
        model: :class:`ModelConfig` fields changed on top of the task's (``mac_write``, ``window``).
    """

    arch: str
    memory: dict = field(default_factory=dict)
    preset: str | None = None
    group: str = "architecture"
    text: str = ""
    hope: dict = field(default_factory=dict)  # arch="hope": HopeConfig fields changed on the task's defaults
    model: dict = field(default_factory=dict)


#: A window that covers every sequence the benchmarks use: sliding-window attention with it is
#: full causal attention (the ``attn`` baseline).
FULL_WINDOW = 1 << 16


MODELS: dict[str, ModelSpec] = {
    "attn": ModelSpec(
        "swa", {}, group="baseline", model={"window": FULL_WINDOW},
        text="full causal attention (conv on q, k, v), no memory: MQAR's sanity baseline",
    ),
    "swa": ModelSpec("swa", text="sliding-window Transformer (conv on q, k, v), no memory"),
    "lmm": ModelSpec("lmm", text="the neural memory alone (Titans LMM)"),
    "mac": ModelSpec("mac", text="memory as context (writes y + u: attention's output with its residual)"),
    "mag": ModelSpec("mag", text="memory as gate"),
    "mal": ModelSpec("mal", text="memory as layer"),
    "lmm-moneta": ModelSpec("lmm", preset="moneta", group="miras", text="LMM with Moneta's memory"),
    "lmm-yaad": ModelSpec("lmm", preset="yaad", group="miras", text="LMM with Yaad's memory"),
    "lmm-memora": ModelSpec("lmm", preset="memora", group="miras", text="LMM with Memora's memory"),
    "lmm-deltanet": ModelSpec("lmm", preset="deltanet", group="miras", text="LMM with DeltaNet's memory"),
    "lmm-gdn": ModelSpec(
        "lmm", preset="gated_deltanet", group="miras", text="LMM with Gated DeltaNet's memory"
    ),
    # CMS levels every 8, 32, 128 tokens: each writes at least once inside a 128-token training sequence
    "hope": ModelSpec(
        "hope", hope={"cms_chunks": (8, 32, 128)},
        text="HOPE: self-modifying memory, then CMS levels of 8, 32, 128 tokens (Nested Learning)",
    ),
    "lmm-nomom": ModelSpec("lmm", {"momentum": False}, group="ablation", text="LMM without momentum"),
    "lmm-noforget": ModelSpec("lmm", {"forget": False}, group="ablation", text="LMM without forgetting"),
    "lmm-matrix": ModelSpec("lmm", {"depth": 1}, group="ablation", text="LMM, matrix memory (depth 1)"),
    "lmm-libforget": ModelSpec(
        "lmm", {"forget_init": MemoryConfig.forget_init}, group="ablation",
        text=f"LMM with the library's initial forget rate ({MemoryConfig.forget_init:g})",
    ),
    # HOPE's ablations (docs/hope.md), run when named: each costs ~3x an LMM step
    "hope-cms1": ModelSpec(
        "hope", group="variant", hope={"cms_chunks": (8,)}, text="HOPE with one CMS level (C = 8, the same total MLP width)"
    ),
    "hope-static": ModelSpec(
        "hope", group="variant", hope={"cms_chunks": (8, 32, 128), "self_modifying": False},
        text="HOPE without self-modification (inner memories frozen, values not self-generated)",
    ),
    # ATLAS (arXiv 2505.23735; docs/atlas.md): the same LMM with the Omega rule, and with Muon
    "lmm-omeganet": ModelSpec("lmm", preset="omeganet", group="atlas", text="LMM with OmegaNet's memory (Omega rule, c = 16)"),
    "lmm-atlas": ModelSpec("lmm", preset="atlas", group="atlas", text="LMM with Atlas' memory (Omega rule, c = 16, Muon)"),
    "mag-omeganet": ModelSpec("mag", preset="omeganet", group="atlas", text="memory as gate with OmegaNet's memory"),
    "mal-atlas": ModelSpec("mal", preset="atlas", group="atlas", text="memory as layer with Atlas' memory"),
    # MAC's options (docs/evidence.md, "MAC diagnosis"): what its memory writes (eq. 24)
    "mac-u": ModelSpec(
        "mac", group="variant", model={"mac_write": "u"},
        text="MAC whose memory writes the segment's input u (titans-pytorch), not the attention output y",
    ),
    "mac-y": ModelSpec(
        "mac", group="variant", model={"mac_write": "y"},
        text="MAC whose memory writes the attention output y alone (eq. 24 without its residual)",
    ),
}


def memory_config(spec: ModelSpec, cfg: TaskModelConfig) -> MemoryConfig:
    """The memory of model ``spec`` at the task's sizes and gate defaults."""
    base = dict(
        dim=cfg.dim, heads=cfg.heads, chunk_size=cfg.chunk_size, conv_kernel=cfg.conv_kernel,
        forget_init=cfg.forget_init, lr_init=cfg.lr_init, max_lr=cfg.max_lr,
    )
    if spec.preset is not None:
        # a preset's own inner learning rate (the delta rules' 0.25) is part of what it is
        own = preset(spec.preset)
        for name in ("lr_init", "max_lr"):
            base[name] = getattr(own, name)
        return preset(spec.preset, **{**base, **spec.memory})
    return MemoryConfig(**{**base, **spec.memory})


def spec_model_config(spec: ModelSpec, cfg: TaskModelConfig, **sizes) -> ModelConfig:
    """The :class:`ModelConfig` of model ``spec`` at the task's sizes.

    Its memory (:func:`memory_config`), its HOPE config (``spec.hope`` on the task's chunk size)
    and its own ModelConfig fields (``spec.model``: MAC's ``mac_write``, the ``attn`` baseline's
    window) are applied; ``sizes`` (ModelConfig fields, e.g. ``mlp_expansion``) change the
    task's defaults and are overridden by ``spec.model`` in turn.
    """
    mem = None if spec.arch in ("swa", "hope") else memory_config(spec, cfg)
    hope = HopeConfig(**{"chunk_size": cfg.chunk_size, **spec.hope}) if spec.arch == "hope" else None
    base = dict(
        arch=spec.arch, vocab_size=cfg.vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
        window=cfg.window, segment=cfg.window, persistent_tokens=cfg.persistent_tokens, memory=mem,
        hope=hope,
    )
    return ModelConfig(**{**base, **sizes, **spec.model})  # the spec's own fields (attn's window) win


def build_model(name: str, cfg: TaskModelConfig | None = None, *, seed: int = 0) -> TitansLM:
    """The model called ``name`` in :data:`MODELS`, its weights drawn with ``seed``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose among {', '.join(MODELS)}")
    cfg = cfg or TaskModelConfig()
    spec = MODELS[name]
    mcfg = spec_model_config(spec, cfg)
    # the SWA control convolves q, k, v as the memory models do (kernel 1: plain SWA)
    blocks = conv_swa_blocks(cfg.conv_kernel) if spec.arch == "swa" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TitansLM(mcfg, block_factory=blocks)
    return model


# --- evaluation ---------------------------------------------------------------------------------


def answer_logits(model: Callable, tokens: Tensor, positions: Tensor, *, piece: int = 2048) -> Tensor:
    """The logits at ``positions`` ``(B, Q, A)``: ``(B, Q, A, V)``.

    ``tokens`` ``(B, T)`` go through ``model`` in pieces of ``piece`` tokens with the cache
    carried (the logits of one call, with the activations of one piece in memory); pieces after
    the last answer position are skipped.
    """
    B, T = tokens.shape
    flat = positions.reshape(B, -1)  # (B, P)
    last = int(flat.max()) + 1 if flat.numel() else 0
    out: Tensor | None = None
    cache = None
    for start in range(0, last, piece):
        stop = min(last, start + piece)
        logits, cache = model(tokens[:, start:stop], cache)  # (B, n, V)
        if out is None:
            out = logits.new_zeros(B, flat.shape[1], logits.shape[-1])
        inside = (flat >= start) & (flat < stop)  # (B, P)
        if inside.any():
            local = (flat - start).clamp(0, stop - start - 1)
            picked = torch.gather(logits, 1, local[..., None].expand(-1, -1, logits.shape[-1]))
            out = torch.where(inside[..., None], picked, out)
    assert out is not None
    return out.reshape(*positions.shape, -1)


def score(logits: Tensor, batch: TaskBatch) -> Tensor:
    """Per question ``(B, Q)`` boolean: the argmax over ``batch.alphabet`` is right at every token."""
    alphabet = batch.alphabet.to(logits.device)
    choice = alphabet[logits[..., alphabet].argmax(-1)]  # (B, Q, A)
    return (choice == batch.targets.to(logits.device)).all(-1)


@torch.no_grad()
def evaluate(model: Callable, batch: TaskBatch, *, piece: int = 2048) -> float:
    """Accuracy of ``model`` on ``batch``: the fraction of questions answered right."""
    logits = answer_logits(model, batch.tokens, batch.positions, piece=piece)
    return float(score(logits, batch).float().mean())


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """AdamW on the answers' cross-entropy, warm-up then cosine decay."""

    steps: int = 600  # optimiser steps (fewer if time_limit runs out first)
    lr: float = 3e-3  # peak learning rate
    warmup: int = 30  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW's
    clip: float = 1.0  # gradient norm clipping
    time_limit: float | None = None  # seconds; training stops early when it is spent


@dataclass
class TrainResult:
    """What a training run did: steps taken, seconds, the answer loss along the way.

    ``diverged``: the loss (or the model's own finiteness check) went NaN/Inf; training stopped
    at that step and the model is not usable.
    """

    steps: int
    seconds: float
    losses: list[float]
    stopped_early: bool
    diverged: bool = False


def answer_loss(model: Callable, batch: TaskBatch) -> Tensor:
    """Mean cross-entropy of the answer tokens (over the full vocabulary)."""
    logits, _ = model(batch.tokens)  # (B, T, V)
    B = batch.tokens.shape[0]
    flat = batch.positions.reshape(B, -1)
    picked = torch.gather(logits, 1, flat[..., None].expand(-1, -1, logits.shape[-1]))
    return F.cross_entropy(picked.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))


def learning_rate(settings: TrainSettings, step: int, elapsed: float) -> float:
    """Warm-up, then cosine decay to 0 over the run: its progress is the larger of the steps
    taken and the time spent (with a ``time_limit``), so a run cut by its time limit still ends
    its schedule at a small learning rate instead of stopping at the peak."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    frac = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    if settings.time_limit is not None and settings.time_limit > 0:
        frac = max(frac, elapsed / settings.time_limit)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def train_on_answers(
    model: nn.Module,
    batches: Iterator,
    settings: TrainSettings = TrainSettings(),
    *,
    progress: Callable[[float], None] | None = None,
    loss_fn: Callable[[nn.Module, object], Tensor] | None = None,
) -> TrainResult:
    """Train ``model`` on ``batches`` (one per step) for ``settings.steps`` steps or its time limit.

    ``progress(loss)`` is called after each step with the step's loss (for progress bars). A
    non-finite loss, or a ``ValueError`` raised by the memory's finiteness check, stops the run
    with ``diverged=True`` (the caller reports the model as diverged, it does not crash).
    ``loss_fn(model, batch)`` is the loss of one batch: :func:`answer_loss` (the task's answers)
    by default; the language benchmark passes the next-byte loss of every position.
    """
    loss_fn = loss_fn or answer_loss
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    stopped = diverged = False
    for step in range(settings.steps):
        elapsed = time.perf_counter() - start
        if settings.time_limit is not None and elapsed > settings.time_limit:
            stopped = True
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(settings, step, elapsed)
        try:
            loss = loss_fn(model, next(batches))
        except ValueError as exc:  # the memory's check of its inputs and state (NaN/Inf)
            if "finite" not in str(exc).lower() and "nan" not in str(exc).lower():
                raise
            diverged = True
            break
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(losses[-1])
    model.eval()
    return TrainResult(len(losses), time.perf_counter() - start, losses, stopped, diverged)
