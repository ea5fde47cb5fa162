"""The training loop of ``titans train``, top to bottom.

1. the process group (under torchrun), the data, the model, the optimiser and the schedule;
2. a resumed run loads the latest checkpoint: weights, optimiser moments, schedule step, every
   stream's data position and the RNG states, so it continues exactly;
3. each step: for every accumulation micro-step, a segment of ``seq_len`` tokens from each of this
   rank's streams, the forward pass with the carried cache (truncated backprop), the backward pass;
   then gradient clipping, AdamW, the warm-up + cosine learning rate;
4. every ``eval_every`` steps (and at the end): held-out loss and bits per byte, a line in
   ``log.jsonl``; every ``save_every`` steps (and at the end): a checkpoint.

What a run guarantees: it holds an exclusive lock on its folder (a second run into the same
folder is refused); checkpoints are flushed to disk and renamed into place; a resumed run
continues as the uninterrupted one would, its ``log.jsonl`` and the loss averaging window
included; a step whose loss or gradients are not finite stops the run (:class:`DivergenceError`)
before the optimiser touches the weights.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_memory.fileio import RunLock, append_line, atomic_write_text, json_text
from titans_memory.models.cache import ModelCache
from titans_memory.models.lm import TitansLM
from titans_memory.training import distributed
from titans_memory.training.checkpoint import (
    MODEL_FILE,
    CheckpointError,
    CheckpointManager,
    check_optimizer_state,
    check_parameter_memory,
    check_state_dict,
    flatten_optimizer_state,
    is_finite_state,
    read_tensors,
    read_training_state,
    unflatten_optimizer_state,
    write_checkpoint,
)
from titans_memory.training.config import TrainConfig
from titans_memory.training.data import (
    Corpus,
    StreamPosition,
    Tokenizer,
    TokenStream,
    held_out_tokens,
    load_tokenizer,
    open_corpus,
)
from titans_memory.training.distributed import DistEnv
from titans_memory.training.evaluate import EvalResult, at_least_float32, evaluate
from titans_memory.training.precision import autocast_for, memory_in_float32

# fields a resumed run may change; any other difference would make the continuation not the same run
# (a changed `steps` stretches the cosine schedule from the resumed step on)
RESUMABLE_CHANGES = frozenset(
    {"steps", "eval_every", "save_every", "keep_last", "log_every", "threads", "device", "parallel", "eval_batch"}
)


class DivergenceError(ValueError):
    """The loss or the gradients of a step are not finite: the run stops before the weights take them."""


_NONFINITE = "contains NaN or Inf"  # the memory's own check of its input and state (core/finite.py)


def _divergence(step: int, what: str, lr: float) -> DivergenceError:
    return DivergenceError(
        f"the run diverged at step {step}: {what} (learning rate {lr:.3g}); this step was not applied and the "
        "checkpoints written so far are kept; lower lr, lengthen warmup_steps or set grad_clip"
    )


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    run_dir: Path
    step: int  # the last step done
    losses: dict[int, float] = field(default_factory=dict)  # training loss of each step done in this call
    evaluations: list[dict] = field(default_factory=list)  # every evaluation of the run, resumed ones too
    final: EvalResult | None = None  # the last evaluation
    seconds: float = 0.0  # wall time of this call


class LMLoss(nn.Module):
    """Next-token cross-entropy of ``model`` on one segment; returns the loss and the detached cache.

    The module the distributed wrappers see: its output holds the loss (in the autograd graph) and
    a cache cut from it, so the next segment continues the state without backpropagating into
    this one (truncated backprop through time).
    """

    def __init__(self, model: TitansLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, targets: Tensor, cache: ModelCache | None) -> tuple[Tensor, ModelCache]:
        logits, cache = self.model(inputs, cache)  # (B, T, V)
        loss = F.cross_entropy(at_least_float32(logits).flatten(0, 1), targets.flatten())
        return loss, cache.detach()


class WarmupCosine:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then a cosine down to ``lr * min_ratio`` at ``total``."""

    def __init__(self, lr: float, warmup: int, total: int, min_ratio: float) -> None:
        self.peak, self.warmup, self.total, self.min_ratio = lr, warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        floor = self.peak * self.min_ratio
        return floor + (self.peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def state_dict(self) -> dict:
        return {"kind": "warmup_cosine", "lr": self.peak, "warmup": self.warmup, "total": self.total,
                "min_ratio": self.min_ratio}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices (2-D and up), none on gains, biases and gate vectors."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class StreamBatches:
    """This rank's share of the ``batch_size`` streams, grouped by accumulation micro-step.

    Global stream ``g = (micro * world_size + rank) * per_micro + i``: the streams, and so the
    text of every step, are the same whatever the number of ranks.
    """

    def __init__(self, corpus: Corpus, tokenizer: Tokenizer, config: TrainConfig, env: DistEnv,
                 positions: list[StreamPosition] | None = None) -> None:
        parts = config.grad_accum * env.world_size
        if config.batch_size % parts:
            raise ValueError(
                f"TrainConfig.batch_size ({config.batch_size}) must be a multiple of grad_accum x processes "
                f"({config.grad_accum} x {env.world_size})"
            )
        self.per_micro = config.batch_size // parts
        self.config, self.env = config, env
        self.streams: list[list[TokenStream]] = []
        for micro in range(config.grad_accum):
            ids = [(micro * env.world_size + env.rank) * self.per_micro + i for i in range(self.per_micro)]
            self.streams.append([
                TokenStream(corpus, tokenizer, g, config.batch_size, config.seed, positions[g] if positions else None)
                for g in ids
            ])

    def next(self, micro: int) -> Tensor:
        """``(per_micro, seq_len + 1)`` tokens: the next segment of each stream of ``micro``."""
        rows = [s.segment(self.config.seq_len) for s in self.streams[micro]]
        return torch.as_tensor(np.stack(rows), dtype=torch.long)

    def global_positions(self) -> list[list[int]]:
        """Every stream's position, gathered from all ranks (a collective)."""
        table = torch.zeros(self.config.batch_size, 4, dtype=torch.long)
        for group in self.streams:
            for s in group:
                table[s.index] = torch.tensor(s.position.to_list())
        return distributed.all_sum(table, self.env).tolist()


def _check_resume(saved: dict, config: TrainConfig, folder: Path) -> None:
    changed = sorted(k for k, v in config.to_dict().items() if saved.get(k, v) != v and k not in RESUMABLE_CHANGES)
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise CheckpointError(
            f"cannot resume {str(folder)!r} with a different {', '.join(changed)} ({diffs}); "
            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change"
        )


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Train a model as ``config`` says, writing the log and checkpoints into ``run_dir``.

    ``resume`` continues from the latest checkpoint in ``run_dir``. ``stop_at_step`` ends this call
    after that step (its checkpoint written if one is due), as if the run were stopped there.
    Launched by ``torchrun``, every rank calls this; rank 0 alone prints and writes.
    """
    env = distributed.setup(config.device)
    threads = torch.get_num_threads()
    run_dir = Path(run_dir)
    lock = None
    try:
        if env.is_main:  # one run per folder, for the run's whole life
            lock = RunLock(run_dir).acquire()
            if lock.stale_pid is not None and lock.stale_pid != os.getpid():
                print(f"titans train: {str(run_dir)!r} held a stale lock of process {lock.stale_pid}, which ended "
                      "without releasing it; taken over", file=sys.stderr)
        return _train(config, run_dir, env, resume=resume, progress=progress, stop_at_step=stop_at_step)
    finally:
        if lock is not None:
            lock.release()
        torch.set_num_threads(threads)  # config.threads applies to this run only
        distributed.teardown(env)


def _train(config: TrainConfig, run_dir: Path, env: DistEnv, *, resume: bool, progress: bool,
           stop_at_step: int | None) -> TrainResult:
    started = time.perf_counter()
    if config.threads is not None and env.device.type == "cpu":
        torch.set_num_threads(config.threads)
    ckpts = CheckpointManager(run_dir, config.keep_last)
    if env.is_main:
        ckpts.clean()  # the .tmp folder of a run killed mid-write
    latest = ckpts.latest()
    if latest is not None and not resume:
        raise ValueError(
            f"run folder {str(run_dir)!r} already holds checkpoints; resume it (--resume) or choose another --out"
        )
    if resume and latest is None and env.is_main:
        print(f"titans train: nothing to resume in {str(run_dir)!r}; starting afresh", file=sys.stderr)

    # --- 1. data, model, optimiser, schedule ------------------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    tokenizer = load_tokenizer(config.tokenizer)
    corpus = open_corpus(config.data, config.held_out_fraction)
    model_config = config.model_config(tokenizer.vocab_size)
    # weights, gradients and AdamW's two moments: refuse a model that cannot fit before allocating it
    check_parameter_memory(model_config, env.device, where="TrainConfig", factor=4)
    model = TitansLM(model_config).to(env.device)
    step_module = distributed.wrap(model, LMLoss(model), config.parallel, env)
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2)
    )
    schedule = WarmupCosine(config.lr, config.warmup_steps, config.steps, config.min_lr_ratio)
    autocast, precision = autocast_for(config.precision, env.device)
    if precision == "bf16":
        memory_in_float32(model)

    # --- 2. resume: weights, optimiser, schedule, data positions, RNG ----------------------------
    start, positions, evaluations, window, elapsed = 0, None, [], {}, 0.0
    if resume and latest is not None:
        saved = read_training_state(latest)
        _check_resume(saved.state["config"], config, latest)
        if saved.state["data"].get("fingerprint") != corpus.fingerprint():
            raise CheckpointError(
                f"cannot resume {str(latest)!r}: the data {config.data!r} is not what the checkpoint was trained on "
                "(its documents or split changed)"
            )
        with torch.device("meta"):
            expected = TitansLM(model_config).state_dict()
        weights = read_tensors(latest / MODEL_FILE, "weights")
        check_state_dict(expected, weights, f"checkpoint {str(latest)!r}")
        check_optimizer_state(expected, saved.tensors, f"checkpoint {str(latest / 'training.safetensors')!r}")
        optim_state = unflatten_optimizer_state(saved.tensors, saved.state["optimizer_groups"])
        distributed.load_full_state(model, optimizer, weights, optim_state)
        torch.set_rng_state(saved.tensors["rng/torch"])
        if env.device.type == "cuda" and "rng/cuda" in saved.tensors:
            torch.cuda.set_rng_state(saved.tensors["rng/cuda"], env.device)
        raw = saved.state["data"]["positions"]
        if not isinstance(raw, list) or len(raw) != config.batch_size:
            raise CheckpointError(f"{str(latest)!r}: data positions do not match batch_size {config.batch_size}")
        positions = [StreamPosition.from_list(p) for p in raw]
        start, evaluations = int(saved.state["step"]), list(saved.state.get("evaluations", []))
        window = saved.state.get("window") or {}
        elapsed = float(saved.state.get("elapsed_s") or 0.0)
        if start % config.state_segments and env.is_main:
            print(f"titans train: {str(latest)!r} was written mid-way through a carried state; "
                  "the streams restart their state here, so the continuation is not exact", file=sys.stderr)
    batches = StreamBatches(corpus, tokenizer, config, env, positions)
    eval_tokens = held_out_tokens(corpus, tokenizer, config.eval_tokens + 1)
    if len(eval_tokens) < config.eval_context + 1:
        raise ValueError(
            f"the held-out text of {config.data!r} has {len(eval_tokens)} tokens, fewer than "
            f"eval_context + 1 ({config.eval_context + 1}); lower eval_context"
        )

    n_params = sum(p.numel() for p in model.parameters())
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "train_config.json", json_text(config.to_dict()) + "\n", what="config")
        # the log is the checkpoint's history: what a killed run logged after its last checkpoint
        # is logged again by the resumed run, so it must not stay (nor a fresh run's predecessor's)
        atomic_write_text(run_dir / "log.jsonl", "".join(json_text(r, indent=None) + "\n" for r in evaluations),
                          what="log")
        if progress:
            print(f"titans train: {config.to_json()}")
            print(
                f"titans train: {n_params:,} parameters ({model_config.arch}); {env.world_size} process(es) on "
                f"{env.device}, {precision}; data {corpus.name}: {len(corpus.train)} train / "
                f"{len(corpus.held_out)} held-out documents; run folder {run_dir}"
            )

    # --- 3. the steps -----------------------------------------------------------------------------
    result = TrainResult(run_dir=run_dir, step=start, evaluations=evaluations)
    tokens_per_step = config.batch_size * config.seq_len
    caches: list[ModelCache | None] = [None] * config.grad_accum
    bar = None
    if env.is_main and progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
    # the averaging window of the logged training loss continues across a resume
    window_start = time.perf_counter() - float(window.get("seconds", 0.0))
    window_tokens, window_loss, window_steps = int(window.get("tokens", 0)), float(window.get("loss", 0.0)), int(window.get("steps", 0))
    started -= elapsed  # elapsed_s counts the run's time before the resume too
    last_step = min(config.steps, stop_at_step) if stop_at_step is not None else config.steps
    step_module.train()
    for step in range(start, last_step):
        lr = schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if step % config.state_segments == 0:  # every stream's carried state restarts
            caches = [None] * config.grad_accum
        loss_sum = torch.zeros((), dtype=torch.float64)
        for micro in range(config.grad_accum):
            segment = batches.next(micro).to(env.device)  # (b, seq_len + 1)
            sync = micro == config.grad_accum - 1
            try:
                with distributed.no_sync(step_module, model, sync), autocast():
                    loss, caches[micro] = step_module(segment[:, :-1], segment[:, 1:], caches[micro])
            except (ValueError, RuntimeError) as err:
                if _NONFINITE not in str(err):
                    raise
                raise _divergence(step + 1, "the activations became NaN or Inf (in a memory's input or state)", lr) from None
            (loss / config.grad_accum).backward()
            loss_sum += loss.detach().double().cpu()
        step_loss = float(distributed.all_sum(loss_sum, env)) / (config.grad_accum * env.world_size)
        if not math.isfinite(step_loss):
            raise _divergence(step + 1, f"the training loss is {step_loss}", lr)
        # the global gradient norm (max_norm inf: no clipping, the gradients multiplied by exactly 1)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if not math.isfinite(norm):
            raise _divergence(step + 1, f"the gradient norm is {norm}", lr)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses[step + 1] = step_loss
        result.step = step + 1
        window_tokens += tokens_per_step
        window_loss += step_loss
        window_steps += 1
        if bar is not None:
            bar.update(1)
            if (step + 1) % config.log_every == 0:
                rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                bar.set_postfix(loss=f"{window_loss / window_steps:.3f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}")

        # --- 4. evaluation, log, checkpoint ----------------------------------------------------------
        done = step + 1
        is_last = done == config.steps
        if done % config.eval_every == 0 or is_last:
            train_seconds = time.perf_counter() - window_start
            try:
                ev = evaluate(model, eval_tokens, config.eval_context, byte_count=tokenizer.byte_count, env=env,
                              batch=config.eval_batch, piece=config.seq_len, autocast=autocast())
            except (ValueError, RuntimeError) as err:
                if _NONFINITE not in str(err):
                    raise
                raise _divergence(done, "the held-out evaluation's activations became NaN or Inf", lr) from None
            record = {
                "step": done, "tokens": done * tokens_per_step, "train_loss": window_loss / window_steps,
                "eval_loss": ev.loss, "bits_per_byte": ev.bits_per_byte, "eval_tokens": ev.tokens,
                "eval_context": ev.context, "lr": lr, "elapsed_s": round(time.perf_counter() - started, 3),
                "tokens_per_s": window_tokens / max(train_seconds, 1e-9),
            }
            result.evaluations.append(record)
            result.final = ev
            if env.is_main:
                append_line(run_dir / "log.jsonl", json_text(record, indent=None))
                if progress:
                    message = (f"step {done}: train loss {record['train_loss']:.4f}, held-out loss {ev.loss:.4f}, "
                               f"{ev.bits_per_byte:.4f} bits/byte")
                    (bar.write if bar is not None else print)(message)
            window_start, window_tokens, window_loss, window_steps = time.perf_counter(), 0, 0.0, 0
        if done % config.checkpoint_every == 0 or is_last:
            bpb = result.evaluations[-1]["bits_per_byte"] if result.evaluations and result.evaluations[-1]["step"] == done else None
            window_state = {"tokens": window_tokens, "loss": window_loss, "steps": window_steps,
                            "seconds": time.perf_counter() - window_start}
            _save(ckpts, done, model, optimizer, schedule, batches, config, corpus, tokenizer, env, result.evaluations, bpb,
                  window_state, round(time.perf_counter() - started, 3))
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _save(ckpts: CheckpointManager, step: int, model: TitansLM, optimizer: torch.optim.Optimizer,
          schedule: WarmupCosine, batches: StreamBatches, config: TrainConfig, corpus: Corpus,
          tokenizer: Tokenizer, env: DistEnv, evaluations: list[dict], bits_per_byte: float | None,
          window: dict, elapsed: float) -> None:
    """Gather full states (collectives: every rank calls this) and write them on rank 0."""
    weights = distributed.full_model_state(model)
    optim_state = distributed.full_optimizer_state(model, optimizer)
    positions = batches.global_positions()
    if env.is_main:
        tensors, groups = flatten_optimizer_state(optim_state)
        tensors["rng/torch"] = torch.get_rng_state()
        if env.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(env.device)
        state = {
            "step": step,
            "config": config.to_dict(),
            "schedule": schedule.state_dict(),
            "data": {"fingerprint": corpus.fingerprint(), "positions": positions, "source": corpus.name},
            "optimizer_groups": groups,
            "evaluations": evaluations,
            "world_size": env.world_size,
            "exact_resume": step % config.state_segments == 0,
            "window": window,  # the training-loss average so far since the last evaluation
            "elapsed_s": elapsed,
        }
        write_checkpoint(ckpts.folder_for(step), model_config=model.config, model_state=weights,
                         training_tensors=tensors, trainer_state=state, tokenizer=tokenizer)
        ckpts.commit(step, bits_per_byte, finite=is_finite_state(weights))
    distributed.barrier(env)
