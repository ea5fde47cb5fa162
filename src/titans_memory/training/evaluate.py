"""Held-out loss and bits per byte, at one context length or several; the unigram baseline.

Bits per byte = (sum of the model's negative log-likelihoods in nats) / ln 2 / (bytes of text the
scored tokens stand for): for a byte-level model the cross-entropy in bits; for any tokenizer a
number comparable across tokenizers.

The length-generalisation curve (:func:`context_curve`) scores *the same* held-out tokens at every
context length ``C``: the text is cut into windows of ``C`` tokens, each read from a fresh state,
so only the context available to each prediction changes. A window longer than what the model
was trained on is fed in pieces with the cache carried (exactly one long call; memory flat).
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from titans_memory.training.distributed import DistEnv, all_sum


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation."""

    context: int  # tokens per window (each window starts from a fresh state)
    tokens: int  # tokens scored
    bytes: int  # bytes of text those tokens stand for
    loss: float  # mean negative log-likelihood, nats per token
    bits_per_byte: float


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 logits in float32 for the cross-entropy; float32 and float64 as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


@torch.no_grad()
def window_nll(model: nn.Module, windows: torch.Tensor, piece: int, autocast=None) -> torch.Tensor:
    """``(W,)`` summed negative log-likelihood (nats) of tokens 1.. of each row of ``windows`` ``(W, C + 1)``.

    The rows go through ``model`` in pieces of ``piece`` tokens, the cache carried.
    """
    total = torch.zeros(windows.shape[0], dtype=torch.float64, device=windows.device)
    cache = None
    inputs, targets = windows[:, :-1], windows[:, 1:]
    for start in range(0, inputs.shape[1], piece):
        with autocast or contextlib.nullcontext():
            logits, cache = model(inputs[:, start : start + piece], cache)
        nll = F.cross_entropy(
            at_least_float32(logits).flatten(0, 1), targets[:, start : start + piece].flatten(), reduction="none"
        )  # (W * piece,)
        total += nll.view(windows.shape[0], -1).double().sum(-1)
    return total


def evaluate(
    model: nn.Module,
    tokens: np.ndarray,
    context: int,
    *,
    byte_count,
    env: DistEnv | None = None,
    batch: int = 8,
    piece: int = 1024,
    autocast=None,
) -> EvalResult:
    """Score ``tokens[1:]`` in windows of ``context`` (trailing tokens that fill no window are dropped).

    ``byte_count(ids)`` gives the bytes of text the ids stand for. Under several ranks each rank
    scores every ``world_size``-th window and the sums are added up.
    """
    env = env or DistEnv()
    n_windows = (len(tokens) - 1) // context
    if n_windows < 1:
        raise ValueError(f"evaluation needs at least {context + 1} held-out tokens for context {context}, got {len(tokens)}")
    device = next(model.parameters()).device
    rows = torch.as_tensor(
        np.stack([tokens[w * context : w * context + context + 1] for w in range(n_windows)]), dtype=torch.long
    )  # (W, C + 1)
    mine = rows[env.rank :: env.world_size]
    # every rank makes the same number of calls (FSDP gathers weights in each): a rank short of
    # windows scores a copy of the first one and drops it
    calls = math.ceil(math.ceil(n_windows / env.world_size) / batch)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for call in range(calls):
        part = mine[call * batch : (call + 1) * batch]
        if len(part):
            nll += window_nll(model, part.to(device), piece, autocast).sum()
        else:
            window_nll(model, rows[:1].to(device), piece, autocast)
    model.train(was_training)
    nll = float(all_sum(nll, env))
    scored = tokens[1 : n_windows * context + 1]
    n_bytes = byte_count(scored)
    return EvalResult(
        context=context,
        tokens=len(scored),
        bytes=n_bytes,
        loss=nll / len(scored),
        bits_per_byte=nll / math.log(2) / n_bytes,
    )


def unigram_bits_per_byte(counts: np.ndarray, tokens: np.ndarray, context: int, byte_count) -> float:
    """Bits per byte of a unigram model fit on ``counts`` (add-one smoothing) on the tokens :func:`evaluate` scores."""
    n_windows = (len(tokens) - 1) // context
    scored = tokens[1 : n_windows * context + 1]
    probs = (counts + 1.0) / (counts.sum() + len(counts))
    nll = -np.log(probs[scored]).sum()
    return float(nll / math.log(2) / byte_count(scored))


def context_curve(
    model: nn.Module,
    tokens: np.ndarray,
    contexts: list[int],
    *,
    byte_count,
    batch: int = 8,
    piece: int = 1024,
    autocast=None,
) -> list[EvalResult]:
    """:func:`evaluate` at each context length, on the same ``tokens`` (a multiple of every context)."""
    return [evaluate(model, tokens, c, byte_count=byte_count, batch=batch, piece=piece, autocast=autocast) for c in contexts]


def checkpoint_data(folder: Path, data: str | None) -> tuple[str, float]:
    """The data ``titans eval`` scores and its held-out fraction.

    ``data`` (the command line's ``--data``) wins. Without it, a training checkpoint's own data is
    used, but a path read from its ``trainer_state.json`` (a file anyone could have edited) is
    printed before it is opened, and must be a string; with neither, Python's stdlib.
    """
    from titans_memory.training.checkpoint import STATE_FILE, CheckpointError, read_json

    held_out_fraction = 0.05
    saved = None
    if (folder / STATE_FILE).is_file():  # a training checkpoint knows its data and split
        train_cfg = read_json(folder / STATE_FILE, "trainer state").get("config", {})
        if not isinstance(train_cfg, dict):
            raise CheckpointError(f"{str(folder / STATE_FILE)!r}: 'config' must be a JSON object")
        saved = train_cfg.get("data")
        fraction = train_cfg.get("held_out_fraction", held_out_fraction)
        if isinstance(fraction, int | float) and not isinstance(fraction, bool) and 0 < fraction < 1:
            held_out_fraction = float(fraction)
        else:
            raise CheckpointError(f"{str(folder / STATE_FILE)!r}: held_out_fraction must be in (0, 1), got {fraction!r}")
    if data is not None:
        return data, held_out_fraction
    if saved is None:
        return "stdlib", held_out_fraction
    if not isinstance(saved, str) or not saved.strip():
        raise CheckpointError(f"{str(folder / STATE_FILE)!r}: data must be a non-empty string, got {saved!r}")
    if saved != "stdlib":
        print(f"titans eval: scoring the held-out part of {saved!r}, the data named in "
              f"{str(folder / STATE_FILE)!r} (pass --data to choose another)", file=sys.stderr, flush=True)
    return saved, held_out_fraction
