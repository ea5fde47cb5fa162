"""What the benchmarks share: timing (contenders in turn, medians) and the machine's description."""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch


def machine_info() -> dict[str, object]:
    """Python, torch, torch's thread count and the processor, for the JSON output."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def median_seconds(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median wall time of each function over ``reps`` runs.

    The functions run in turn, run by run, so a slow spell of the machine hits every contender
    alike; the first round is a warm-up and is discarded.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(reps + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if rep:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
