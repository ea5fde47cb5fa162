# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Long context: a needle far beyond the window
#
# The Titans paper's central claim is that the neural memory carries information **far beyond
# the attention window**: its S-NIAH table finds a pass key hidden in 16K tokens of filler with
# 96–98% accuracy (MAC, LMM), where a model that only attends to a window cannot. This notebook
# runs the experiment at a size that trains in about a minute on a laptop CPU:
#
# 1. the tasks: what a needle-in-a-haystack sequence looks like, token by token;
# 2. two small models, both with an attention-sized reach of 32 tokens: the memory alone (LMM)
#    and a sliding-window Transformer (SWA), trained on 64-token sequences;
# 3. both tested from 32 to 8,192 tokens, 256× the window, at several needle depths;
# 4. why the memory's forget gate has to start small for this.
#
# The full benchmark (every architecture, MIRAS memories, ablations, multi-query associative
# recall, two seeds, up to 16K tokens) is `titans bench niah` and `titans bench mqar`; its
# results are in the README, section "Long-context evidence".

# %%
# %matplotlib inline
import time

import numpy as np
import torch

from titans_memory.tasks.longcontext import (
    TaskModelConfig,
    TrainSettings,
    build_model,
    evaluate,
    train_on_answers,
)
from titans_memory.tasks.needles import KINDS, needle_batch, render
from titans_memory.viz.longcontext import plot_accuracy_vs_length, plot_depth_heatmaps

torch.manual_seed(0)
torch.set_num_threads(1)

# %% [markdown]
# ## The tasks
#
# Each sequence is a haystack with a needle in it, then a question, then the answer. The model
# reads the tokens and is scored on predicting the answer's tokens (the argmax over the answer's
# alphabet must be right at every one of them). Four kinds, after the paper's S-NIAH (RULER):
#
# - **passkey**: a two-digit number after `[pass key:` in a phrase repeated over and over;
# - **number**: the same needle among random tokens, digits included (only the marker tells);
# - **word**: a three-letter word among random words of the same letters;
# - **multikey**: eight needles with keys `K0 .. K15`; the question names one key.

# %%
for kind in KINDS:
    batch = needle_batch(kind, 1, 48, seed=1, keys=3)
    print(f"{kind:>8}: {render(batch.tokens[0])}")
    print(f"{'':>8}  answer {render(batch.targets[0, 0])}, chance {batch.chance:.2%}\n")

# %% [markdown]
# `depth` places the needle: 0 at the start of the haystack, 1 right before the question. The
# generators are seeded and deterministic; the evaluation below uses the same sequences for
# both models.

# %%
for depth in (0.0, 0.5, 1.0):
    b = needle_batch("passkey", 1, 400, seed=0, depth=depth)
    print(f"depth {depth:.1f}: needle at token {int(b.needles[0, 0])} of 400")

# %% [markdown]
# ## Two models, one window
#
# Both have two layers of width 64 and see 32 tokens at a time: the SWA baseline through its
# attention window (with the same short causal convolution on q, k, v that the memory has), the
# LMM through its memory's chunk of 16 tokens and that convolution. Everything else the LMM knows
# about the past is in the weights of its memory, written at test time.
#
# Training: AdamW on the cross-entropy of the answer tokens, 64-token sequences (2× the
# window), needles at random depths. The SWA sees the needle in its window only when it lies in
# the last 32 tokens.

# %%
cfg = TaskModelConfig(vocab_size=64)
print(cfg)
steps = 150


def batches(seed: int):
    rng = np.random.default_rng(seed)
    while True:
        yield needle_batch("passkey", 16, 64, rng)


def train(name: str, config: TaskModelConfig = cfg):
    model = build_model(name, config, seed=0)
    result = train_on_answers(model, batches(0), TrainSettings(steps=steps, warmup=15))
    print(f"{name}: {result.steps} steps in {result.seconds:.0f} s, "
          f"answer loss {np.mean(result.losses[:10]):.2f} -> {np.mean(result.losses[-10:]):.3f}")
    return model


models = {"lmm": train("lmm")}

# %%
models["swa"] = train("swa")

# %% [markdown]
# ## Far beyond the window
#
# Each model answers the same 16 sequences per (length, depth) cell, from 32 tokens (1× the
# window) to 8,192 (256×). The records have the form `titans bench` writes, so the same
# figure functions draw them.

# %%
lengths, depths = (32, 128, 512, 2048, 8192), (0.0, 0.5, 1.0)


