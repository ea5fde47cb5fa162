"""ATLAS' ablation, small (arXiv 2505.23735, its ablation done on MQAR): the Titans rule against
the Omega rule with c = 1 / 4 / 16, with and without polynomial features (p = 2), with and
without Muon. Every variant is the LMM of ``titans bench`` (the memory alone as the sequence
layer), trained the same number of steps on the same batches, evaluated on the same cells.

MQAR at the bench's sizes (64 keys, 64 values) was not learned in a few hundred steps by any
model (README, "MQAR"; 800 steps of a one-block LMM here reached 6% against a chance of 1.6%), so
this runs MQAR with a vocabulary of 16 keys and 16 values (chance 6.25%), sequences of 64 tokens
with 2 or 4 pairs, a one-block LMM of width 32 with 2 heads, evaluated at 64 and 128 tokens with
2, 4 and 8 pairs (32 sequences per cell).

Prints one JSON document: the settings, one row per variant (mean accuracy over the cells and per
pair count, the training loss at the end, steps, seconds), and every cell's record.

    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/atlas_ablation.py --quick
    nice -n 10 env OMP_NUM_THREADS=1 uv run python benchmarks/atlas_ablation.py --steps 250 --budget-minutes 25
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace

import numpy as np
import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

from titans_memory.tasks.longcontext import (
    MODELS,
    ModelSpec,
    TaskModelConfig,
    TrainSettings,
    build_model,
    evaluate,
    train_on_answers,
)
from titans_memory.tasks.mqar import MQARVocab, mqar_batch

_O, _A = dict(algorithm="omeganet"), dict(algorithm="atlas")
#: name -> the memory fields that differ from the Titans LMM
VARIANTS: dict[str, dict] = {  # in the order they run (a time budget cuts the last ones)
    "titans (c=1)": {},
    "omega c=4": dict(_O, omega_window=4),
    "omega c=16": dict(_O, omega_window=16),
    "atlas c=16 (omega +muon)": dict(_A, omega_window=16),
    "titans +muon": dict(_A),
    "titans +poly2": dict(_O, feature_degree=2),  # omeganet with c = 1 is the Titans rule
    "atlas c=4 (omega +muon)": dict(_A, omega_window=4),
    "omega c=16 +poly2": dict(_O, omega_window=16, feature_degree=2),
}
#: not in the default run: Newton-Schulz on every token's (153 x 64) momentum costs minutes here
EXPENSIVE: dict[str, dict] = {"atlas c=16 +poly2": dict(_A, omega_window=16, feature_degree=2)}

ALL = {**VARIANTS, **EXPENSIVE}
VOCAB = MQARVocab(n_keys=16, n_values=16)
MODEL = TaskModelConfig(vocab_size=VOCAB.size, dim=32, depth=1, heads=2, window=16, chunk_size=16)
TRAIN_LENGTH, TRAIN_PAIRS, BATCH_TOKENS = 64, (2, 4), 1024
LENGTHS, PAIRS, SAMPLES = (64, 128), (2, 4, 8), 32


def _batches(seed: int):
    rng = np.random.default_rng(10_000 + seed)
    for step in itertools.count():
        yield mqar_batch(BATCH_TOKENS // TRAIN_LENGTH, TRAIN_LENGTH, TRAIN_PAIRS[step % len(TRAIN_PAIRS)], rng, vocab=VOCAB)


def run_variant(name: str, steps: int, seed: int, samples: int, lengths, pairs) -> list[dict]:
    key = "ablation:" + name
    MODELS[key] = ModelSpec("lmm", dict(ALL[name]), group="atlas", text=name)  # in this process only
    model = build_model(key, MODEL, seed=seed)
    train = TrainSettings(steps=steps, warmup=min(30, steps // 10))
    result = train_on_answers(model, _batches(seed), train)
    records = []
    for n_pairs in pairs:
        for length in lengths:
            batch = mqar_batch(samples, length, n_pairs, 1_000 * n_pairs + length, vocab=VOCAB)
            accuracy = None if result.diverged else evaluate(model, batch)
            records.append(dict(
                variant=name, seed=seed, pairs=n_pairs, context_length=length, accuracy=accuracy,
                chance=batch.chance, train_steps=result.steps, diverged=result.diverged,
                final_loss=float(np.mean(result.losses[-20:])) if result.losses else None,
                train_seconds=round(result.seconds, 1),
            ))
    return records


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 steps, 8 samples per cell (a smoke run)")
    parser.add_argument("--steps", type=int, default=250, help="training steps of every variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="names of VARIANTS or EXPENSIVE (default: every VARIANT)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no new variant once this is spent (the rows say which were skipped)")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose among {list(ALL)}")
    steps, samples = (40, 8) if args.quick else (args.steps, SAMPLES)
    start, rows, records = time.perf_counter(), [], []
    for name in names:
        if args.budget_minutes is not None and time.perf_counter() - start > 60 * args.budget_minutes:
            rows.append(dict(variant=name, skipped="time budget spent"))
            continue
        t0 = time.perf_counter()
        recs = [r for seed in args.seeds for r in run_variant(name, steps, seed, samples, LENGTHS, PAIRS)]
        acc = [r["accuracy"] for r in recs if r["accuracy"] is not None]
        by_pairs: dict[int, list[float]] = {}
        for r in recs:
            if r["accuracy"] is not None:
                by_pairs.setdefault(r["pairs"], []).append(r["accuracy"])
        rows.append(dict(
            variant=name, memory=ALL[name], accuracy=float(np.mean(acc)) if acc else None,
            accuracy_by_pairs={p: float(np.mean(v)) for p, v in sorted(by_pairs.items())},
            final_loss=float(np.mean([r["final_loss"] for r in recs if r["final_loss"] is not None] or [np.nan])),
            train_steps=recs[0]["train_steps"], diverged=any(r["diverged"] for r in recs),
            seconds=round(time.perf_counter() - t0, 1),
        ))
        records += recs
        print(json.dumps(rows[-1]), flush=True)
    out = dict(
        machine=machine_info(), quick=args.quick, steps=steps, seeds=args.seeds, vocab=VOCAB.__dict__,
        chance=1 / VOCAB.n_values, model=replace(MODEL).__dict__, train_length=TRAIN_LENGTH,
        train_pairs=list(TRAIN_PAIRS), batch_tokens=BATCH_TOKENS, lengths=list(LENGTHS), pairs=list(PAIRS),
        samples=samples, rows=rows, records=records, seconds=round(time.perf_counter() - start, 1),
    )
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return out


if __name__ == "__main__":
    main()
