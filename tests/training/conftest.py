"""Shared fixtures of the training tests: a small text corpus on disk and tiny, fast configs."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from titans_memory.training.config import TrainConfig

WORDS = (
    "the memory of a model is written at test time by gradient steps on surprise with momentum "
    "and forgetting while attention reads a sliding window of recent tokens"
).split()


def write_corpus(folder: Path, n_files: int = 12, seed: int = 0) -> Path:
    """``n_files`` text files of pseudo-random words (different lengths), and a nested one."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        text = " ".join(rng.choice(WORDS) for _ in range(300 + 40 * i))
        (folder / f"doc{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "nested.txt").write_text("def f(x):\n    return x + 1\n" * 20, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_config(data: Path | str, **changes) -> TrainConfig:
    """LMM of width 16, 2 layers; 4 streams of 32 tokens; 4 steps; state carried over 2 segments."""
    base = dict(
        arch="lmm", dim=16, heads=2, depth=2, window=16, segment=16, memory_chunk=8, persistent_tokens=2,
        seq_len=32, state_segments=2, batch_size=4, steps=4, warmup_steps=1, lr=3e-3,
        eval_every=2, eval_tokens=256, eval_context=64, eval_batch=4, threads=1, data=str(data),
    )
    base.update(changes)
    return TrainConfig(**base)



@pytest.fixture
def kit(corpus_dir) -> SimpleNamespace:
    return SimpleNamespace(corpus=corpus_dir, config=lambda **c: tiny_config(corpus_dir, **c), write_corpus=write_corpus)
