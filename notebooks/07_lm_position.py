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
# # 07 · Loss against position on your own long text
#
# The needle benchmarks (notebook 06) show that a memory can carry one fact far beyond the
# attention window. The language-modelling question is broader: on real long documents, are
# the bytes that come late predicted better by a model with memory than by one whose window no
# longer sees the beginning? Long-context papers answer with the loss against the position in
# the document. `titans bench lm` measures it:
#
# 1. every model trains on the same batches of the training documents (equal tokens, sizes
#    matched to within one unit of MLP width);
# 2. the first bytes of long held-out documents go through each model in one causal pass, and
#    the loss of every byte is summed into position buckets (bytes 0-64, 64-256, ...);
# 3. full attention is scored twice: with its training length as a sliding window, and over
#    the whole document.
#
# This notebook runs it at toy size on a folder of text files: here the library's own sources,
# but any folder works (`data=...`, or `titans bench lm --data PATH` on the command line). The
# documents are split into training and held-out files by a hash of their names.

# %%
# %matplotlib inline
import time
from dataclasses import replace
from pathlib import Path

import torch

import titans_memory
from titans_memory.tasks.lm_bench import LMSettings, run_benchmark, tables
from titans_memory.viz.lm import plot_bits_vs_position

torch.set_num_threads(1)
folder = Path(titans_memory.__file__).parent  # your own folder of text files here
print(folder, sum(1 for _ in folder.rglob("*.py")), "files")

# %% [markdown]
# ## Settings
#
# `LMSettings` holds everything; its defaults are the 50-minute benchmark. Here: three models,
# one seed, 25 steps of 8 sequences of 256 bytes, and 4 held-out documents scored over their
# first 2,048 bytes. A fifth of the files is held out, so that several long ones are.

# %%
base = LMSettings()
settings = replace(
    base,
    models=("full", "swa", "lmm"),
    seeds=(0,),
    data=str(folder),
    held_out_fraction=0.2,
    train=replace(base.train, steps=25, warmup=5),
    batch_size=8,
    train_length=256,
    eval_length=2048,
    eval_documents=4,
    buckets=(0, 64, 256, 512, 1024, 2048),
    workers=1,
    budget_minutes=None,
)
start = time.perf_counter()
result = run_benchmark(settings, progress=False)
print(f"{time.perf_counter() - start:.0f} s; scored:", ", ".join(result["documents"]))

# %% [markdown]
# ## The table and the figure
#
# One row per model (full attention twice: `@256`, its training length, and `@2,048`, the whole
# document), one column per position bucket; `(> window)` marks buckets wholly beyond the
# sliding window of 64 bytes, `(> train)` those beyond the training length. The unigram row is
# the floor any model must beat. After 25 steps the models have barely started: the benchmark's
# default trains 340 steps of 16 x 512 bytes, two seeds (the band in the figure spans them).

# %%
print(tables(result, settings))

# %%
plot_bits_vs_position(result["records"], settings.models, unigram=result["unigram"],
                      window=settings.model.window, train_length=settings.train_length)

# %% [markdown]
# Every record carries the model's parameter count, its training steps and tokens seen, so a
# comparison can be checked for equal size and equal training. With `carry=True` (`--carry`)
# each folder's documents are also read one after another without resetting the state.
