"""Speed and peak memory of the demo layer's ``process_sequence``, against the original's loop.

    uv run python benchmarks/demo_layer.py [--long-steps 100000] [--repeats 3] [--quick]

Prints one JSON object. Each measurement runs in a fresh subprocess, so that its peak resident
memory (``ru_maxrss``) is its own; ``rss_increase_mb`` is that peak minus the resident memory
just before the run (interpreter, torch and the input excluded). Settings: ``input_dim`` 1,
``memory_dim`` 16, the other arguments at their defaults, Gaussian noise as input, one torch
thread (the work is thousands of tiny ops: threads only add contention).

The **baseline** is a faithful re-implementation of the original demo's per-step loop, kept in
this file only to be timed: autograd and ``.backward()`` for each step, the surprise computed
twice (raw, then again inside the momentum average), ``.item()`` for every write, a Python loop
over the parameters for each update, and a clone of every trace entry and of every weight at
every step. It diverges on inputs with large anomalies; Gaussian noise keeps it finite here.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

INPUT_DIM = 1
MEMORY_DIM = 16


# ============================================================================================
# BASELINE: the original demo's naive per-step loop (re-implemented here, for timing only)
# ============================================================================================


class _BaselineSurprise(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int = 16, momentum: float = 0.0) -> None:
        super().__init__()
        self.predictor = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, input_dim)
        )
        self.momentum = momentum
        self.ema: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            prediction = self.predictor(x)
        return torch.mean((prediction - x) ** 2)

    def update_predictor(self, x: torch.Tensor, lr: float) -> None:
        loss = torch.mean((self.predictor(x) - x) ** 2)
        self.predictor.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in self.predictor.parameters():
                p -= lr * p.grad

    def compute_with_momentum(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.forward(x)
        if self.ema is None:
            self.ema = raw.clone()
        else:
            self.ema = self.momentum * self.ema + (1 - self.momentum) * raw
        return self.ema.clone()


class _BaselineMemory(nn.Module):
    def __init__(self, input_dim: int, memory_dim: int, forget_rate: float, write_lr: float):
        super().__init__()
        self.memory_net = nn.Sequential(
            nn.Linear(input_dim, memory_dim),
            nn.ReLU(),
            nn.Linear(memory_dim, memory_dim),
            nn.ReLU(),
            nn.Linear(memory_dim, input_dim),
        )
        self.forget_rate = forget_rate
        self.write_lr = write_lr

    def read(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.memory_net(x)

    def write(self, x: torch.Tensor, surprise: torch.Tensor) -> None:
        if surprise.item() < 1e-8:
            return
        loss = torch.mean((self.memory_net(x) - x) ** 2)
        self.memory_net.zero_grad()
        loss.backward()
        lr = self.write_lr * surprise.item()
        with torch.no_grad():
            for p in self.memory_net.parameters():
                p -= lr * p.grad

    def apply_forgetting(self) -> None:
        if self.forget_rate <= 0:
            return
        with torch.no_grad():
            for p in self.memory_net.parameters():
                p *= 1.0 - self.forget_rate

    def snapshot(self) -> list[torch.Tensor]:
        return [p.data.clone() for p in self.memory_net.parameters()]


class BaselineLayer:
    """BASELINE: the original TitansMemoryLayer, same defaults."""

    def __init__(
        self,
        input_dim: int,
        memory_dim: int = 32,
        hidden_dim: int = 16,
        momentum: float = 0.0,
        forget_rate: float = 0.01,
        surprise_lr: float = 0.01,
        write_lr: float = 0.01,
    ) -> None:
        self.surprise_metric = _BaselineSurprise(input_dim, hidden_dim, momentum)
        self.memory = _BaselineMemory(input_dim, memory_dim, forget_rate, write_lr)
        self.surprise_lr = surprise_lr

    def process_sequence(self, seq: torch.Tensor, snapshot_every: int = 1) -> dict[str, list]:
        if snapshot_every != 1:
            raise ValueError("the original records a snapshot at every step")
        trace: dict[str, list] = {
            "outputs": [],
            "surprise_scores": [],
            "surprise_momentum": [],
            "memory_snapshots": [],
        }
        self.surprise_metric.ema = None
        for t in range(seq.shape[0]):
            x = seq[t]
            raw = self.surprise_metric(x)
            smooth = self.surprise_metric.compute_with_momentum(x)
            y = self.memory.read(x)
            self.memory.write(x, raw)
            self.surprise_metric.update_predictor(x, self.surprise_lr)
            self.memory.apply_forgetting()
            trace["outputs"].append(y.clone())
            trace["surprise_scores"].append(raw.clone())
            trace["surprise_momentum"].append(smooth.clone())
            trace["memory_snapshots"].append(self.memory.snapshot())
        return trace


# ============================================================================================
# Measurement
# ============================================================================================


def _rss_mb() -> float:
    """Current resident set size, in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make_layer(impl: str) -> Any:
    if impl == "ours":
        from titans_memory.demo import TitansMemoryLayer

        return TitansMemoryLayer(INPUT_DIM, memory_dim=MEMORY_DIM)
    return BaselineLayer(INPUT_DIM, memory_dim=MEMORY_DIM)


