"""NeuralMemory against titans-pytorch where users train: one and four heads, forward and forward +
backward, the peer at its default and at equal semantics, training memory, long single calls.

Prints one JSON document. Every speed comparison alternates the contenders run by run in one
process and is reported as ratios of medians (``peer / ours``: above 1, ours is faster). Beside
each ratio: the matrix-multiply work of every contender (GFLOP per call, counted by
``torch.utils.flop_counter``) and the rate it ran at, so a speed ratio can be read against the
ratio of work done.

    uv run --group bench python benchmarks/vs_peer.py                  # the full set
    uv run --group bench python benchmarks/vs_peer.py --quick          # a smoke run (seconds)
    uv run --group bench python benchmarks/vs_peer.py --compiled       # also the opt-in compiled step
    uv run python benchmarks/vs_peer.py --markdown run1.json run2.json  # README's tables

Contenders (shape: batch 2, T = 1024, dim 256, depth 2, expansion 4, chunks of 64):

* ``ours``: ``NeuralMemory`` eager (the default, exact); ``ours_compiled`` (``--compiled``):
  ``compile_step=True``, its first-call (compilation) cost reported apart;
* ``peer_default``: titans-pytorch ``NeuralMemory`` as it comes (``batch_size=None``: every
  gradient at the initial weights, each chunk read with the previous chunk's weights: less work);
* ``peer_equal``: titans-pytorch with ``batch_size=chunk_size`` (gradients at chunk-start weights,
  as ours takes them: equal semantics).

The speed rows run in a fresh process per head count and allocator regime (``ALLOCATORS``: the
peer's speed depends on glibc's page-fault behaviour, ours barely). Memory rows run one fresh
process per contender and length: the growth of the peak resident set (CPU, ``VmHWM`` reset
before the call) or of ``torch.cuda.max_memory_allocated`` over one forward + backward, at four
heads, batch 1. On CUDA everything runs unchanged, timed with explicit synchronisation, in float32
and under bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings

import torch
from _timing import machine_info, median_seconds  # benchmarks/_timing.py, beside this script

from titans_memory.core import MemoryConfig, NeuralMemory

ALLOCATORS: dict[str, dict[str, str]] = {  # as in benchmarks/neural_memory.py
    "default": {},
    "heap_kept": {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**32)},
}
CHUNK = 64
MiB = 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(device: str, dtype: str):
    if dtype == "float32":
        return torch.autocast(device, enabled=False)
    return torch.autocast(device, dtype=getattr(torch, dtype))


def _ours(dim: int, heads: int, **kwargs) -> NeuralMemory:
    cfg = MemoryConfig(dim=dim, heads=heads, head_dim=dim // heads, depth=2, expansion=4, chunk_size=CHUNK)
    return NeuralMemory(cfg, **kwargs)


def _peer(dim: int, heads: int, equal: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from titans_pytorch import NeuralMemory as PeerMemory
    return PeerMemory(dim=dim, chunk_size=CHUNK, heads=heads, dim_head=dim // heads, batch_size=CHUNK if equal else None)


def _runner(module, x: torch.Tensor, backward: bool, device: str, dtype: str):
    """One call (forward, or forward + backward of the output's sum), synchronised at the end."""
    xg = x.detach().clone().requires_grad_(backward)

    def run():
        with _autocast(device, dtype), torch.set_grad_enabled(backward):
            out = module(xg)[0]
            if backward:
                out.float().sum().backward()
        if backward:
            module.zero_grad(set_to_none=True)
            xg.grad = None
        _sync(device)

    return run


def matmul_gflop(module, x: torch.Tensor) -> dict[str, float]:
    """Matrix-multiply work of one call, in GFLOP, counted by ``torch.utils.flop_counter``: the
    forward, and the forward + backward of the output's sum (the work each contender does, so that
    a speed ratio can be read against the ratio of work)."""
    from torch.utils.flop_counter import FlopCounterMode

    xg = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        out = module(xg)[0]
        forward = counter.get_total_flops()
        out.float().sum().backward()
    module.zero_grad(set_to_none=True)
    return {"forward": forward / 1e9, "forward_backward": counter.get_total_flops() / 1e9}


def speed_row(batch: int, seq: int, dim: int, heads: int, reps: int, device: str, dtype: str, compiled: bool) -> dict:
    """Ours against the peer's two settings at one shape, alternating in this process."""
    torch.manual_seed(0)
    x = torch.randn(batch, seq, dim, device=device)
    modules = {
        "ours": _ours(dim, heads),
        "peer_default": _peer(dim, heads, equal=False),
        "peer_equal": _peer(dim, heads, equal=True),
    }
    row: dict[str, object] = {
        "shape": f"batch={batch} T={seq} dim={dim} heads={heads} head_dim={dim // heads} depth=2 expansion=4 "
        f"chunk={CHUNK}",
        "device": device,
        "dtype": dtype,
    }
    if compiled:
        modules["ours_compiled"] = _ours(dim, heads, compile_step=True)
        modules["ours_compiled"].load_state_dict(modules["ours"].state_dict())
    modules = {name: m.to(device) for name, m in modules.items()}
    for kind, backward in (("forward", False), ("forward_backward", True)):
        fns = {name: _runner(m, x, backward, device, dtype) for name, m in modules.items()}
        if compiled:  # the first calls compile (or load from inductor's disk cache): timed apart
            start = time.perf_counter()
            fns["ours_compiled"]()
            row[f"{kind}_compiled_first_call_s"] = time.perf_counter() - start
            print(f"compiled step, {kind}, heads={heads}: first call {row[f'{kind}_compiled_first_call_s']:.1f} s",
                  file=sys.stderr)
        t = median_seconds(fns, reps)
        row[f"{kind}_s"] = t
        if kind == "forward_backward":  # counted after the timings: the counting run warms the peer's heap
            row["matmul_gflop"] = work = {name: matmul_gflop(m, x) for name, m in modules.items()
                                          if name != "ours_compiled"}
        for peer in ("peer_default", "peer_equal"):
            row[f"{kind}_{peer}_over_ours"] = t[peer] / t["ours"]
            if compiled:
                row[f"{kind}_{peer}_over_ours_compiled"] = t[peer] / t["ours_compiled"]
    for kind in ("forward", "forward_backward"):
        row[f"{kind}_gflop_per_s"] = {name: work[name][kind] / row[f"{kind}_s"][name] for name in work}
        for peer in ("peer_default", "peer_equal"):
            row[f"{kind}_{peer}_work_over_ours"] = work[peer][kind] / work["ours"][kind]
    return row


def _child(args: list[str], env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout)


def speed(batch: int, seq: int, dim: int, reps: int, device: str, dtypes: list[str], compiled: bool) -> dict:
    """Every head count in a fresh process, per allocator regime (CPU) and dtype."""
    regimes = ALLOCATORS if device == "cpu" else {"default": {}}
    out: dict[str, list[dict]] = {}
    for dtype in dtypes:
        for regime, env in regimes.items():
            out[f"{dtype}_allocator_{regime}"] = [
                _child(["--speed-row", str(heads), "--shape", str(batch), str(seq), str(dim), "--reps", str(reps),
                        "--device", device, "--dtype", dtype, *(["--compiled"] if compiled else [])], env)
                for heads in (1, 4)
            ]
    return out


def _peak_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _reset_peak(device: str) -> int:
    """Reset the peak counter to the current use; return that use in bytes."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS (proc(5), clear_refs)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def memory_row(contender: str, seq: int, dim: int, device: str, dtype: str) -> dict:
    """The peak-memory growth of one forward + backward at four heads, batch 1, in this process.

    A warm-up call at a short length first loads the libraries' code and torch's kernels, so
    the growth is the call's own working memory.
    """
    torch.manual_seed(0)
    if contender == "peer_default":
        module = _peer(dim, 4, equal=False)
    else:
        module = _ours(dim, 4, backend="chunked_checkpoint" if contender == "ours_checkpoint" else "chunked")
    module = module.to(device)
    _runner(module, torch.randn(1, 4 * CHUNK, dim, device=device), True, device, dtype)()
    run = _runner(module, torch.randn(1, seq, dim, device=device), True, device, dtype)
    before = _reset_peak(device)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    growth = _peak_bytes(device) - before
    return {"contender": contender, "T": seq, "peak_growth_mib": growth / MiB, "kib_per_token": growth / 1024 / seq,
            "seconds": seconds}


def memory(lengths: list[int], dim: int, device: str, dtype: str, peer: bool) -> dict:
    contenders = ["ours", "ours_checkpoint", *(["peer_default"] if peer else [])]
    rows = {
        str(seq): {c: _child(["--memory-row", c, str(seq), str(dim), "--device", device, "--dtype", dtype])
                   for c in contenders}
        for seq in lengths
    }
    for per in rows.values():
        base = per["peer_default"]["peak_growth_mib"] if peer else 0.0
        for who in ("ours", "ours_checkpoint"):
            per[f"{who}_over_peer"] = per[who]["peak_growth_mib"] / base if base > 0 else None
    return rows


def checkpoint_cost(seq: int, dim: int, reps: int, device: str, dtype: str) -> dict:
    """The time chunk-level checkpointing costs: forward + backward at four heads, alternating."""
    torch.manual_seed(0)
    x = torch.randn(1, seq, dim, device=device)
    plain = _ours(dim, 4).to(device)
    ckpt = _ours(dim, 4, backend="chunked_checkpoint").to(device)
    ckpt.load_state_dict(plain.state_dict())
    t = median_seconds({"chunked": _runner(plain, x, True, device, dtype),
                        "chunked_checkpoint": _runner(ckpt, x, True, device, dtype)}, reps)
    return {"T": seq, "heads": 4, "seconds": t, "checkpoint_time_ratio": t["chunked_checkpoint"] / t["chunked"]}


def long_call(batch: int, dim: int, lengths: list[int], reps: int, device: str) -> dict:
    """Forward time of one call at each length, four heads; the ratio of the longest to the shortest."""
    torch.manual_seed(0)
    mem = _ours(dim, 4).to(device)
    xs = {seq: torch.randn(batch, seq, dim, device=device) for seq in lengths}
    t = median_seconds({str(seq): _runner(mem, x, False, device, "float32") for seq, x in xs.items()}, reps)
    return {"batch": batch, "seconds_one_call": t, "length_ratio": lengths[-1] / lengths[0],
            "time_ratio_one_call": t[str(lengths[-1])] / t[str(lengths[0])]}


def _span(values: list[float | None], fmt: str) -> str:
    if any(v is None for v in values):
        return "n/a"
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}–{format(hi, fmt)}"


def markdown(paths: list[str]) -> str:
    """README's tables from the JSON of several full runs (ranges over the runs)."""
    runs = [json.load(open(p)) for p in paths]
    lines = ["| heads | allocator | fwd vs peer default | fwd vs peer equal | fwd+bwd vs peer default "
             "| fwd+bwd vs peer equal |", "|---|---|---|---|---|---|"]
    for key in runs[0]["speed_vs_titans_pytorch"]:
        for i, row in enumerate(runs[0]["speed_vs_titans_pytorch"][key]):
            rows = [r["speed_vs_titans_pytorch"][key][i] for r in runs]
            cells = [_span([r[f"{kind}_{peer}_over_ours"] for r in rows], ".2f") + "×"
                     for kind in ("forward", "forward_backward") for peer in ("peer_default", "peer_equal")]
            lines.append(f"| {row['shape'].split()[3][6:]} | {key.split('allocator_')[1]} | " + " | ".join(cells) + " |")
    compiled = [r for r in runs
                if "forward_peer_default_over_ours_compiled" in next(iter(r["speed_vs_titans_pytorch"].values()))[0]]
    if compiled:  # runs with --compiled: the opt-in compiled step beside the eager default
        lines += ["", "| heads | allocator | compiled fwd vs peer default | compiled fwd+bwd vs peer default "
                  "| compiled fwd+bwd vs peer equal | eager / compiled: fwd, fwd+bwd | first call: fwd, fwd+bwd |",
                  "|---|---|---|---|---|---|---|"]
        for key in compiled[0]["speed_vs_titans_pytorch"]:
            for i, row in enumerate(compiled[0]["speed_vs_titans_pytorch"][key]):
                rows = [r["speed_vs_titans_pytorch"][key][i] for r in compiled]
                cells = [_span([r[f"{kind}_{peer}_over_ours_compiled"] for r in rows], ".2f") + "×"
                         for kind, peer in (("forward", "peer_default"), ("forward_backward", "peer_default"),
                                            ("forward_backward", "peer_equal"))]
                eager = ", ".join(_span([r[f"{kind}_s"]["ours"] / r[f"{kind}_s"]["ours_compiled"] for r in rows],
                                        ".2f") + "×" for kind in ("forward", "forward_backward"))
                first = ", ".join(_span([r[f"{kind}_compiled_first_call_s"] for r in rows], ".1f") + " s"
                                  for kind in ("forward", "forward_backward"))
                lines.append(f"| {row['shape'].split()[3][6:]} | {key.split('allocator_')[1]} | "
                             + " | ".join(cells) + f" | {eager} | {first} |")
    counted = [r for r in runs if "matmul_gflop" in next(iter(r["speed_vs_titans_pytorch"].values()))[0]]
    if counted:  # runs from before the work was counted have no such table
        first = next(iter(counted[0]["speed_vs_titans_pytorch"].values()))
        lines += ["", "| heads | pass | matmul GFLOP: ours / peer | peer's work / ours | GFLOP/s: ours / peer default "
                  "/ peer equal |", "|---|---|---|---|---|"]
        for i, row in enumerate(first):
            rows = [r["speed_vs_titans_pytorch"][key][i] for r in counted for key in r["speed_vs_titans_pytorch"]]
            for kind in ("forward", "forward_backward"):
                work = row["matmul_gflop"]
                rates = " / ".join(_span([r[f"{kind}_gflop_per_s"][who] for r in rows], ".0f")
                                   for who in ("ours", "peer_default", "peer_equal"))
                lines.append(f"| {row['shape'].split()[3][6:]} | {kind.replace('_', ' + ')} | "
                             f"{work['ours'][kind]:.2f} / {work['peer_default'][kind]:.2f} | "
                             f"{row[f'{kind}_peer_default_work_over_ours']:.2f} | {rates} |")
    lines += ["", "| T | ours | ours, chunk-level checkpointing | peer (default) | checkpointing / peer |",
              "|---|---|---|---|---|"]
    for seq in runs[0]["training_memory"]["float32"]:
        per = [r["training_memory"]["float32"][seq] for r in runs]

        def cell(who, per=per):
            return (_span([p[who]["peak_growth_mib"] for p in per], ".0f") + " MiB ("
                    + _span([p[who]["kib_per_token"] for p in per], ".1f") + " KiB/token)")

        ratio = _span([p["ours_checkpoint_over_peer"] for p in per], ".2f")
        lines.append(f"| {seq} | {cell('ours')} | {cell('ours_checkpoint')} | {cell('peer_default')} | {ratio} |")
    cost = _span([r["checkpoint_cost"]["checkpoint_time_ratio"] for r in runs], ".2f")
    long = _span([r["long_single_call"]["time_ratio_one_call"] for r in runs], ".1f")
    lines += ["", f"checkpointing's time (forward + backward, T = {runs[0]['checkpoint_cost']['T']}): {cost}× "
              f"the plain chunked operator; time(16k) / time(1k) in one call: {long}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per contender")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: float32; on CUDA both)")
    parser.add_argument("--compiled", action="store_true", help="also time compile_step=True")
    parser.add_argument("--markdown", nargs="+", metavar="JSON", help="print README's tables from these runs")
    parser.add_argument("--speed-row", type=int, metavar="HEADS", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--memory-row", nargs=3, metavar=("WHO", "T", "DIM"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, metavar=("BATCH", "SEQ", "DIM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return {}
    dtypes = [args.dtype] if args.dtype else (["float32", "bfloat16"] if args.device == "cuda" else ["float32"])
    if args.speed_row is not None:
        row = speed_row(*args.shape, heads=args.speed_row, reps=args.reps, device=args.device, dtype=dtypes[0],
                        compiled=args.compiled)
        print(json.dumps(row))
        return row
    if args.memory_row is not None:
        who, seq, dim = args.memory_row
        row = memory_row(who, int(seq), int(dim), args.device, dtypes[0])
        print(json.dumps(row))
        return row
    if args.quick:
        reps, batch, seq, dim, mem_lengths, lengths = args.reps or 1, 1, 128, 32, [256, 512], [128, 512]
    else:
        reps, batch, seq, dim, mem_lengths, lengths = args.reps or 5, 2, 1024, 256, [4096, 16384], [1024, 16384]
    peer = importlib.util.find_spec("titans_pytorch") is not None
    result: dict[str, object] = {"machine": machine_info(), "device": args.device}
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    if peer:
        result["speed_vs_titans_pytorch"] = speed(batch, seq, dim, reps, args.device, dtypes, args.compiled)
    else:
        result["speed_vs_titans_pytorch"] = {"skipped": "titans-pytorch is not installed (uv run --group bench ...)"}
    result["training_memory"] = {dtype: memory(mem_lengths, dim, args.device, dtype, peer) for dtype in dtypes}
    result["checkpoint_cost"] = checkpoint_cost(mem_lengths[0], dim, max(1, reps // 2), args.device, dtypes[0])
    result["long_single_call"] = long_call(batch, dim, lengths, reps, args.device)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