def records_of(name: str, model) -> list[dict]:
    out = []
    for n in lengths:
        for d in depths:
            b = needle_batch("passkey", 8, n, seed=1000 + n, depth=d)
            out.append(dict(model=name, task="passkey", context_length=n, depth=d, pairs=None,
                            accuracy=evaluate(model, b), chance=b.chance, seed=0))
    accs = [np.mean([r["accuracy"] for r in out if r["context_length"] == n]) for n in lengths]
    print(f"{name}: " + ", ".join(f"{n}: {a:.0%}" for n, a in zip(lengths, accs, strict=True)))
    return out


start = time.perf_counter()
records = [r for name, model in models.items() for r in records_of(name, model)]
print(f"evaluated in {time.perf_counter() - start:.0f} s")

# %%
plot_accuracy_vs_length(records, ["passkey"], window=cfg.window)

# %%
plot_depth_heatmaps(records, cols=2)

# %% [markdown]
# What to read in them:
#
# - **SWA** answers only when the needle is inside its window: at depth 1 of a 32-token
#   sequence; elsewhere it guesses (chance is 1%). Its accuracy falls to chance as soon as the
#   haystack outgrows the window.
# - **LMM** was trained on 64 tokens and still answers at lengths it never saw, with the needle
#   thousands of tokens back: the needle was written into the memory's weights when it went by,
#   and the repeated filler, which the memory learns to predict, barely disturbs it.
#
# The checks below hold the notebook to that reading.

# %%
acc = {(r["model"], r["context_length"], r["depth"]): r["accuracy"] for r in records}
far = [acc[("lmm", n, d)] for n in (2048, 8192) for d in depths]
print("LMM at 64x and 256x the window:", far)
assert min(far) >= 0.8, far
swa_far = np.mean([acc[("swa", n, d)] for n in (512, 2048, 8192) for d in depths])
print(f"SWA beyond 16x the window: {swa_far:.1%} (chance 1%)")
assert swa_far <= 0.1

# %% [markdown]
# ## Why the forget gate starts small here
#
# The memory forgets at a learned, data-dependent rate α_t (Titans eq. 13: `M_t = (1 − α_t) M_{t−1}
# + S_t`). The library's `MemoryConfig` starts it at α = 0.005, a half-life of about 140 tokens:
# a short memory by design. A needle 8,000 tokens back
# has then been multiplied by `(1 − 0.005)^8000 ≈ 4e-18`: gone, unless training has learned to
# close the gate, and 64-token training sequences give little reason to. The task models start
# at α = 5e-5 instead (`TaskModelConfig.forget_init`, half-life ~14,000 tokens). The same LMM
# with the library's rate:

# %%
from dataclasses import replace  # noqa: E402

for alpha in (5e-5, 5e-3):
    print(f"alpha = {alpha:g}: half-life {np.log(2) / alpha:,.0f} tokens, "
          f"kept after 8,192 tokens: {(1 - alpha) ** 8192:.1e}")
libforget = train("lmm", replace(cfg, forget_init=5e-3))
records += records_of("lmm, alpha=0.005", libforget)
plot_accuracy_vs_length(records, ["passkey"], window=cfg.window)

# %%
acc = {(r["model"], r["context_length"], r["depth"]): r["accuracy"] for r in records}
lib_far = np.mean([acc[("lmm, alpha=0.005", 8192, d)] for d in depths])
print(f"alpha = 0.005 at 8,192 tokens: {lib_far:.0%}; alpha = 5e-5: "
      f"{np.mean([acc[('lmm', 8192, d)] for d in depths]):.0%}")
assert lib_far <= 0.5

# %% [markdown]
# Measured when the default was chosen (an LMM trained for 250 steps of 32 × 128 passkey tokens,
# 16 sequences per length): α = 0.005 answered 100% at 2,048 tokens and 6% at 8,192; α = 5e-4
# 100% at 8,192 and 56% at 16,384; α = 5e-5 100% at 16,384. The benchmark keeps the library's
# rate as the ablation `lmm-libforget`.

# %% [markdown]
# ## The full benchmark
#
# ```bash
# titans bench niah --json niah.json --out figures   # passkey: 14 models, two seeds, up to 16K
# titans bench mqar --json mqar.json --out figures   # multi-query associative recall
# titans bench niah --kinds multikey --models lmm,mac,swa   # another kind of needle
# titans bench niah --quick --models lmm,swa         # a few minutes
# ```
#
# `--models` picks among the architectures (`lmm`, `mac`, `mag`, `mal`, `swa`), the MIRAS
# memories inside the LMM (`lmm-moneta`, `lmm-yaad`, `lmm-memora`, `lmm-deltanet`, `lmm-gdn`) and
# the ablations (`lmm-nomom`, `lmm-noforget`, `lmm-matrix`, `lmm-libforget`); `titans bench niah --list` lists
# them. The README's section "Long-context evidence" holds the tables of the default run beside
# the paper's numbers, and says where they do not agree.
