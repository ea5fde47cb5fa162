"""Speed of NeuralMemory: against the best-known peer, against its own reference, and in scale.

Prints one JSON document. Every comparison is made side by side in one process, alternating the
contenders run by run, and reported as a ratio (medians). Run on an idle machine: a second busy
process slows either side many-fold.

    uv run --group bench python benchmarks/neural_memory.py            # the full set (~2 min)
    uv run python benchmarks/neural_memory.py --quick                  # a smoke run (seconds)

What the two implementations compute differs, in our disfavour: titans-pytorch (default
``batch_size=None``) takes every gradient at the initial weights and reads each chunk with the
weights from the end of the previous chunk, with gates per chunk; NeuralMemory takes gradients at
each chunk's start and reads every token with its own updated weights (the paper's rule).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import torch
from _timing import machine_info, median_seconds  # benchmarks/_timing.py, beside this script

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


def vs_peer(batch: int, seq: int, dim: int, reps: int) -> list[dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from titans_pytorch import NeuralMemory as PeerMemory
    except ImportError:
        return [{"skipped": "titans-pytorch is not installed (uv run --group bench ...)"}]
    x = torch.randn(batch, seq, dim)
    rows = []
    for heads, head_dim in ((1, dim), (4, dim // 4)):
        ours = NeuralMemory(
            MemoryConfig(dim=dim, heads=heads, head_dim=head_dim, depth=2, expansion=4, chunk_size=64)
        )
        peer = PeerMemory(dim=dim, chunk_size=64, heads=heads, dim_head=head_dim)
        fwd = median_seconds({"ours": _forward(ours, x), "peer": _forward(peer, x)}, reps)
        fb = median_seconds(
            {"ours": _forward_backward(ours, x), "peer": _forward_backward(peer, x)}, reps
        )
        rows.append(
            {
                "shape": f"batch={batch} T={seq} dim={dim} heads={heads} head_dim={head_dim} depth=2 expansion=4 chunk=64",
                "forward_s": {"ours": fwd["ours"], "peer": fwd["peer"]},
                "forward_speedup": fwd["peer"] / fwd["ours"],
                "forward_backward_s": {"ours": fb["ours"], "peer": fb["peer"]},
                "forward_backward_speedup": fb["peer"] / fb["ours"],
                "ours_tokens_per_s_forward": batch * seq / fwd["ours"],
            }
        )
    return rows


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
    args = parser.parse_args(argv)
    torch.manual_seed(0)
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
