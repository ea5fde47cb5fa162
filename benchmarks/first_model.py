"""README's "Train your first Titans model" table: LMM, MAC, MAG, MAL and SWA after one short budget.

Each architecture is trained by the ``titans train`` command itself, on the default data (the
bytes of Python's standard library), with one shared configuration (:data:`SETTINGS`: width 32,
2 layers, 8 streams of 64 bytes per step, the memory state carried over 4 segments) for the
same number of steps. The five runs go side by side, one process and one thread each, so that a
busy spell of the machine hits them all alike; each run's time inside ``train`` (``elapsed_s`` of
its last log line) and its wall time (process start to end) are recorded. Then the held-out
bits per byte of each (``titans train``'s last evaluation), the unigram baseline of the same
held-out bytes, and a continuation sampled from the best model with ``titans sample``.

    uv run python benchmarks/first_model.py --out runs/first --markdown
    uv run python benchmarks/first_model.py --steps 4 --quick --out /tmp/first    # a smoke run

A finished run found in ``--out`` (same number of steps) is not trained again, so a rerun after a
failure in the later parts starts from there; delete the folder to train afresh.

Prints the JSON, and with ``--markdown`` the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARCHS = ("lmm", "mac", "mag", "mal", "swa")

#: The shared configuration (TrainConfig fields) of every run; ``steps`` is set by --steps.
SETTINGS = dict(
    dim=32, depth=2, heads=2, window=64, segment=64, memory_chunk=16, persistent_tokens=4,
    seq_len=64, state_segments=4, batch_size=8, lr=1e-2, warmup_steps=20,
    eval_every=100, eval_tokens=8192, eval_context=512, eval_batch=8, threads=1,
)
QUICK = dict(dim=16, depth=2, heads=2, window=16, segment=16, memory_chunk=8, persistent_tokens=2,
             seq_len=32, state_segments=2, batch_size=4, lr=3e-3, warmup_steps=1,
             eval_every=2, eval_tokens=512, eval_context=128, eval_batch=4, threads=1)
PROMPT = "def __init__(self"


def _command(arch: str, out: Path, settings: dict, steps: int) -> list[str]:
    cmd = [sys.executable, "-m", "titans_memory.cli", "train", "--out", str(out / arch), "--quiet"]
    for key, value in {"arch": arch, **settings, "steps": steps}.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def _finished(run: Path, steps: int) -> dict | None:
    """The result of a finished run in ``run`` (its last evaluation at ``steps``), or None."""
    if not (run / "log.jsonl").is_file() or not (run / "wall_s.txt").is_file():
        return None
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    if not log or log[-1]["step"] != steps:
        return None
    return {"bits_per_byte": log[-1]["bits_per_byte"], "eval_loss": log[-1]["eval_loss"],
            "train_s": log[-1]["elapsed_s"],  # inside train(): data, model, steps, evaluations
            "wall_s": float((run / "wall_s.txt").read_text()), "log": log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/first"), help="folder of the five runs")
    parser.add_argument("--steps", type=int, default=200, help="training steps of every run (default: 200)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--sample-tokens", type=int, default=300, help="bytes sampled from the best model")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--markdown", action="store_true", help="print the README table too")
    args = parser.parse_args()
    settings = QUICK if args.quick else SETTINGS
    if args.steps % settings["eval_every"]:
        parser.error(f"--steps must be a multiple of eval_every ({settings['eval_every']})")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

    # --- the five runs, side by side ----------------------------------------------------------
    started = time.perf_counter()
    procs = {}
    runs = {}
    for arch in ARCHS:
        done = _finished(args.out / arch, args.steps)
        if done is not None:  # a finished run of the same length (a rerun after a failure later on)
            runs[arch] = done
            continue
        cmd = _command(arch, args.out, settings, args.steps)
        procs[arch] = (subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                       time.perf_counter())
    while procs:  # each run's wall time is taken when it ends, whatever the order
        for arch, (proc, t0) in list(procs.items()):
            if proc.poll() is None:
                continue
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"titans train ({arch}) failed:\n{err[-3000:]}")
            (args.out / arch / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
            runs[arch] = _finished(args.out / arch, args.steps)
            del procs[arch]
        time.sleep(1.0)
    runs = {a: runs[a] for a in ARCHS}
    wall = time.perf_counter() - started

    # --- the unigram baseline on the same held-out bytes ---------------------------------------
    from titans_memory.training.data import (
        ByteTokenizer,
        held_out_tokens,
        open_corpus,
        train_token_counts,
    )
    from titans_memory.training.evaluate import unigram_bits_per_byte

    tok = ByteTokenizer()
    corpus = open_corpus("stdlib", 0.05)
    held = held_out_tokens(corpus, tok, settings["eval_tokens"] + 1)
    unigram = unigram_bits_per_byte(train_token_counts(corpus, tok), held, settings["eval_context"], tok.byte_count)

    # --- a continuation from the best ------------------------------------------------------------
    best = min(runs, key=lambda a: runs[a]["bits_per_byte"])
    sample_cmd = [sys.executable, "-m", "titans_memory.cli", "sample", "--checkpoint", str(args.out / best),
                  "--prompt", PROMPT, "--max-new-tokens", str(args.sample_tokens), "--temperature", "1.0",
                  "--seed", "0", "--threads", "1"]
    sample = subprocess.run(sample_cmd, env=env, capture_output=True, text=True, check=True).stdout
    report = {
        "settings": {**settings, "steps": args.steps, "data": "stdlib"},
        "tokens_per_run": args.steps * settings["batch_size"] * settings["seq_len"],
        "unigram_bits_per_byte": unigram,
        "runs": {a: {k: v for k, v in r.items() if k != "log"} for a, r in runs.items()},
        "best": best,
        "sample_command": " ".join(["titans", *sample_cmd[3:]]),
        "sample": sample,
        "wall_s": wall,
        "logs": {a: r["log"] for a, r in runs.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.markdown:
        print()
        print("| model | held-out bits per byte | time in train() (s) |")
        print("|---|---:|---:|")
        for arch in sorted(runs, key=lambda a: runs[a]["bits_per_byte"]):
            print(f"| {arch.upper()} | {runs[arch]['bits_per_byte']:.3f} | {runs[arch]['train_s']:.0f} |")
        print(f"| unigram baseline | {unigram:.3f} | |")


if __name__ == "__main__":
    main()
