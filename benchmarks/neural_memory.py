"""Speed of NeuralMemory: against the best-known peer, against its own reference, and in scale.

Prints one JSON document. Every comparison alternates the contenders run by run in one process
and is reported as a ratio (medians). Run on an idle machine: a second busy process slows either
side many-fold. The comparisons with the peer run in fresh processes, one per shape and allocator
regime (``ALLOCATORS``): the peer's speed depends on page faults, ours does not.

    uv run --group bench python benchmarks/neural_memory.py            # the full set (~4 min)
    uv run python benchmarks/neural_memory.py --quick                  # a smoke run (seconds)

What the two implementations compute differs, in our disfavour: titans-pytorch (default
``batch_size=None``) takes every gradient at the initial weights and reads each chunk with the
weights from the end of the previous chunk, with gates per chunk; NeuralMemory takes gradients at
each chunk's start and reads every token with its own updated weights (the paper's rule).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import warnings

import torch
from _timing import machine_info, median_seconds  # benchmarks/_timing.py, beside this script
from torch.utils._python_dispatch import TorchDispatchMode

from titans_memory.core import MemoryConfig, NeuralMemory


def _forward(module, x):
    def run():
        with torch.no_grad():
            module(x)

    return run


def _forward_backward(module, x):
    xg = x.detach().clone().requires_grad_()

    def run():
        out = module(xg)
        out[0].sum().backward()
        module.zero_grad(set_to_none=True)

    return run


# Allocator regimes for the comparison with the peer. The peer allocates and frees large
# temporaries on every call; under glibc's defaults blocks above the (adaptive) mmap threshold
# are returned to the OS when freed, and every fresh page then costs a page fault. Whether that
# happens depends on what the process allocated before (a larger earlier run raises the
# threshold), so the same code measured 43 or 85 ms per four-head forward here. Each shape
# therefore runs in a fresh process, once per regime: glibc's defaults, and with freed memory
# kept in the heap (no page faults once warm: the peer's best case).
ALLOCATORS: dict[str, dict[str, str]] = {
    "default": {},
    "heap_kept": {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**32)},
}
PEER_HEADS = (1, 4)  # head_dim = dim / heads


class _MatmulFlops(TorchDispatchMode):
    """Counts 2 x multiply-adds of every matrix product run under it (mm, bmm and their fused
    add forms, which is what linear layers, einsum and matmul reach)."""

    _OPS = {
        torch.ops.aten.mm: 0, torch.ops.aten.bmm: 0, torch.ops.aten.addmm: 1,
        torch.ops.aten.baddbmm: 1, torch.ops.aten.addmm_: 1, torch.ops.aten.baddbmm_: 1,
    }

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        first = self._OPS.get(func.overloadpacket)
        if first is not None:
            a, b = args[first], args[first + 1]
            self.flops += 2 * math.prod(a.shape) * b.shape[-1]
        return func(*args, **(kwargs or {}))


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peer_row(batch: int, seq: int, dim: int, heads: int, reps: int) -> dict:
    """One shape, ours against titans-pytorch, alternating in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from titans_pytorch import NeuralMemory as PeerMemory
    head_dim = dim // heads
    x = torch.randn(batch, seq, dim)
    ours = NeuralMemory(MemoryConfig(dim=dim, heads=heads, head_dim=head_dim, depth=2, expansion=4, chunk_size=64))
    peer = PeerMemory(dim=dim, chunk_size=64, heads=heads, dim_head=head_dim)
    row: dict[str, object] = {
        "shape": f"batch={batch} T={seq} dim={dim} heads={heads} head_dim={head_dim} depth=2 expansion=4 chunk=64"
    }
    for kind, make in (("forward", _forward), ("forward_backward", _forward_backward)):
        fns = {"ours": make(ours, x), "peer": make(peer, x)}
        t = median_seconds(fns, reps)
        faults, gflop = {}, {}
        for name, fn in fns.items():  # two more calls each, warm: its page faults, its matmul FLOPs
            before = _minor_faults()
            fn()
            faults[name] = _minor_faults() - before
            with _MatmulFlops() as counter:
                fn()
            gflop[name] = counter.flops / 1e9
        row[f"{kind}_s"] = t
        row[f"{kind}_speedup"] = t["peer"] / t["ours"]
        row[f"{kind}_minor_page_faults_per_call"] = faults
        row[f"{kind}_matmul_gflop"] = gflop
    row["ours_tokens_per_s_forward"] = batch * seq / row["forward_s"]["ours"]
    return row


def vs_peer(batch: int, seq: int, dim: int, reps: int) -> dict | list[dict]:
    """Every shape in a fresh process, in each allocator regime (see ``ALLOCATORS``)."""
    if importlib.util.find_spec("titans_pytorch") is None:
        return [{"skipped": "titans-pytorch is not installed (uv run --group bench ...)"}]
    out: dict[str, list[dict]] = {}
    for regime, env_extra in ALLOCATORS.items():
        rows = []
        for heads in PEER_HEADS:
            cmd = [sys.executable, __file__, "--peer-row", str(heads), "--reps", str(reps),
                   "--shape", str(batch), str(seq), str(dim)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_extra})
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
            rows.append(json.loads(proc.stdout))
        out[f"allocator_{regime}"] = rows
    return out


def vs_reference(batch: int, seq: int, dim: int, reps: int) -> dict:
    mem = NeuralMemory(MemoryConfig(dim=dim, heads=4, depth=2, chunk_size=64))
    x = torch.randn(batch, seq, dim)

    def chunked():
        with torch.no_grad():
            mem(x)

    def recurrent():
        with torch.no_grad():
            mem(x, backend="recurrent")

    t = median_seconds({"chunked": chunked, "recurrent": recurrent}, reps)
    return {"T": seq, "seconds": t, "chunked_speedup": t["recurrent"] / t["chunked"]}


