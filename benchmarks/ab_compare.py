"""A/B: this checkout's NeuralMemory against the same code at a git revision, in one process.

Timings on a shared 2-core machine drift by 20-40% between processes minutes apart, so two
separate benchmark runs cannot tell a 5% change from noise. This script imports both versions
side by side (the revision is extracted with ``git archive`` into a temporary folder and renamed
to ``titans_memory_base``), gives them the same weights, checks that they compute the same thing,
and alternates them run by run. It prints one JSON document with the medians and the median of
the per-pair ratios (``base / new`` > 1: the checkout is faster).

    uv run python benchmarks/ab_compare.py                    # against HEAD (uncommitted work)
    uv run python benchmarks/ab_compare.py --base HEAD~3 --reps 20
    uv run python benchmarks/ab_compare.py --quick            # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

import titans_memory.core as new_core

ROOT = Path(__file__).resolve().parents[1]
BASE_NAME = "titans_memory_base"


def load_base(revision: str, into: Path):
    """Import ``titans_memory.core`` as it is at ``revision``, renamed to ``titans_memory_base``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src/titans_memory"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse odd members outright
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)  # noqa: S202 (our own repository's archive)
    package = into / BASE_NAME
    (into / "src" / "titans_memory").rename(package)
    pattern = re.compile(r"\btitans_memory\b")
    for path in package.rglob("*.py"):
        path.write_text(pattern.sub(BASE_NAME, path.read_text()))
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{BASE_NAME}.core")


def compare(base_core, heads: int, head_dim: int, batch: int, seq: int, dim: int, reps: int) -> dict:
    cfg = dict(dim=dim, heads=heads, head_dim=head_dim, depth=2, expansion=4, chunk_size=64)
    new = new_core.NeuralMemory(new_core.MemoryConfig(**cfg))
    base = base_core.NeuralMemory(base_core.MemoryConfig(**cfg))
    # strict=False: revisions may differ in buffers that the default config does not use (an
    # unused retention constant, say); the output difference below shows that both compute alike
    keys = base.load_state_dict(new.state_dict(), strict=False)
    unmatched = sorted(keys.missing_keys) + sorted(keys.unexpected_keys)
    if any(not name.endswith(("lq_radius", "retention_constants")) for name in unmatched):
        raise RuntimeError(f"the revisions' parameters differ: {unmatched}")
    x = torch.randn(batch, seq, dim)
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        max_diff = (new(x)[0] - base(x)[0]).abs().max().item()
    times: dict[str, list[float]] = {}
    for rep in range(reps + 1):  # the first round warms up and is discarded
        for name, module in (("new", new), ("base", base)):
            start = time.perf_counter()
            with torch.no_grad():
                module(x)
            mid = time.perf_counter()
            module(xg)[0].sum().backward()
            module.zero_grad(set_to_none=True)
            end = time.perf_counter()
            if rep:
                times.setdefault(f"{name}_forward", []).append(mid - start)
                times.setdefault(f"{name}_forward_backward", []).append(end - mid)
    row: dict[str, object] = {"shape": f"batch={batch} T={seq} {cfg}", "max_abs_output_diff": max_diff}
    for kind in ("forward", "forward_backward"):
        new_t, base_t = times[f"new_{kind}"], times[f"base_{kind}"]
        row[f"{kind}_s"] = {"new": statistics.median(new_t), "base": statistics.median(base_t)}
        row[f"{kind}_base_over_new"] = statistics.median(b / n for b, n in zip(base_t, new_t, strict=True))
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    parser.add_argument("--reps", type=int, default=None, help="timed pairs per shape")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.quick:
        reps, batch, seq, dim, shapes = args.reps or 1, 1, 100, 32, [(2, 16)]
    else:
        reps, batch, seq, dim, shapes = args.reps or 10, 2, 1024, 256, [(1, 256), (4, 64)]
    with tempfile.TemporaryDirectory() as tmp:
        base_core = load_base(args.base, Path(tmp))
        rows = [compare(base_core, h, d, batch, seq, dim, reps) for h, d in shapes]
    result = {"machine": machine_info(), "base": args.base, "reps": reps, "rows": rows}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