def worker(
    impl: str, steps: int, snapshot_every: int, repeats: int, as_tensors: bool = False
) -> dict[str, Any]:
    """Time ``repeats`` fresh runs of ``steps`` steps (best one reported), in this process."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    seq = torch.randn(steps, INPUT_DIM, generator=gen)
    warm = torch.randn(200, INPUT_DIM, generator=gen)
    torch.manual_seed(0)
    _make_layer(impl).process_sequence(warm)  # first-call overheads out of the timing

    rss_before = _rss_mb()
    seconds = []
    for _ in range(repeats):
        torch.manual_seed(0)
        layer = _make_layer(impl)
        kwargs: dict[str, Any] = {} if snapshot_every == 1 else {"snapshot_every": snapshot_every}
        if as_tensors:
            kwargs["as_tensors"] = True
        start = time.perf_counter()
        result = layer.process_sequence(seq, **kwargs)
        seconds.append(time.perf_counter() - start)
        final_surprise = float(result["surprise_scores"][-1])
        del result, layer
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    best = min(seconds)
    return {
        "steps": steps,
        "snapshot_every": snapshot_every,
        "as_tensors": as_tensors,
        "repeats": repeats,
        "seconds_best": round(best, 4),
        "steps_per_s": round(steps / best, 1),
        "steps_per_s_all": [round(steps / s, 1) for s in seconds],
        "peak_rss_mb": round(peak, 1),
        "rss_increase_mb": round(peak - rss_before, 1),
        "finite": bool(torch.isfinite(torch.tensor(final_surprise))),
    }


def _spawn(
    impl: str, steps: int, snapshot_every: int, repeats: int, as_tensors: bool = False
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", impl, str(steps), str(snapshot_every)]
    cmd += ["--repeats", str(repeats)] + (["--as-tensors"] if as_tensors else [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs at T=2000 (best reported)")
    parser.add_argument(
        "--worker", nargs=3, metavar=("IMPL", "STEPS", "EVERY"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: T=2000 once, long run of 5000 steps"
    )
    parser.add_argument("--as-tensors", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.long_steps, args.repeats = 5000, 1

    if args.worker:
        impl, steps, every = args.worker
        print(json.dumps(worker(impl, int(steps), int(every), args.repeats, args.as_tensors)))
        return 0

    # Alternate ours and the baseline at T = 2000, so that a load spike hits both alike.
    ours_short = _spawn("ours", 2000, 1, args.repeats)
    baseline_short = _spawn("baseline", 2000, 1, args.repeats)
    ours_long = _spawn("ours", args.long_steps, 1000, 1)
    ours_long_stacked = _spawn("ours", args.long_steps, 1000, 1, as_tensors=True)
    report = {
        "benchmark": "demo_layer.process_sequence",
        "settings": {
            "input_dim": INPUT_DIM,
            "memory_dim": MEMORY_DIM,
            "other_arguments": "defaults",
            "input": "Gaussian noise",
            "torch_threads": 1,
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
        },
        "ours": {
            "T=2000": ours_short,
            f"T={args.long_steps}": ours_long,
            f"T={args.long_steps}, as_tensors": ours_long_stacked,
        },
        "baseline_original_loop": {"T=2000": baseline_short},
        "speedup_at_T=2000": round(ours_short["steps_per_s"] / baseline_short["steps_per_s"], 2),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
