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
# # 04 · Visualising the memory on four kinds of stream
#
# Notebooks 01–03 built the layer piece by piece. Here we only *look*: four streams with different
# kinds of novelty, each through the same layer, shown as a full dashboard and then side by side.
#
# | scenario | what is new | what a good memory does |
# |---|---|---|
# | **A. anomalies** | isolated spikes in a repeating pattern | write hard at each spike, little otherwise |
# | **B. frequency shift** | a sine wave changes frequency | react at the switch, then settle to the new regime |
# | **C. step change** | the pattern jumps to a new level and stays there | react at the jump, then treat the new level as usual |
# | **D. noisy pattern** | spikes in a noisy sine | react to the spikes more than to the noise |
#
# One of the four will not go as hoped, and that is instructive too.
#
# The plotting functions come from `titans_memory.viz`: each returns a matplotlib `Figure` (and
# never calls `plt.show`), so a cell that ends with a figure displays it.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from titans_memory import generate_frequency_shift
from titans_memory.viz import (
    SCENARIOS,
    plot_forgetting_effect,
    plot_full_pipeline,
    plot_runs_side_by_side,
    plot_surprise_over_time,
    run_stream,
    trace_array,
    weight_norms,
)

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 90

# the layer of every run below (run_stream seeds torch with 42 before building it)
LAYER = dict(memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)


# %% [markdown]
# ## The four streams

# %%
gen = torch.Generator().manual_seed(42)

# A. the original demo's full-pipeline stream: 1..5 repeated, 50 at t = 12, 30, 48
seq_a, mask_a = SCENARIOS["full_pipeline"].sequence()
events_a = mask_a.nonzero().flatten().tolist()

# B. sin(2 pi f t): f = 0.05 until t = 60, then 0.2
seq_b, events_b = generate_frequency_shift(
    length=120, base_freq=0.05, shifted_freq=0.2, shift_at=[60]
)

# C. the pattern 1, 2, 3 for 60 steps, then 21, 22, 23: a lasting change of level
seq_c = torch.tensor([1.0, 2.0, 3.0] * 40)
seq_c[60:] += 20.0
events_c = [60]

# D. a slow sine plus Gaussian noise (std 0.15), with spikes of +8 at three positions
t_d = torch.arange(120, dtype=torch.float32)
seq_d = torch.sin(2 * math.pi * 0.04 * t_d) + 0.15 * torch.randn(120, generator=gen)
events_d = [30, 65, 100]
seq_d[events_d] += 8.0

streams = {
    "A. anomalies": (seq_a, events_a),
    "B. frequency shift": (seq_b, events_b),
    "C. step change": (seq_c, events_c),
    "D. noisy pattern": (seq_d, events_d),
}
runs = {
    title: run_stream(seq, events, title=title, **LAYER) for title, (seq, events) in streams.items()
}
for title, run in runs.items():
    gates = trace_array(run.result, "write_gates")
    ev = run.anomaly_indices
    quiet = np.delete(gates, ev)
    print(
        f"{title:20s} T = {len(run.seq):3d}   gate at events {np.round(gates[ev], 2)}   "
        f"median gate elsewhere {np.median(quiet):.2f}"
    )
    assert np.isfinite(weight_norms(run.result["memory_snapshots"])).all()

# %% [markdown]
# ## Dashboards
#
# `plot_full_pipeline` shows, for one run: the input, the raw and the smoothed surprise, the write
# gate $g_t$, the memory's weight norm and, at the bottom, the size of each write on every
# first-layer weight (forgetting factored out). Scenario A is the original demo's showcase.

# %%
plot_full_pipeline(runs["A. anomalies"])

# %% [markdown]
# **B. Frequency shift.** Nothing special happens at the switch, and that is the lesson. The
# demo's predictor and memory map each *value* to itself: they see values, not the order in which
# they come. Before and after the switch the sine takes values in the same range $[-1, 1]$, so for
# them nothing is new; the surprise even drops, because the faster sine, sampled at integer $t$,
# repeats a handful of values. Detecting a change of *rhythm* needs a memory whose keys depend on
# the recent past: in the core, keys and values come from a short causal convolution over
# neighbouring tokens.

# %%
fig = plot_full_pipeline(runs["B. frequency shift"])
fig.axes[0].set_title("1. Input (red: the frequency switch)")
fig

# %% [markdown]
# **C. Step change.** Unlike an isolated anomaly, the new level stays. The gate opens fully at the
# jump and stays high for a few steps. The surprise remains higher than before (the predictor
# learns new values slowly, and least while the gate is open), but the running scale $c_t$ follows
# it up (geometrically: by at most a factor 1.3 per step), so within about twenty steps the gate
# falls back towards its usual level: the new regime has become the usual one.

