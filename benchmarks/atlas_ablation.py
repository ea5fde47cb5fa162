"""ATLAS' ablation, small (arXiv 2505.23735, its ablation done on MQAR): the Titans rule against
the Omega rule with c = 1 / 4 / 16, with and without polynomial features (p = 2), with and
without Muon. Every variant is the LMM of ``titans bench`` (the memory alone as the sequence
layer), trained the same number of steps on the same batches (per seed), evaluated on the same
cells, two seeds by default.

The scale is set by Muon's cost on a CPU: Newton-Schulz on every token's momentum costs 15-25x
the Titans step at the default MQAR model's heads (2 x 32), so this runs MQAR with a vocabulary
of 16 keys and 16 values (chance 6.25%), a one-block LMM of width 32 with 2 heads of 16, trained
on 64-token sequences with 2, 4 and 8 pairs (1,000 steps of 16 sequences), and evaluated at 64
and 128 tokens with 4, 8 and 12 pairs (32 sequences per cell). Capacity shows in the pairs: 12 is
more than any training sequence held.

Prints one JSON document: the settings, one row per variant (accuracy over the cells, mean and
range over the seeds, per pair count; the answer loss at the end, steps, seconds), and every
cell's record. ``--table`` prints README's Markdown table from such a file.

    uv run python benchmarks/atlas_ablation.py --out benchmarks/results/atlas_ablation.json   # ~25 min, 2 cores
    uv run python benchmarks/atlas_ablation.py --table benchmarks/results/atlas_ablation.json
    uv run python benchmarks/atlas_ablation.py --quick                                        # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

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
from titans_memory.tasks.report import cell_text, summary

_O, _A = dict(algorithm="omeganet"), dict(algorithm="atlas")
#: name -> the memory fields that differ from the Titans LMM (omeganet with c = 1 is the Titans rule)
VARIANTS: dict[str, dict] = {
    "titans (c=1)": {},
    "omega c=4": dict(_O, omega_window=4),
    "omega c=16": dict(_O, omega_window=16),
    "titans +poly2": dict(_O, feature_degree=2),
    "omega c=16 +poly2": dict(_O, omega_window=16, feature_degree=2),
    "titans +muon": dict(_A),
    "atlas c=4 (omega +muon)": dict(_A, omega_window=4),
    "atlas c=16 (omega +muon)": dict(_A, omega_window=16),
}
#: run when named: Newton-Schulz on every token's (153 x 64) momentum costs ~100x the Titans step
EXPENSIVE: dict[str, dict] = {"atlas c=16 +poly2": dict(_A, omega_window=16, feature_degree=2)}
ALL = {**VARIANTS, **EXPENSIVE}
#: relative step cost (one thread, this model), measured: the most expensive jobs start first
_COST = {"titans +muon": 15.0, "atlas c=4 (omega +muon)": 15.0, "atlas c=16 (omega +muon)": 18.0,
         "atlas c=16 +poly2": 100.0, "titans +poly2": 4.0, "omega c=16 +poly2": 4.0}

VOCAB = MQARVocab(n_keys=16, n_values=16)
MODEL = TaskModelConfig(vocab_size=VOCAB.size, dim=32, depth=1, heads=2, window=16, chunk_size=16)
TRAIN_LENGTH, TRAIN_PAIRS, BATCH_TOKENS = 64, (2, 4, 8), 1024
LENGTHS, PAIRS, SAMPLES = (64, 128), (4, 8, 12), 32


def _batches(seed: int):
    """The training batches of a seed: the same for every variant."""
    rng = np.random.default_rng(10_000 + seed)
    for step in itertools.count():
        yield mqar_batch(BATCH_TOKENS // TRAIN_LENGTH, TRAIN_LENGTH, TRAIN_PAIRS[step % len(TRAIN_PAIRS)], rng, vocab=VOCAB)


def run_variant(name: str, steps: int, seed: int, samples: int, lengths=LENGTHS, pairs=PAIRS) -> list[dict]:
    """Train variant ``name`` (one seed) and evaluate it on every (pairs, length) cell."""
    torch.set_num_threads(1)
    key = "ablation:" + name
    MODELS[key] = ModelSpec("lmm", dict(ALL[name]), group="atlas", text=name)  # in this process only
    model = build_model(key, MODEL, seed=seed)
    result = train_on_answers(model, _batches(seed), TrainSettings(steps=steps, warmup=min(30, steps // 10)))
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


def seed_means(recs: list[dict], pairs: int | None = None) -> list[float]:
    """Per seed, the mean accuracy over its cells (of ``pairs`` pairs only, if given); NaN for a
    seed whose model diverged."""
    seeds = sorted({r["seed"] for r in recs})
    cells = [r for r in recs if pairs is None or r["pairs"] == pairs]
    return [float(np.mean([np.nan if r["accuracy"] is None else r["accuracy"] for r in cells if r["seed"] == s]))
            for s in seeds]


def summarise(name: str, recs: list[dict]) -> dict:
    """One variant's row: accuracy over the cells per seed, then mean and range over the seeds."""
    seeds = sorted({r["seed"] for r in recs})
    per_seed = [v for v in seed_means(recs) if np.isfinite(v)]
    by_pairs = {}
    for p in sorted({r["pairs"] for r in recs}):
        mean, lo, hi = summary(seed_means(recs, p))
        by_pairs[p] = dict(mean=mean, min=lo, max=hi)
    first = [next(r for r in recs if r["seed"] == s) for s in seeds]  # a seed's training facts
    return dict(
        variant=name, memory=ALL[name], seeds=seeds,
        accuracy=float(np.mean(per_seed)) if per_seed else None,
        accuracy_range=[min(per_seed), max(per_seed)] if per_seed else None, accuracy_per_seed=per_seed,
        accuracy_by_pairs=by_pairs, final_loss=[r["final_loss"] for r in first],
        train_steps=sorted({r["train_steps"] for r in first}), diverged=any(r["diverged"] for r in recs),
        train_seconds=[r["train_seconds"] for r in first],
    )


