"""Speed and generation memory of the Titans models (MAC, MAG, MAL, LMM) beside the SWA baseline.

Prints one JSON document. For each architecture at one shared size (by default 4 layers, dim 256,
4 heads, window 128, segment 128, memory in every layer with the core's default MemoryConfig
(chunk 64), batch 1, T = 1024, float32):

* ``forward_tokens_per_s``: a forward pass of T tokens, no grad;
* ``forward_backward_tokens_per_s``: forward, cross-entropy, backward;
* ``generation_tokens_per_s``: 64 greedy tokens one at a time with the cache, after a prompt of
  T tokens (so the window and the segments are in their steady state);
* ``generation``: ``--gen-tokens`` tokens (16k) sampled one at a time (top-k 50) after a 16-token
  prompt; at 1/16, 1/8, 1/4, 1/2 and all of them, the peak resident memory of the process so far
  (peak CUDA memory on a GPU) and the bytes held by the cache. Each architecture generates in a
  fresh process, so the peaks belong to generation alone (``--quick`` runs them in its own);
  flat means the peak at 16k equals the peak at 1k. ``long_run_tokens_per_s`` is that run's
  rate: the architectures run one after another there, so it is exposed to whatever else the
  machine does meanwhile.

The three speeds are medians of ``--reps`` runs, the architectures and passes in turn run by run
(so a slow spell of the machine hits all alike); ``*_vs_swa`` divides by the baseline's rate.

    uv run python benchmarks/models.py            # the full run (~15 min on 2 CPU cores)
    uv run python benchmarks/models.py --quick    # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from _timing import machine_info, median_seconds  # benchmarks/_timing.py, beside this script

from titans_memory import MemoryConfig
from titans_memory.models import ARCHS, ModelConfig, TitansLM, sample_logits

FULL = dict(
    dim=256, depth=4, heads=4, window=128, segment=128, chunk=64, seq=1024, vocab=256, batch=1, decode=64
)
QUICK = dict(dim=32, depth=2, heads=2, window=16, segment=16, chunk=16, seq=64, vocab=64, batch=1, decode=4)
GEN_TOKENS = 16384  # checkpoints at 1/16, 1/8, 1/4, 1/2 and all of it


def _config(arch: str, shape: dict) -> ModelConfig:
    return ModelConfig(
        arch=arch, vocab_size=shape["vocab"], dim=shape["dim"], depth=shape["depth"],
        heads=shape["heads"], window=shape["window"], segment=shape["segment"],
        memory=MemoryConfig(dim=shape["dim"], heads=shape["heads"], chunk_size=shape["chunk"]),
    )


def _model(arch: str, shape: dict, device: str) -> TitansLM:
    torch.manual_seed(0)
    return TitansLM(_config(arch, shape)).to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_speed(shape: dict, reps: int, device: str) -> dict:
    """Forward and forward + backward tokens/s of every architecture, in turn."""
    archs = list(ARCHS)
    models = {a: _model(a, shape, device) for a in archs}
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, shape["vocab"], (shape["batch"], shape["seq"] + 1), generator=g).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def forward(model):
        def run():
            with torch.no_grad():
                model(inputs)
            _sync(device)

        return run

    def forward_backward(model):
        def run():
            logits, _ = model(inputs)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss.backward()
            model.zero_grad(set_to_none=True)
            _sync(device)

        return run

    def generation(model, cache, first):
        # the cache is immutable: every run continues from the same prompt
        def run():
            with torch.no_grad():
                logits, c = first
                for _ in range(decode):
                    nxt = logits[:, -1].argmax(-1, keepdim=True)
                    logits, c = model(nxt, c)
            _sync(device)

        return run

    decode = shape["decode"]
    fns = {}
    for a, m in models.items():
        with torch.no_grad():
            logits, cache = m(inputs)  # the prompt: T tokens, past the window and the segment
        fns[f"{a}/forward"] = forward(m)
        fns[f"{a}/forward_backward"] = forward_backward(m)
        fns[f"{a}/generation"] = generation(m, cache, (logits, cache))
    seconds = median_seconds(fns, reps)
    n = shape["batch"] * shape["seq"]
    out = {}
    for a in archs:
        out[a] = {
            "parameters": sum(p.numel() for p in models[a].parameters()),
            "forward_tokens_per_s": n / seconds[f"{a}/forward"],
            "forward_backward_tokens_per_s": n / seconds[f"{a}/forward_backward"],
            "generation_tokens_per_s": shape["batch"] * decode / seconds[f"{a}/generation"],
        }
    for a in archs:
        for kind in ("forward", "forward_backward", "generation"):
            out[a][f"{kind}_vs_swa"] = out[a][f"{kind}_tokens_per_s"] / out["swa"][f"{kind}_tokens_per_s"]
    return out


def _peak_bytes(device: str) -> int:
    """Peak CUDA memory, or the process's peak resident set (VmHWM).

    Not ``getrusage``'s ``ru_maxrss``: Linux keeps that across ``execve``, so a child process
    would report its parent's peak.
    """
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux, bytes on macOS


def generation_child(arch: str, shape: dict, checkpoints: list[int], device: str) -> dict:
    """Generate ``checkpoints[-1]`` tokens one at a time; memory at each checkpoint, and speed."""
    model = _model(arch, shape, device).eval()
    g = torch.Generator(device=device).manual_seed(2)
    prompt = torch.randint(0, shape["vocab"], (shape["batch"], 16), generator=g, device=device)
    rows = []
    with torch.no_grad():
        logits, cache = model(prompt)
        _sync(device)
        start = time.perf_counter()
        for i in range(1, checkpoints[-1] + 1):
            nxt = sample_logits(logits[:, -1], 1.0, 50, None, g)[:, None]
            logits, cache = model(nxt, cache)
            if i in checkpoints:
                _sync(device)
                rows.append({
                    "generated": i,
                    "peak_mib": _peak_bytes(device) / 2**20,
                    "cache_mib": cache.nbytes() / 2**20,
                    "seconds": time.perf_counter() - start,
                })
    total = rows[-1]["seconds"]
    return {
        "long_run_tokens_per_s": shape["batch"] * checkpoints[-1] / total,
        "generation_memory": rows,
        "peak_growth_mib": rows[-1]["peak_mib"] - rows[0]["peak_mib"],
        "cache_growth_bytes": int(round((rows[-1]["cache_mib"] - rows[0]["cache_mib"]) * 2**20)),
    }


def bench_generation(shape: dict, checkpoints: list[int], device: str, fresh_process: bool) -> dict:
    """Each architecture in a fresh process (its peak memory is generation's alone), or, for a
    smoke run, in this one."""
    out = {}
    for arch in ARCHS:
        if not fresh_process:
            out[arch] = generation_child(arch, shape, checkpoints, device)
            continue
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--generation-child", arch,
            "--shape", json.dumps(shape), "--checkpoints", json.dumps(checkpoints), "--device", device,
            "--threads", str(torch.get_num_threads()),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent)
        if proc.returncode:
            raise RuntimeError(f"generation of {arch} failed:\n{proc.stderr[-4000:]}")
        out[arch] = json.loads(proc.stdout)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--reps", type=int, default=None, help="timed runs of each pass")
    parser.add_argument("--gen-tokens", type=int, default=None, help="tokens to generate (16384)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (--quick: 1)")
    parser.add_argument("--generation-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    if args.generation_child:
        result = generation_child(
            args.generation_child, json.loads(args.shape), json.loads(args.checkpoints), args.device
        )
        print(json.dumps(result))
        return result

    shape = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 5)
    total = args.gen_tokens or (64 if args.quick else GEN_TOKENS)
    checkpoints = sorted({max(1, total * k // 16) for k in (1, 2, 4, 8, 16)})
    memory = _config("mag", shape).memory_config
    result = {
        "machine": machine_info(),
        "device": args.device,
        "shape": {**shape, "dtype": "float32", "memory_in_every_layer": True},
        "memory": memory.to_dict(),
        "reps": reps,
        "speed": bench_speed(shape, reps, args.device),
        "generation": bench_generation(shape, checkpoints, args.device, fresh_process=not args.quick),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