# %%
fig = plot_full_pipeline(runs["C. step change"])
fig.axes[0].set_title("1. Input (red: the jump)")
fig

# %% [markdown]
# **D. Noisy pattern.** Noise keeps the raw surprise jittering; the running scale absorbs that
# level, and the spikes open the gate more than anything else in the stream because the gate is
# *relative* to it. Later spikes open it less than the first: the predictor, which learns to map
# each value to itself, drifts towards the identity and extrapolates a little better each time (a
# limit of the demo's predictor, documented in `TitansMemoryLayer`). `plot_surprise_over_time`
# shows the input, the surprise and the gate only:

# %%
fig = plot_surprise_over_time(runs["D. noisy pattern"])
fig.axes[0].set_title("Input: a noisy sine with three spikes")
fig

# %% [markdown]
# ## Side by side
#
# One column per scenario: the input, the raw surprise (log scale) with the gate's half-open level
# $\tau\,c_{t-1}$, and the write gate. The red lines mark the events.

# %%
fig = plot_runs_side_by_side(runs)
fig.suptitle("Four streams through the same layer", fontsize=13)
fig

# %% [markdown]
# ## How the gate threshold $\tau$ changes what gets written
#
# The gate $g_t = s_t / (s_t + \tau\,c_{t-1})$ is half open when the surprise is $\tau$ times the
# usual level. A small $\tau$ writes almost everything; a large one writes only what stands far out.
# Below: the gate per scenario (columns) for three values of `gate_threshold` (rows), with the
# mean gate on ordinary steps and on the events.

# %%
taus = [1.0, 3.0, 10.0]
fig, axes = plt.subplots(len(taus), 4, figsize=(16, 7), sharex="col", sharey=True)
for row, tau in enumerate(taus):
    for col, (title, (seq, events)) in enumerate(streams.items()):
        run = run_stream(seq, events, **{**LAYER, "gate_threshold": tau})
        g = trace_array(run.result, "write_gates")
        ax = axes[row, col]
        ax.fill_between(np.arange(len(g)), g, step="mid", color="tab:green", alpha=0.5)
        for e in events:
            ax.axvline(e, color="tab:red", ls="--", alpha=0.35)
        ordinary = np.delete(g, events).mean()
        ax.text(
            0.98,
            0.95,
            f"events {g[events].mean():.2f}\nordinary {ordinary:.2f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox=dict(facecolor="white", alpha=0.8, lw=0),
        )
        if row == 0:
            ax.set_title(title)
        if col == 0:
            ax.set_ylabel(rf"$\tau$ = {tau:g}" + "\n" + "gate $g_t$")
        if row == len(taus) - 1:
            ax.set_xlabel("timestep $t$")
fig.suptitle(
    r"Write gate for three gate thresholds $\tau$ (mean gate: events vs ordinary steps)",
    fontsize=13,
)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## How long does a memory last? Forget rate × scenario
#
# The weight norm $\lVert\theta_t\rVert$ per scenario for four forget rates (`plot_forgetting_effect`,
# one figure per scenario). Without forgetting the
# norm only moves with the writes. With forgetting it falls until writing and decay balance: where
# the values are small (B, D) the writes are small too and the memory decays almost freely, while
# the jump in C drives a burst of writes that lifts the norm again.

# %%
rates = [0.0, 0.005, 0.02, 0.05]
for title, (seq, events) in streams.items():
    sweep = [run_stream(seq, events, title=title, **{**LAYER, "forget_rate": r}) for r in rates]
    display(plot_forgetting_effect(sweep))

# %% [markdown]
# ## Summary
#
# * The same three mechanisms handle all four kinds of novelty: **surprise** says how unexpected
#   an input is, the **bounded write gate** turns that into how hard to write (relative to the
#   usual level, never more than 1), and **forgetting** lets unused contents fade.
# * Isolated anomalies (A, D) open the gate briefly; a lasting change of level (C) opens it at
#   the jump, then the running scale and the predictor adapt and it closes again.
# * A change of *order* that keeps the same values (B) is invisible to the demo's value-to-value
#   memory: what counts as new depends on what the memory is asked to predict.
# * Every run stays finite: with the bounded gate and clipped steps, no input can blow up the
#   memory.
#
# Next: the same ideas as equations, in the core (`NeuralMemory`), where the gate, the momentum and
# the forgetting are learned, data-dependent and computed for whole chunks at once.
