"""The stability envelope of the default config and every preset, and the recall it costs.

Prints one JSON document:

* ``envelope``: for each config (the library default and every MIRAS preset, at ``--dim`` with
  ``--heads``) and each gate regime (``init``: gates as a fresh layer has them; ``forced``: theta =
  max_lr and eta = 0.999), streams of ``--tokens`` tokens at input scales 1e-3 ... 1e6, without and
  with bursts of 1, 4 and 64 tokens at 10x, 1e3x and 1e6x at a random position: whether every
  output and state stayed finite, the largest weight norm ``||M_t||_F`` and the largest ratio to the
  documented bound ``b^M_t`` (docs/design.md, "Stability"; <= 1 is the guarantee); ``rows`` has
  every stream, ``summary`` one line per config and regime;
* ``unbounded``: the same for the default config with both mechanisms off (``input_norm=False``,
  ``max_step_norm=None``), the rule before the stability work (no bound exists there: finiteness
  only);
* ``recall``: recall against age (``titans_memory.tasks.recall_vs_age``, unit-scale keys and values)
  and the outlier burst, for the ``titans`` preset token by token and the default config's chunks
  of 64, with the step bound on and off, on the same seeds.

    uv run python benchmarks/stability.py                 # dim 256, 16k tokens (tens of minutes)
    uv run python benchmarks/stability.py --quick         # dim 16, 512 tokens (seconds)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script
from tqdm import tqdm

from titans_memory.core import PRESETS, MemoryConfig, preset
from titans_memory.core.stability import stability_envelope
from titans_memory.tasks import outlier_burst, recall_vs_age


def summarise(rows) -> dict:
    return {
        "streams": len(rows),
        "finite": sum(r.finite for r in rows),
        "max_weight_norm": max(r.max_weight_norm for r in rows),
        "max_ratio_to_bound": max(r.max_ratio for r in rows),
        "worst_stream": max(rows, key=lambda r: r.max_weight_norm).__dict__,
    }


def recall_numbers(seeds: list[int], trials: int) -> dict:
    """Recall vs age (mean cosine, by age bucket) and the burst, bound on and off, same seeds."""
    out = {}
    cases = {
        "titans (chunk 1)": dict(name="titans"),
        "default config (chunk 64)": dict(name="titans", chunk_size=64),
    }
    for label, kwargs in cases.items():
        for bound in (10.0, None):
            key = f"{label}, max_step_norm={bound}"
            curves = [recall_vs_age(**kwargs, pairs=96, trials=trials, seed=s, max_step_norm=bound) for s in seeds]
            cos = np.mean([c.cosine for c in curves], axis=0)  # by age, 0 = the last pair written
            bursts = [
                outlier_burst(**kwargs, trials=trials, seed=s, max_step_norm=bound, burst_scale=100.0)
                for s in seeds
            ]
            out[key] = {
                "recall_by_age": {f"{a}-{b - 1}": float(cos[a:b].mean()) for a, b in ((0, 8), (8, 32), (32, 64), (64, 96))},
                "burst": {
                    "old_pairs_before": float(np.mean([b.before for b in bursts])),
                    "old_pairs_after_burst": float(np.mean([b.after_burst for b in bursts])),
                    "old_pairs_control": float(np.mean([b.after_clean for b in bursts])),
                    "recent_pairs_after_burst": float(np.mean([b.recent_clean for b in bursts])),
                    "recent_pairs_control": float(np.mean([b.recent_control for b in bursts])),
                },
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--configs", nargs="*", default=None, help="default and/or preset names (default: all)")
    parser.add_argument("--quick", action="store_true", help="dim 16, 512 tokens, the default config: a smoke run")
    parser.add_argument("--markdown", metavar="FILE", help="also write README's tables (markdown) to FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick:
        args.dim, args.heads, args.tokens = 16, 2, 512
        args.configs = args.configs or ["default"]
    names = args.configs or ["default", *PRESETS]

    def config(name: str, **extra) -> MemoryConfig:
        if name == "default":
            return MemoryConfig(dim=args.dim, heads=args.heads, **extra)
        return preset(name, dim=args.dim, heads=args.heads, **extra)

    started = time.perf_counter()
    # the rule without the bounds first: it is the one that goes NaN
    off = config("default", input_norm=False, max_step_norm=None)
    unbounded = [r.__dict__ for r in stability_envelope("default, unbounded", off, tokens=args.tokens, piece=1024)]
    envelope, summary = [], {}
    for name in tqdm(names, desc="envelope", unit="config"):
        rows = stability_envelope(name, config(name), tokens=args.tokens, piece=1024)
        envelope.extend(r.__dict__ for r in rows)
        for regime in ("init", "forced"):
            summary[f"{name}/{regime}"] = summarise([r for r in rows if r.regime == regime])
    seeds = [0] if args.quick else [0, 1, 2]
    recall = recall_numbers(seeds, trials=4 if args.quick else 32)
    result = {
        "machine": machine_info(),
        "shape": {"dim": args.dim, "heads": args.heads, "tokens": args.tokens},
        "summary": summary,
        "unbounded_default": {
            "streams": len(unbounded),
            "finite": sum(r["finite"] for r in unbounded),
            "not_finite": [(r["regime"], r["scale"], r["burst"]) for r in unbounded if not r["finite"]],
        },
        "recall": recall,
        "rows": envelope,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(result, indent=1))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(result))
    return result


def markdown(result: dict) -> str:
    """README's tables: one row per config, both gate regimes; the unbounded rule; recall."""
    shape = result["shape"]
    lines = [
        f"Envelope at dim {shape['dim']}, {shape['heads']} head(s), {shape['tokens']} tokens per stream; "
        "60 streams per regime (6 scales x [no burst + 9 bursts]):",
        "",
        "| config | init gates: finite | max ‖M‖ | max ‖M‖ / bound | forced gates: finite | max ‖M‖ | max ‖M‖ / bound |",
        "|---|---|---|---|---|---|---|",
    ]
    names = dict.fromkeys(key.split("/")[0] for key in result["summary"])
    for name in names:
        cells = []
        for regime in ("init", "forced"):
            row = result["summary"][f"{name}/{regime}"]
            cells += [f"{row['finite']}/{row['streams']}", f"{row['max_weight_norm']:.3g}",
                      f"{row['max_ratio_to_bound']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    scales = sorted({row["scale"] for row in result["rows"]})
    for regime in ("init", "forced"):
        lines += ["", f"Per input scale, gates `{regime}`: finite streams / 10 (no burst and 9 bursts), and the "
                  "largest ‖M‖ / bound over them:", "",
                  "| config | " + " | ".join(f"scale {sc:g}" for sc in scales) + " |",
                  "|---|" + "---|" * len(scales)]
        for name in names:
            cells = []
            for sc in scales:
                rows = [r for r in result["rows"] if r["config"] == name and r["regime"] == regime and r["scale"] == sc]
                cells.append(f"{sum(r['finite'] for r in rows)}/{len(rows)}, {max(r['max_ratio'] for r in rows):.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    off = result["unbounded_default"]
    lines += ["", f"The default config with both mechanisms off (the rule before): {off['finite']}/{off['streams']} "
              "streams finite.", "",
              "| recall (mean cosine) | age 0-7 | 8-31 | 32-63 | 64-95 | old pairs after a 100x burst (control) | recent pairs after it (control) |",
              "|---|---|---|---|---|---|---|"]
    for key, row in result["recall"].items():
        ages = row["recall_by_age"]
        burst = row["burst"]
        lines.append(
            f"| {key} | " + " | ".join(f"{v:.3f}" for v in ages.values())
            + f" | {burst['old_pairs_after_burst']:.3f} ({burst['old_pairs_control']:.3f})"
            + f" | {burst['recent_pairs_after_burst']:.3f} ({burst['recent_pairs_control']:.3f}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
