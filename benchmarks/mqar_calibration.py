"""How many steps does full attention need to learn MQAR? The calibration behind ``titans bench mqar``'s default.

One run of the sanity baseline ``attn`` (width 64, one seed) at a given number of tokens per step,
steps, peak learning rate and training length; prints one JSON line (accuracy per length/pairs,
wall time). The runs of 2026-12-06 are in ``benchmarks/results/mqar_calibration.json``::

    uv run python benchmarks/mqar_calibration.py 1024 1000 3e-3 attn 64   # tokens/step, steps, lr, models, length
"""

from __future__ import annotations

import json
import sys
import time

import torch

from titans_memory.tasks.bench import MQARSettings, run_benchmark
from titans_memory.tasks.longcontext import TrainSettings


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    batch_tokens, steps, lr = int(argv[0]), int(argv[1]), float(argv[2])
    models = tuple(argv[3].split(",")) if len(argv) > 3 and argv[3] else ("attn",)
    length = int(argv[4]) if len(argv) > 4 else 128
    settings = MQARSettings(
        models=models, seeds=(0,), widths=(64,), lrs=(lr,), batch_tokens=batch_tokens, train_lengths=(length,),
        train=TrainSettings(steps=steps, lr=lr), lengths=(64, 128, 256), pairs=(4, 8, 16), workers=1,
    )
    start = time.time()
    records = run_benchmark(settings, progress=False)
    print(json.dumps({
        "tl": length, "bt": batch_tokens, "steps": steps, "lr": lr, "wall": time.time() - start,
        "acc": {f"{r['model']}/{r['context_length']}/{r['pairs']}": r["accuracy"] for r in records},
        "train_seconds": {r["model"]: r["train_seconds"] for r in records},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