def scaling(batch: int, dim: int, lengths: list[int], reps: int) -> dict:
    """Forward time against length: in one call, and streamed in pieces of the shortest length.

    One call at the longest length allocates every projection of the whole sequence at once (tens
    of MB): on this kind of machine first-touch page faults then add to the per-token cost, so the
    streamed column is the one that shows the algorithm's own (linear) growth.
    """
    mem = NeuralMemory(MemoryConfig(dim=dim, heads=4, depth=2, chunk_size=64))
    piece = lengths[0]
    one_call, streamed = {}, {}
    for seq in lengths:
        x = torch.randn(batch, seq, dim)

        def stream(x=x):
            state = None
            with torch.no_grad():
                for start in range(0, x.shape[1], piece):
                    _, state = mem(x[:, start : start + piece], state)

        t = median_seconds({"one_call": _forward(mem, x), "streamed": stream}, reps)
        one_call[str(seq)], streamed[str(seq)] = t["one_call"], t["streamed"]
    first, last = str(lengths[0]), str(lengths[-1])
    return {
        "seconds_one_call": one_call,
        f"seconds_streamed_in_pieces_of_{piece}": streamed,
        "length_ratio": lengths[-1] / lengths[0],
        "time_ratio_one_call": one_call[last] / one_call[first],
        "time_ratio_streamed": streamed[last] / streamed[first],
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def streaming_memory(dim: int, total: int, piece: int) -> dict:
    """Resident memory while streaming ``total`` tokens in pieces: must stay flat."""
    mem = NeuralMemory(MemoryConfig(dim=dim, heads=4, depth=2, chunk_size=64))
    state, samples = None, {}
    with torch.no_grad():
        for i in range(total // piece):
            _, state = mem(torch.randn(1, piece, dim), state)
            done = (i + 1) * piece
            if done in (total // 8, total // 2, total):
                samples[str(done)] = _rss_bytes() / 2**20
    keys = list(samples)
    return {
        "piece": piece,
        "rss_mib_after_tokens": samples,
        "rss_growth_mib_from_first_eighth_to_end": samples[keys[-1]] - samples[keys[0]],
    }


def _chunked_forward_flops(cfg: MemoryConfig, batch: int, seq: int) -> float:
    """Multiply-adds x 2 of the chunked forward (memory and projections), by shape."""
    n, c, chunks = batch * cfg.heads, cfg.chunk_size, -(-seq // cfg.chunk_size)
    per_chunk = 0
    shapes = cfg.layer_shapes
    for i, (d_in, d_out) in enumerate(shapes):
        unit = c * d_in * d_out
        per_chunk += unit  # key path forward
        per_chunk += unit if i > 0 else 0  # key path backward (delta of the layer below)
        per_chunk += 2 * unit  # query base: h W_s and h S_s
        per_chunk += c * c * (d_in + d_out)  # dual-form scores and their product with deltas
        per_chunk += 2 * unit  # chunk-end weights and momentum
    inner = cfg.heads * cfg.d_head
    proj = batch * seq * cfg.dim * (3 * inner + inner + inner)  # qkv, output gate, output
    return 2.0 * (n * chunks * per_chunk + proj)


def achieved_flops(batch: int, seq: int, dim: int, reps: int) -> dict:
    cfg = MemoryConfig(dim=dim, heads=1, depth=2, expansion=4, chunk_size=64)
    mem = NeuralMemory(cfg)
    x = torch.randn(batch, seq, dim)
    t = median_seconds({"t": _forward(mem, x)}, reps)["t"]
    flops = _chunked_forward_flops(cfg, batch, seq)
    a, b = torch.randn(batch, 64, dim), torch.randn(batch, dim, 4 * dim)
    chunks = -(-seq // 64)

    def plain():
        for _ in range(chunks):
            torch.bmm(a, b)

    tm = median_seconds({"t": plain}, reps)["t"]
    matmul_rate = 2.0 * batch * 64 * dim * 4 * dim * chunks / tm
    return {
        "config": "heads=1 depth=2 expansion=4 chunk=64",
        "forward_gflop": flops / 1e9,
        "achieved_gflop_per_s": flops / t / 1e9,
        "plain_bmm_gflop_per_s": matmul_rate / 1e9,
        "fraction_of_plain_matmul": flops / t / matmul_rate,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per contender")
    parser.add_argument("--peer-row", type=int, metavar="HEADS", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--shape", type=int, nargs=3, metavar=("BATCH", "SEQ", "DIM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.peer_row is not None:  # one comparison row, for vs_peer's fresh process
        row = peer_row(*args.shape, heads=args.peer_row, reps=args.reps)
        print(json.dumps(row))
        return row
    if args.quick:
        reps, batch, seq, dim = args.reps or 1, 1, 128, 32
        lengths, stream_total, piece = [128, 256, 512], 1024, 128
    else:
        reps, batch, seq, dim = args.reps or 5, 2, 1024, 256
        lengths, stream_total, piece = [1024, 4096, 16384], 65536, 1024
    result = {
        "machine": machine_info(),
        "vs_titans_pytorch": vs_peer(batch, seq, dim, reps),
        "chunked_vs_recurrent": vs_reference(batch, 4 * seq, dim, max(1, reps // 2)),
        "scaling": scaling(batch, dim, lengths, reps),
        "streaming_memory": streaming_memory(dim, stream_total, piece),
        "achieved_flops": achieved_flops(batch, seq, dim, reps),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