def table(path: str) -> str:
    """README's Markdown table of a record file this script wrote (cells as ``titans bench
    report`` writes them: the mean over the seeds and their range, a diverged seed counted)."""
    with open(path) as f:
        data = json.load(f)
    pairs = data["pairs"]
    head = ["variant", "accuracy %", *(f"{p} pairs" for p in pairs), "answer loss at the end", "steps", "train s (per seed)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in data["rows"]:
        recs = [r for r in data["records"] if r["variant"] == row["variant"]]
        cells = [cell_text(seed_means(recs)), *(cell_text(seed_means(recs, p)) for p in pairs)]
        loss = " / ".join(f"{x:.2f}" for x in row["final_loss"])
        secs = " / ".join(f"{x:.0f}" for x in row["train_seconds"])
        steps = ", ".join(str(x) for x in row["train_steps"])
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {loss} | {steps} | {secs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 steps, 8 samples per cell (a smoke run)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="names of VARIANTS or EXPENSIVE (default: every VARIANT)")
    parser.add_argument("--workers", type=int, default=2, help="processes of one thread each")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--table", metavar="JSON", help="print the Markdown table of this record file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return None
    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose among {list(ALL)}")
    if args.steps < 1 or args.workers < 1:
        parser.error("--steps and --workers must be >= 1")
    steps, samples = (40, 8) if args.quick else (args.steps, SAMPLES)
    jobs = sorted(((n, s) for n in names for s in args.seeds), key=lambda j: -_COST.get(j[0], 1.0))
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {job: pool.submit(run_variant, job[0], steps, job[1], samples) for job in jobs}
        results = {}
        for job, fut in futures.items():
            results[job] = fut.result()
            print(f"done: {job[0]} seed {job[1]} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    records = [r for n in names for s in args.seeds for r in results[(n, s)]]
    rows = [summarise(n, [r for r in records if r["variant"] == n]) for n in names]
    out = dict(
        machine=machine_info(), quick=args.quick, steps=steps, seeds=args.seeds, vocab=VOCAB.__dict__,
        chance=1 / VOCAB.n_values, model=asdict(MODEL), train_length=TRAIN_LENGTH,
        train_pairs=list(TRAIN_PAIRS), batch_tokens=BATCH_TOKENS, lengths=list(LENGTHS), pairs=list(PAIRS),
        samples=samples, workers=args.workers, rows=rows, records=records,
        wall_seconds=round(time.perf_counter() - start, 1),
    )
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return out


if __name__ == "__main__":
    main()
