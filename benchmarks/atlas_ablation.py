"""ATLAS' ablation, small (arXiv 2505.23735, its ablation table done on MQAR): the Titans rule
against the Omega rule with c = 1 / 4 / 16, with and without polynomial features (p = 2), with
and without Muon, every variant an LMM trained the same number of steps on the same MQAR batches
(``titans bench mqar``'s task, model sizes and training), then evaluated on the same cells.

Prints one JSON document: the settings, one row per variant (mean accuracy over the evaluated
cells, per pair count, the training loss at the end, seconds), and the records of every cell.

    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/atlas_ablation.py --quick
    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/atlas_ablation.py --steps 300 --budget-minutes 25
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

from titans_memory.tasks.bench import Job, MQARSettings, quick, run_job
from titans_memory.tasks.longcontext import MODELS, ModelSpec

#: name -> the memory fields that differ from the Titans LMM of the benchmark
_O, _A = dict(algorithm="omeganet"), dict(algorithm="atlas")
VARIANTS: dict[str, dict] = {
    "titans (c=1)": {},
    "titans +poly2": dict(_O, feature_degree=2),  # omeganet with c = 1 is the Titans rule
    "titans +muon": dict(_A),
    "omega c=4": dict(_O, omega_window=4),
    "omega c=16": dict(_O, omega_window=16),
    "omega c=16 +poly2": dict(_O, omega_window=16, feature_degree=2),
    "atlas c=4 (omega +muon)": dict(_A, omega_window=4),
    "atlas c=16 (omega +muon)": dict(_A, omega_window=16),
    "atlas c=16 +poly2": dict(_A, omega_window=16, feature_degree=2),
}


#: the default sizes: MQAR at the bench's sizes was not learned in ~300 steps by any model (README,
#: "MQAR"), so the ablation runs a task a one-block LMM learns in a few hundred steps
SMALL = dict(train_lengths=(64,), train_pairs=(2, 4), batch_tokens=1024, lengths=(64, 128), pairs=(2, 4, 8), samples=16)
SMALL_MODEL = dict(dim=32, depth=1, heads=2, window=16, chunk_size=16)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 steps, 2 lengths, 4 samples (minutes)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every variant")
    parser.add_argument("--bench-sizes", action="store_true",
                        help="the sizes of titans bench mqar (width 64, 2 blocks, 128-token sequences of 4-16 pairs); "
                             "default: SMALL (width 32, 1 block, 64-token sequences of 2-4 pairs: learnable in minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="*", default=None, help="names of VARIANTS (default: all)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop starting new variants once this is spent (the rows say which ran)")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose among {list(VARIANTS)}")
    settings = MQARSettings(models=("lmm",), seeds=tuple(args.seeds), budget_minutes=None, workers=1)
    if not args.bench_sizes:
        settings = replace(settings, **SMALL, model=replace(settings.model, **SMALL_MODEL))
    settings = replace(settings, train=replace(settings.train, steps=args.steps, warmup=min(30, args.steps // 10)))
    if args.quick:
        settings = replace(quick(settings), budget_minutes=None)
    start, rows, records = time.perf_counter(), [], []
    for name in names:
        if args.budget_minutes is not None and time.perf_counter() - start > 60 * args.budget_minutes:
            rows.append(dict(variant=name, skipped="time budget spent"))
            continue
        key = "ablation:" + name
        MODELS[key] = ModelSpec("lmm", dict(VARIANTS[name]), group="atlas", text=name)  # in this process only
        t0 = time.perf_counter()
        recs = []
        for seed in settings.seeds:
            recs += run_job(Job(settings, key, seed, None))
        acc = [r["accuracy"] for r in recs if r["accuracy"] is not None]
        by_pairs = {}
        for r in recs:
            if r["accuracy"] is not None:
                by_pairs.setdefault(r["pairs"], []).append(r["accuracy"])
        rows.append(dict(
            variant=name, memory=VARIANTS[name], accuracy=float(np.mean(acc)) if acc else None,
            accuracy_by_pairs={p: float(np.mean(v)) for p, v in sorted(by_pairs.items())},
            final_loss=float(np.mean([r["final_loss"] for r in recs if r["final_loss"] is not None] or [np.nan])),
            train_steps=recs[0]["train_steps"], diverged=any(r["diverged"] for r in recs),
            seconds=round(time.perf_counter() - t0, 1),
        ))
        records += [{**r, "model": name} for r in recs]
        print(json.dumps(rows[-1]), flush=True)
    out = dict(
        machine=machine_info(), quick=args.quick, steps=settings.train.steps, seeds=list(settings.seeds),
        lengths=list(settings.lengths), pairs=list(settings.pairs), samples=settings.samples,
        train_pairs=list(settings.train_pairs), model=settings.model.__dict__, rows=rows, records=records,
        seconds=round(time.perf_counter() - start, 1),
    )
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return out


if __name__ == "__main__":
    main()
