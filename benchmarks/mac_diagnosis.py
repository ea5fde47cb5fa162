"""Why does MAC's memory path learn the passkey so slowly? Gradients and short training runs.

Two parts, each written as JSON (``--out``):

* ``grads``: on one batch of 128-token passkey sequences whose needle lies in the first segment
  (depth 0; the question is in the last of four 32-token segments), the gradient norm of the
  answer loss per parameter group, summed over the layers, for MAC (each ``mac_write``) and MAG
  at initialisation, same seed. For MAC the memory's key/value gradient is also split: the part
  that reaches W_K / W_V *through the retrieval* (the memory carried from segment to segment,
  eq. 21) is the full gradient minus the gradient with the retrieved-from state detached.
* ``train``: short training runs at a fixed number of steps (not a time budget: the machine's
  load varies), one row per lever, each evaluated on passkeys at 128 and 512 tokens with the
  needle at depths 0, 0.25, 0.5 (always in an earlier segment than the question: only the memory
  can answer) and at depth 1 (inside the question's segment: attention can answer).

Run one training row per process to use several cores (``OMP_NUM_THREADS=1``)::

    uv run python benchmarks/mac_diagnosis.py grads --out benchmarks/results/mac_grads.json
    uv run python benchmarks/mac_diagnosis.py train --exp mac --steps 300 \\
        --out benchmarks/results/mac_diag_mac.json
    uv run python benchmarks/mac_diagnosis.py table benchmarks/results/mac_diag_*.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from titans_memory.models.blocks import MACBlock
from titans_memory.tasks.bench import NiahSettings, training_batches
from titans_memory.tasks.longcontext import (
    TaskModelConfig,
    TrainSettings,
    answer_loss,
    build_model,
    evaluate,
    train_on_answers,
)
from titans_memory.tasks.needles import needle_batch

# one lever per row: (model name in MODELS, TaskModelConfig changes, TrainSettings changes,
# training lengths, what it tests). The rows' names are those of the records in
# benchmarks/results/mac_diag_*.json, made when MAC wrote y by default: "mac" and its levers
# run "mac-y" (y alone), "mac-yu" runs today's default "mac" (y + u)
EXPERIMENTS: dict[str, tuple[str, dict, dict, tuple[int, ...], str]] = {
    "mac": ("mac-y", {}, {}, (32, 128), "the memory stores y alone (eq. 24 without the residual)"),
    "mac-u": ("mac-u", {}, {}, (32, 128), "the memory stores the segment input u (titans-pytorch)"),
    "mac-yu": ("mac", {}, {}, (32, 128), "the memory stores y + u (attention with its residual, §4.4; default)"),
    "mag": ("mag", {}, {}, (32, 128), "MAG, the reference that learns"),
    "lmm": ("lmm", {}, {}, (32, 128), "LMM, the reference that learns"),
    "mac-lr05": ("mac-y", {"lr_init": 0.05}, {}, (32, 128), "MAC, memory's initial inner lr 0.05 (not 0.01)"),
    "mac-noper": ("mac-y", {"persistent_tokens": 0}, {}, (32, 128), "MAC without persistent tokens"),
    "mac-seg16": ("mac-y", {"window": 16}, {}, (32, 128), "MAC, segment and window 16 (8 segments in 128 tokens)"),
    "mac-128": ("mac-y", {}, {}, (128,), "MAC trained on 128-token sequences only (no 32)"),
    "mac-opt1e3": ("mac-y", {}, {"lr": 1e-3}, (32, 128), "MAC, outer learning rate 1e-3 (not 3e-3)"),
    "mac-u-lr05": ("mac-u", {"lr_init": 0.05}, {}, (32, 128), "mac-u with inner lr 0.05"),
}

EVAL_LENGTHS = (128, 512)
FAR_DEPTHS = (0.0, 0.25, 0.5)  # the needle in an earlier segment than the question
EVAL_SAMPLES = 16


# --- gradients ------------------------------------------------------------------------------------


def _group(name: str) -> str:
    """The parameter group of a parameter's name (memory parts split finely)."""
    if ".memory." in name:
        if "to_qkv" in name:
            return "memory W_QKV"  # split into q / k / v below
        for part, label in (("to_gates", "memory gates (lr, momentum, forget)"),
                            ("memory_init", "memory_init"), ("conv_weight", "memory conv"),
                            ("to_out", "memory output (W_O, out gate)"), ("out_norm", "memory output (W_O, out gate)")):
            if part in name:
                return label
        return "memory other"
    if ".attn." in name:
        return "attention"
    if ".gate." in name:
        return "output gate (y ⊗ m)"
    return "rest (embeddings, MLPs, norms, head)"


def grad_norms(model: torch.nn.Module) -> dict[str, float]:
    """Gradient norm per group (sqrt of the summed squares over layers); W_QKV split in q, k, v."""
    sq: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach()
        group = _group(name)
        if group == "memory W_QKV":
            inner = g.shape[0] // 3
            for i, label in enumerate(("memory W_Q", "memory W_K", "memory W_V")):
                sq[label] = sq.get(label, 0.0) + float(g[i * inner : (i + 1) * inner].pow(2).sum())
        else:
            sq[group] = sq.get(group, 0.0) + float(g.pow(2).sum())
    return {k: math.sqrt(v) for k, v in sorted(sq.items())}


