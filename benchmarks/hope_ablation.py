"""HOPE's ablations at equal training steps: CMS with three levels vs one, self-modification on vs off.

Four models, each trained for the same number of optimiser steps (no time cut), same data, same
seed, same width:

* ``hope``: the self-modifying memory, then CMS levels written every 8, 32 and 128 tokens;
* ``hope-cms1``: one CMS level (every 8 tokens) with the same total MLP width;
* ``hope-static``: the inner memories frozen and the values not self-generated;
* ``lmm``: the Titans LMM (the library's memory alone), for reference.

``--task lm`` (default): byte-level language modelling of Python's stdlib (``titans train``'s
default data), the carried state spanning ``seq_len * state_segments`` tokens; the result is the
held-out bits per byte at the end. ``--task mqar``: multi-query associative recall
(``titans bench mqar``'s data and models) evaluated on a grid of lengths and pair counts.

Prints one JSON document: the settings, and per model its result, training seconds and steps.

    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/hope_ablation.py > benchmarks/results/hope_ablation.json
    uv run python benchmarks/hope_ablation.py --quick    # a smoke run (seconds)
    uv run python benchmarks/hope_ablation.py --table benchmarks/results/hope_ablation*.json   # README's table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

MODELS = ("hope", "hope-cms1", "hope-static", "lmm")
HOPE_FIELDS = {
    "hope": {"hope_cms_chunks": "8,32,128"},
    "hope-cms1": {"hope_cms_chunks": "8"},
    "hope-static": {"hope_cms_chunks": "8,32,128", "hope_self_modifying": False},
}


def run_lm(models: list[str], steps: int, seed: int, quick: bool) -> dict:
    from titans_memory.training.config import TrainConfig
    from titans_memory.training.loop import train

    base = TrainConfig(
        dim=32, heads=2, depth=2, window=64, segment=64, memory_chunk=16, persistent_tokens=2, seq_len=64,
        state_segments=4, batch_size=8, steps=steps, lr=1e-2, warmup_steps=20, eval_every=steps,
        eval_tokens=4096, eval_context=512, eval_batch=16, threads=1, seed=seed,
    )
    if quick:
        base = replace(base, steps=4, warmup_steps=1, eval_every=4, eval_tokens=512, eval_context=128, batch_size=2)
    out = {"settings": asdict(base), "models": {}}
    for name in models:
        config = replace(base, arch="hope", **HOPE_FIELDS[name]) if name in HOPE_FIELDS else replace(base, arch=name)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False)
        out["models"][name] = {
            "held_out_bits_per_byte": result.final.bits_per_byte,
            "train_loss_last_20": float(np.mean([result.losses[s] for s in sorted(result.losses)[-20:]])),
            "steps": result.step,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps({name: out["models"][name]}), file=sys.stderr, flush=True)  # progress
    return out


def run_mqar(models: list[str], steps: int, seed: int, quick: bool) -> dict:
    from titans_memory.tasks.bench import Job, MQARSettings, run_job
    from titans_memory.tasks.longcontext import TrainSettings

    settings = MQARSettings(
        models=tuple(models), seeds=(seed,), train=TrainSettings(steps=steps, warmup=20), batch_tokens=1024,
        lengths=(64, 128, 256), pairs=(4, 8, 16), samples=8, budget_minutes=None, workers=1,
    )
    if quick:
        settings = replace(settings, train=TrainSettings(steps=2, warmup=1), lengths=(64,), pairs=(4,), samples=2,
                           batch_tokens=256)
    out = {"settings": {k: v for k, v in asdict(settings).items()}, "models": {}}
    for name in models:
        start = time.perf_counter()
        rows = run_job(Job(settings, name, seed, None))
        acc = [r["accuracy"] for r in rows if r["accuracy"] is not None]
        out["models"][name] = {
            "mean_accuracy": float(np.mean(acc)) if acc else None,
            "cells": [{k: r[k] for k in ("length", "pairs", "accuracy")} for r in rows],
            "chance": rows[0]["chance"],
            "steps": rows[0]["train_steps"],
            "seconds": round(time.perf_counter() - start, 1),
        }
    return out


def table(paths: list[str]) -> str:
    """The held-out bits per byte of ``--task lm`` records, one column per file (seed), and the mean."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    if any(r.get("task") != "lm" for r in runs):
        raise SystemExit("hope_ablation.py --table: every file must hold a --task lm run")
    seeds = [r["settings"].get("seed", i) for i, r in enumerate(runs)]
    head = "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | steps |"
    lines = [head, "|---" * (len(seeds) + 3) + "|"]
    for model in runs[0]["models"]:
        bits = [r["models"][model]["held_out_bits_per_byte"] for r in runs]
        steps = runs[0]["models"][model]["steps"]
        lines.append(f"| `{model}` | " + " | ".join(f"{b:.3f}" for b in bits) + f" | {np.mean(bits):.3f} | {steps} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the Markdown table of these records and exit")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few steps, tiny evaluation")
    parser.add_argument("--task", choices=("lm", "mqar"), default="lm")
    parser.add_argument("--steps", type=int, default=160, help="optimiser steps of every model (lm: a multiple of 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(1)
    models = ["hope", "hope-static"] if args.quick else args.models
    run = run_lm if args.task == "lm" else run_mqar
    out = {"machine": machine_info(), "task": args.task, **run(models, args.steps, args.seed, args.quick)}
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
