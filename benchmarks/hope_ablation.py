"""HOPE's ablations at equal training steps: CMS with one level vs three, self-modification on vs off.

Trains ``hope`` (self-modifying memory + CMS levels C = 8, 32, 128), ``hope-cms1`` (one CMS level,
C = 8, the same CMS parameter count), ``hope-static`` (the inner memories frozen, values not
self-generated) and the Titans LMM as a reference, each for the same number of optimiser steps
(no time cut), on multi-query associative recall (``titans bench mqar``'s data and models), and
evaluates each on a grid of lengths and pair counts. Prints one JSON document: the settings, the
records of every cell, and per model the mean accuracy, its training seconds and final loss.

    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/hope_ablation.py > results/hope_ablation.json
    uv run python benchmarks/hope_ablation.py --quick    # a smoke run (a minute)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import numpy as np
import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

from titans_memory.tasks.bench import Job, MQARSettings, run_job
from titans_memory.tasks.longcontext import TrainSettings

MODELS = ("hope", "hope-cms1", "hope-static", "lmm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, one small cell")
    parser.add_argument("--steps", type=int, default=120, help="optimiser steps of every model")
    parser.add_argument("--batch-tokens", type=int, default=1024, help="tokens per step (8 sequences of 128)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings = MQARSettings(
        models=tuple(args.models), seeds=tuple(args.seeds), train=TrainSettings(steps=args.steps, warmup=20),
        lengths=(64, 128, 256), pairs=(4, 8, 16), samples=8, budget_minutes=None, workers=1,
        batch_tokens=args.batch_tokens,
    )
    if args.quick:
        settings = replace(
            settings, train=TrainSettings(steps=3, warmup=1), lengths=(64,), pairs=(4,), samples=2,
            batch_tokens=256, models=("hope", "hope-static"),
        )
    records: list[dict] = []
    for model in settings.models:
        for seed in settings.seeds:
            start = time.perf_counter()
            rows = run_job(Job(settings, model, seed, None))
            for r in rows:
                r["wall_seconds"] = round(time.perf_counter() - start, 2)
            records += rows
    summary = {}
    for model in settings.models:
        rows = [r for r in records if r["model"] == model]
        acc = [r["accuracy"] for r in rows if r["accuracy"] is not None]
        summary[model] = {
            "mean_accuracy": float(np.mean(acc)) if acc else None,
            "by_pairs": {
                str(p): float(np.mean([r["accuracy"] for r in rows if r["pairs"] == p and r["accuracy"] is not None]))
                for p in settings.pairs
                if any(r["pairs"] == p and r["accuracy"] is not None for r in rows)
            },
            "train_steps": sorted({r["train_steps"] for r in rows}),
            "train_seconds": float(np.mean([r["train_seconds"] for r in rows])),
            "final_loss": float(np.mean([r["final_loss"] for r in rows if r["final_loss"] is not None])),
            "chance": rows[0]["chance"],
        }
    out = {
        "machine": machine_info(),
        "task": "mqar",
        "settings": {k: v for k, v in asdict(settings).items() if k != "model"} | {"model": asdict(settings.model)},
        "summary": summary,
        "records": records,
    }
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