def _kv_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    out = []
    for name, p in model.named_parameters():
        if ".memory.to_qkv" in name and p.grad is not None:
            inner = p.grad.shape[0] // 3
            out.append(p.grad[inner:].detach().clone())
    return out


def _backward(model: torch.nn.Module, batch) -> float:
    model.zero_grad(set_to_none=True)
    loss = answer_loss(model, batch)
    loss.backward()
    return float(loss)


def _detached_retrieve(retrieve):
    """``retrieve`` reading a detached copy of the state it is given."""

    def wrapped(x, state=None):
        return retrieve(x, None if state is None else state.detach())

    return wrapped


def gradients(models: tuple[str, ...], seed: int, batch_size: int) -> dict:
    batch = needle_batch("passkey", batch_size, 128, 1234, depth=0.0)
    cfg = TaskModelConfig()
    out = {}
    for name in models:
        model = build_model(name, cfg, seed=seed)
        model.train()
        loss = _backward(model, batch)
        row = {"loss": loss, "norms": grad_norms(model)}
        if any(isinstance(b, MACBlock) for b in model.blocks):
            full = _kv_grads(model)
            # the same loss with the retrieval reading a detached memory: what is left of the
            # W_K / W_V gradient came through the in-segment read (eq. 25) only
            patched = [b.memory for b in model.blocks if isinstance(b, MACBlock)]
            for mem in patched:
                mem.retrieve = _detached_retrieve(mem.retrieve)
            try:
                _backward(model, batch)
            finally:
                for mem in patched:
                    del mem.retrieve  # the instance attribute; the class method shows again
            local = _kv_grads(model)
            through = math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(full, local, strict=True)))
            row["memory W_K,W_V via retrieval (eq. 21)"] = through
            row["memory W_K,W_V in-segment read only (eq. 25)"] = math.sqrt(sum(float(b.pow(2).sum()) for b in local))
        out[name] = row
    return {"batch": dict(kind="passkey", length=128, depth=0.0, batch=batch_size), "seed": seed, "models": out}


# --- training -------------------------------------------------------------------------------------


def train_row(exp: str, steps: int, seed: int, batch_tokens: int) -> dict:
    name, model_changes, train_changes, lengths, text = EXPERIMENTS[exp]
    cfg = replace(TaskModelConfig(), **model_changes)
    settings = NiahSettings(
        model=cfg, train=replace(TrainSettings(steps=steps), **train_changes),
        train_lengths=lengths, batch_tokens=batch_tokens,
    )
    model = build_model(name, cfg, seed=seed)
    start = time.perf_counter()
    result = train_on_answers(model, training_batches(settings, seed), settings.train)
    seconds = time.perf_counter() - start
    acc = {}
    for length in EVAL_LENGTHS:
        far = [evaluate(model, needle_batch("passkey", EVAL_SAMPLES, length, 7 + i, depth=d))
               for i, d in enumerate(FAR_DEPTHS)]
        acc[f"far@{length}"] = sum(far) / len(far)
        acc[f"near@{length}"] = evaluate(model, needle_batch("passkey", EVAL_SAMPLES, length, 99, depth=1.0))
    losses = result.losses
    return dict(
        exp=exp, model=name, text=text, model_changes=model_changes, train_changes=train_changes,
        train_lengths=list(lengths), steps=result.steps, seed=seed, batch_tokens=batch_tokens,
        train_seconds=round(seconds, 1), diverged=result.diverged,
        loss_curve=[round(sum(losses[i : i + 25]) / len(losses[i : i + 25]), 3) for i in range(0, len(losses), 25)],
        final_loss=round(sum(losses[-20:]) / max(1, len(losses[-20:])), 3), accuracy=acc,
    )


def table(paths: list[Path]) -> str:
    rows = []
    for path in paths:
        data = json.loads(path.read_text())
        rows += data if isinstance(data, list) else [data]
    head = "| row | what changes | steps | seed | loss at 100 / 200 / end | far@128 | near@128 | far@512 | min |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if "exp" not in r:
            continue
        curve = r["loss_curve"]  # means over steps 25k .. 25k + 24
        at100, at200 = (f"{curve[k]:.2f}" if len(curve) > k else "-" for k in (3, 7))
        a = r["accuracy"]
        lines.append(
            f"| `{r['exp']}` | {r['text']} | {r['steps']} | {r['seed']} | {at100} / {at200} / {r['final_loss']:.2f} | "
            f"{100 * a['far@128']:.0f} | {100 * a['near@128']:.0f} | {100 * a['far@512']:.0f} | {r['train_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("grads", "train", "table"))
    p.add_argument("paths", nargs="*", type=Path, help="table: the JSON files of training rows")
    p.add_argument("--exp", action="append", choices=tuple(EXPERIMENTS), help="train: rows to run (repeatable)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-tokens", type=int, default=2048)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.part == "table":
        print(table(args.paths))
        return 0
    if args.part == "grads":
        result = gradients(("mac-y", "mac-u", "mac", "mag", "lmm"), args.seed, 16)
    else:
        result = [train_row(e, args.steps, args.seed, args.batch_tokens) for e in (args.exp or ["mac"])]
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
