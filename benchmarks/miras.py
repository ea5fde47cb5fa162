"""Speed of every MIRAS preset: the chunk-parallel operator against the token-by-token reference.

Prints one JSON document: tokens per second of a forward pass (no grad) of ``NeuralMemory`` for
each preset, with ``backend="chunked"`` and ``backend="recurrent"``, at the shape of
``benchmarks/neural_memory.py`` (batch 2, T = 1024, dim 256, 4 heads of 64, chunk 64). The
reference is slow, so it runs on a shorter sequence (``--recurrent-seq``); tokens per second
compare across the two lengths because both backends cost linear time in T. Every preset runs at
chunk 64 so the shapes match (the TTT presets' own mini-batch is 16). Medians of a few runs, the
two backends alternating; run on an idle machine.

    uv run python benchmarks/miras.py            # the full set (under a minute on 2 cores)
    uv run python benchmarks/miras.py --quick    # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import machine_info, median_seconds  # benchmarks/_timing.py, beside this script

from titans_memory.core import PRESETS, NeuralMemory, preset


def bench_preset(
    name: str, *, batch: int, seq: int, recurrent_seq: int, dim: int, heads: int, head_dim: int,
    chunk: int, reps: int,
) -> dict:
    """Tokens/s of one preset, chunked on ``seq`` tokens and recurrent on ``recurrent_seq``."""
    cfg = preset(name, dim=dim, heads=heads, head_dim=head_dim, chunk_size=chunk)
    torch.manual_seed(0)
    mem = NeuralMemory(cfg).eval()
    x_long = torch.randn(batch, seq, dim)
    x_short = x_long[:, :recurrent_seq].contiguous()

    def chunked() -> None:
        with torch.no_grad():
            mem(x_long, backend="chunked")

    def recurrent() -> None:
        with torch.no_grad():
            mem(x_short, backend="recurrent")

    t = median_seconds({"chunked": chunked, "recurrent": recurrent}, reps)
    chunked_rate = batch * seq / t["chunked"]
    recurrent_rate = batch * recurrent_seq / t["recurrent"]
    return {
        "choices": {
            "depth": cfg.depth,
            "objective": cfg.objective,
            "retention": cfg.retention,
            "momentum": cfg.momentum,
            "forget": cfg.forget,
            "decayed_gradient": cfg.decayed_gradient,
        },
        "chunked_tokens_per_s": chunked_rate,
        "recurrent_tokens_per_s": recurrent_rate,
        "chunked_speedup": chunked_rate / recurrent_rate,
        "seconds": {"chunked": t["chunked"], "recurrent": t["recurrent"]},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per backend")
    parser.add_argument("--recurrent-seq", type=int, default=None, help="T of the reference")
    args = parser.parse_args(argv)
    if args.quick:
        shape = dict(batch=1, seq=64, dim=32, heads=2, head_dim=16, chunk=16)
        recurrent_seq, reps = args.recurrent_seq or 32, args.reps or 1
    else:
        shape = dict(batch=2, seq=1024, dim=256, heads=4, head_dim=64, chunk=64)
        recurrent_seq, reps = args.recurrent_seq or 256, args.reps or 7
    recurrent_seq = min(recurrent_seq, shape["seq"])
    result = {
        "machine": machine_info(),
        "shape": {**shape, "recurrent_seq": recurrent_seq, "dtype": "float32", "pass": "forward, no grad"},
        "reps": reps,
        "presets": {
            name: bench_preset(name, recurrent_seq=recurrent_seq, reps=reps, **shape) for name in PRESETS
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
