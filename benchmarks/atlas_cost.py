"""What ATLAS' memory costs beside the Titans memory, at the same shapes: forward and forward +
backward of one :class:`NeuralMemory` (chunked operator, float32, one thread), 1 and 4 heads,
T = 4,096 tokens, Omega windows c = 4 and 16, with and without Muon, and OmegaNet with the
polynomial features (p = 2). The variants marked ``materialised`` (run when named) run the first
chunked form (``omega_materialised``: every per-token gradient and weight of a chunk formed) in
place of the default one (``omega_dual`` for OmegaNet, ``omega_atlas`` for Atlas), so old and new
paths can be timed side by side in one run.

Prints one JSON document with the median seconds of ``--repeats`` timed runs (after one warm-up)
and the ratio to the Titans memory of the same heads. On a shared machine the ratios are
indicative only: another process slows either side.

    uv run python benchmarks/atlas_cost.py --out benchmarks/results/atlas_cost_4096.json
    uv run python benchmarks/atlas_cost.py --table benchmarks/results/atlas_cost_4096.json   # README's table
    uv run python benchmarks/atlas_cost.py --quick   # T = 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.algorithms.omega import OPERATORS
from titans_memory.core.omega import omega_materialised

VARIANTS = {
    "titans": {},
    "omeganet c=4": dict(algorithm="omeganet", omega_window=4),
    "omeganet c=4 materialised": dict(algorithm="omeganet", omega_window=4),
    "omeganet c=16": dict(algorithm="omeganet", omega_window=16),
    "omeganet c=16 materialised": dict(algorithm="omeganet", omega_window=16),
    "atlas c=4": dict(algorithm="atlas", omega_window=4),
    "atlas c=4 materialised": dict(algorithm="atlas", omega_window=4),
    "atlas c=16": dict(algorithm="atlas", omega_window=16),
    "atlas c=16 materialised": dict(algorithm="atlas", omega_window=16),
    "omeganet c=16 +poly2": dict(algorithm="omeganet", omega_window=16, feature_degree=2),
}
#: the default run: the materialised forms only when named (at T = 4,096 they take minutes)
DEFAULT = [name for name in VARIANTS if not name.endswith("materialised")]


@contextlib.contextmanager
def _operator(name: str):
    """The Omega rule's chunked operator for this variant: ``omega_materialised`` for the
    variants so marked, the default (``omega_chunked``) otherwise."""
    if not name.endswith("materialised"):
        yield
        return
    saved = dict(OPERATORS)
    OPERATORS.update(chunked=omega_materialised, chunked_checkpoint=omega_materialised)
    try:
        yield
    finally:
        OPERATORS.update(saved)


def _time(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T = 512, one repeat")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-warmup", action="store_true", help="time the first call too (slow variants)")
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="names of VARIANTS (default: all but the materialised forms; titans always)")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--table", metavar="JSON", help="print the Markdown table of this record file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return None
    unknown = [n for n in args.variants or [] if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose among {list(VARIANTS)}")
    torch.set_num_threads(1)
    tokens, repeats = (512, 1) if args.quick else (args.tokens, args.repeats)
    rows = []
    names = ["titans", *[n for n in (args.variants or DEFAULT) if n != "titans"]]
    for heads in args.heads:
        base = None
        for name in names:
            fields = VARIANTS[name]
            torch.manual_seed(0)
            mem = NeuralMemory(MemoryConfig(dim=args.dim, heads=heads, chunk_size=args.chunk, **fields))
            x = torch.randn(args.batch, tokens, args.dim)

            def forward(mem=mem, x=x):
                with torch.no_grad():
                    mem(x)

            def forward_backward(mem=mem, x=x):
                mem.zero_grad(set_to_none=True)
                y, _ = mem(x)
                y.square().mean().backward()

            with _operator(name):
                row = dict(variant=name, heads=heads, head_dim=args.dim // heads, tokens=tokens,
                           forward_s=_time(forward, repeats, not args.no_warmup),
                           forward_backward_s=_time(forward_backward, repeats, not args.no_warmup))
            if base is None:
                base = row
            row["forward_ratio"] = row["forward_s"] / base["forward_s"]
            row["forward_backward_ratio"] = row["forward_backward_s"] / base["forward_backward_s"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # progress; the document goes to stdout
    out = dict(machine=machine_info(), dim=args.dim, batch=args.batch, chunk=args.chunk, repeats=repeats, rows=rows)
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return out


def table(path: str) -> str:
    """README's Markdown table: per variant and head layout, forward / forward + backward as a
    ratio to the Titans memory of the same run, and the Titans seconds."""
    with open(path) as f:
        data = json.load(f)
    layouts = sorted({(r["heads"], r["head_dim"]) for r in data["rows"]})
    names = list(dict.fromkeys(r["variant"] for r in data["rows"]))
    cell = {(r["variant"], r["heads"]): r for r in data["rows"]}
    head = ["memory", *(f"{h} x {d}: forward / fwd + bwd" for h, d in layouts)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = []
        for h, _ in layouts:
            r = cell.get((name, h))
            if r is None:
                cells.append("")
            elif name == "titans":
                cells.append(f"{r['forward_s']:.2f} s / {r['forward_backward_s']:.2f} s")
            else:
                cells.append(f"{r['forward_ratio']:.1f}x / {r['forward_backward_ratio']:.1f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
