"""Training speed: tokens/s of a full training step per architecture, and DDP scaling over gloo.

Prints one JSON document:

* ``speed``: for MAC, MAG, MAL, LMM and SWA at one shared size (by default TrainConfig's model:
  dim 128, 2 layers, 4 heads, window and segment 128, memory chunk 16; batch 8 x 256 tokens,
  float32), the tokens/s of a whole training step as ``titans train`` makes it: forward with the
  carried cache, cross-entropy, backward, gradient clipping, AdamW. Medians of ``--reps`` steps,
  the architectures in turn step by step (a slow spell of the machine hits all alike);
  ``*_vs_swa`` divides by the baseline's rate.
* ``ddp``: the same step for one architecture (``--ddp-arch``, LMM by default) with the global
  batch fixed, run by 1 process with 1 thread, by 2 processes of 1 thread each under
  DistributedDataParallel (gloo, launched with torchrun), and by 1 process with 2 threads; the
  three alternate ``--ddp-rounds`` times, each a fresh launch. ``two_vs_one_process`` is the
  tokens/s ratio of the 2 processes to 1 process of 1 thread (ideal: 2), and
  ``two_processes_vs_two_threads`` the ratio to 1 process using the same 2 cores by threads.

    uv run python benchmarks/train.py            # the full run (~10 min on 2 CPU cores)
    uv run python benchmarks/train.py --quick    # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _timing import machine_info  # benchmarks/_timing.py, beside this script

from titans_memory.models import ARCHS, TitansLM
from titans_memory.training.config import TrainConfig
from titans_memory.training.loop import LMLoss, param_groups

FULL = dict(dim=128, depth=2, heads=4, window=128, segment=128, memory_chunk=16, seq_len=256, batch_size=8)
QUICK = dict(dim=16, depth=2, heads=2, window=16, segment=16, memory_chunk=8, seq_len=32, batch_size=4)


def _config(arch: str, shape: dict) -> TrainConfig:
    return TrainConfig(arch=arch, state_segments=4, **shape)


class Stepper:
    """One model and optimiser doing training steps on random tokens, its cache carried as in titans train."""

    def __init__(self, config: TrainConfig, batch: int, seed: int = 0, wrap=None) -> None:
        torch.manual_seed(seed)
        self.config = config
        self.model = TitansLM(config.model_config(256))
        loss = LMLoss(self.model)
        self.module = wrap(loss) if wrap is not None else loss
        self.optimizer = torch.optim.AdamW(param_groups(self.model, 0.1), lr=1e-3, betas=(0.9, 0.95))
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.batch, self.cache, self.step_index = batch, None, 0

    def step(self) -> None:
        if self.step_index % self.config.state_segments == 0:
            self.cache = None
        tokens = torch.randint(0, 256, (self.batch, self.config.seq_len + 1), generator=self.generator)
        loss, self.cache = self.module(tokens[:, :-1], tokens[:, 1:], self.cache)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1


def bench_speed(shape: dict, reps: int) -> dict:
    """Training tokens/s of every architecture, the architectures in turn step by step."""
    steppers = {a: Stepper(_config(a, shape), shape["batch_size"]) for a in ARCHS}
    times: dict[str, list[float]] = {a: [] for a in ARCHS}
    for rep in range(reps + 1):
        for arch, stepper in steppers.items():
            start = time.perf_counter()
            stepper.step()
            if rep:  # the first round warms up
                times[arch].append(time.perf_counter() - start)
    tokens = shape["batch_size"] * shape["seq_len"]
    rates = {a: tokens / statistics.median(ts) for a, ts in times.items()}
    return {
        a: {
            "tokens_per_s": rates[a],
            "step_seconds": statistics.median(times[a]),
            "tokens_per_s_vs_swa": rates[a] / rates["swa"],
            "parameters": sum(p.numel() for p in steppers[a].model.parameters()),
        }
        for a in ARCHS
    }


# --- DDP scaling ----------------------------------------------------------------------------------
def ddp_child(arch: str, shape: dict, steps: int) -> None:
    """One rank (or the single process): warm up, time ``steps`` steps, rank 0 prints tokens/s."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    wrap = None
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo")

        def wrap(module):
            return DistributedDataParallel(module, find_unused_parameters=True)

    config = _config(arch, shape)
    stepper = Stepper(config, shape["batch_size"] // world, seed=0, wrap=wrap)
    for _ in range(2):
        stepper.step()
    start = time.perf_counter()
    for _ in range(steps):
        stepper.step()
    seconds = time.perf_counter() - start
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        tokens = steps * shape["batch_size"] * shape["seq_len"]  # the global batch, all ranks together
        print(json.dumps({"tokens_per_s": tokens / seconds, "seconds": seconds, "world_size": world}))


def _launch(processes: int, threads: int, arch: str, shape: dict, steps: int) -> float:
    child = [str(Path(__file__).resolve()), "--ddp-child", arch, "--shape", json.dumps(shape), "--steps", str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if processes == 1:
        cmd = [sys.executable, *child]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), *child]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return float(json.loads(line)["tokens_per_s"])


def bench_ddp(arch: str, shape: dict, steps: int, rounds: int) -> dict:
    runs: dict[str, list[float]] = {"one_process_one_thread": [], "two_processes": [], "one_process_two_threads": []}
    for _ in range(rounds):
        runs["one_process_one_thread"].append(_launch(1, 1, arch, shape, steps))
        runs["two_processes"].append(_launch(2, 1, arch, shape, steps))
        runs["one_process_two_threads"].append(_launch(1, 2, arch, shape, steps))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "arch": arch,
        "global_batch": shape["batch_size"],
        "steps_timed": steps,
        "tokens_per_s": med,
        "tokens_per_s_runs": runs,
        "two_vs_one_process": med["two_processes"] / med["one_process_one_thread"],
        "two_processes_vs_two_threads": med["two_processes"] / med["one_process_two_threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few steps: a smoke test")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per architecture")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the speed part")
    parser.add_argument("--ddp-arch", default="lmm", choices=ARCHS)
    parser.add_argument("--ddp-steps", type=int, default=None, help="timed steps per DDP launch")
    parser.add_argument("--ddp-rounds", type=int, default=None, help="launches of each DDP variant")
    parser.add_argument("--ddp-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_child is not None:
        ddp_child(args.ddp_child, json.loads(args.shape), args.steps)
        return
    shape = QUICK if args.quick else FULL
    reps = args.reps or (2 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    speed = bench_speed(shape, reps)
    ddp = bench_ddp(args.ddp_arch, shape, args.ddp_steps or (2 if args.quick else 10),
                    args.ddp_rounds or (1 if args.quick else 3))
    print(json.dumps({
        "machine": machine_info(),
        "shape": shape,
        "reps": reps,
        "speed": speed,
        "ddp": ddp,
        "seconds": time.perf_counter() - started,
    }, indent=2))


if __name__ == "__main__":
    main()
