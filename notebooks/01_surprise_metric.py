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
# # 01 · The surprise metric
#
# A neural long-term memory should not store everything it sees: it should store what it did **not**
# expect. This notebook builds the signal that decides *how much* to store, the **surprise**.
#
# In the demo layer, surprise is the error of a small **predictor** network $f_\phi$ that tries to
# reproduce its input. For an input $x_t \in \mathbb{R}^d$:
#
# $$
# s_t \;=\; \frac{1}{d}\,\bigl\lVert f_\phi(x_t) - x_t \bigr\rVert_2^2 .
# $$
#
# Familiar inputs are reproduced well ($s_t$ small); an input unlike anything seen so far is
# reproduced badly ($s_t$ large). After measuring, the predictor takes one gradient step on that
# same error, so whatever is surprising now becomes familiar later:
#
# $$
# \phi \;\leftarrow\; \phi - \eta \,\nabla_\phi\, s_t .
# $$

# %%
# %matplotlib inline
import torch

from titans_memory import SurpriseMetric, generate_repeating_with_anomalies
from titans_memory.viz import plot_traces

# %% [markdown]
# ## Familiar versus novel
#
# Train a fresh predictor on the value `1.0` for 50 steps, then ask how surprising `1.0` and `5.0`
# are. `metric(x)` only *measures* (no gradient, no update); `metric.update_predictor(x, lr)` is the
# learning step.

# %%
torch.manual_seed(42)
metric = SurpriseMetric(input_dim=1, hidden_dim=16)
familiar = torch.tensor([1.0])
novel = torch.tensor([5.0])

print(f"before training: s(1.0) = {metric(familiar).item():.4f}")
for _ in range(50):
    metric.update_predictor(familiar, lr=0.01)

s_familiar = metric(familiar).item()
s_novel = metric(novel).item()
print(f"after 50 steps:  s(1.0) = {s_familiar:.2e}   s(5.0) = {s_novel:.4f}")
assert s_novel > s_familiar

# %% [markdown]
# ## Surprise over a sequence
#
# Now a stream: the pattern `1, 2, 3` repeated 20 times, with three anomalies (value `50`) injected.
# At each step we measure the surprise *before* learning from the input (the order the full layer
# uses), then take one predictor step.
#
# The predictor's step is **bounded**: `max_grad_norm=5.0` rescales the gradient to norm at most 5,
# so one step moves the predictor's weights by at most $\eta \cdot 5$. Ordinary inputs mostly have
# smaller gradients and are barely affected; an anomaly is. (What happens without the bound is the next
# section.)
#
# The **momentum-smoothed** surprise is an exponential moving average with factor $\beta$
# (`momentum`):
#
# $$
# \bar s_t \;=\; \beta\,\bar s_{t-1} + (1-\beta)\, s_t, \qquad \bar s_1 = s_1 .
# $$
#
# With $\beta = 0.9$ a spike decays over roughly $1/(1-\beta) = 10$ steps: attention stays raised
# for a while *after* something surprising happened, which is what "momentum" buys.

# %%
seq, mask = generate_repeating_with_anomalies(
    pattern=[1.0, 2.0, 3.0], repeats=20, anomaly_indices=[14, 35, 50], anomaly_value=50.0
)
anomalies = mask.nonzero().squeeze(-1).tolist()


def surprise_trace(momentum=0.9, max_grad_norm=5.0, lr=0.01):
    # Measure (raw and smoothed), then learn: one bounded predictor step per token. This loop is
    # what the notebook teaches, so it is written out here rather than taken from the library.
    torch.manual_seed(42)
    m = SurpriseMetric(input_dim=1, hidden_dim=16, momentum=momentum)
    m.reset_momentum()
    raw, smooth = [], []
    for x in seq.unsqueeze(-1):  # (T, 1): one 1-d token at a time
        raw.append(m(x).item())
        smooth.append(m.compute_with_momentum(x).item())
        m.update_predictor(x, lr=lr, max_grad_norm=max_grad_norm)
    return torch.tensor(raw), torch.tensor(smooth)


raw, smooth = surprise_trace()
ordinary = raw[~mask.bool()]
print("anomalies at", anomalies)
print("surprise at the anomalies :", [round(raw[i].item(), 2) for i in anomalies])
print(f"ordinary tokens: median {ordinary.median():.4f}, max {ordinary.max():.4f}")
assert raw[anomalies].min() > 10 * ordinary.max()

# %%
plot_traces(
    {"raw surprise $s_t$": raw, r"momentum $\bar s_t$ ($\beta=0.9$)": smooth},
    events=anomalies,
    signal=seq,
    event_label="anomaly",
    log=True,
    ylabel="surprise (log scale)",
    title="Surprise spikes at the anomalies; momentum keeps it raised for a while",
)

# %% [markdown]
# Three things to read off the plot:
#
# * every anomaly produces a spike of several orders of magnitude (note the log scale);
# * between anomalies the surprise is small but not zero: the predictor keeps adjusting, and one
#   value of the pattern (here `1`) is consistently reconstructed worse than the others;
# * later anomalies are less surprising than the first: each bounded step still teaches the
#   predictor a little about the value 50.
#
# ## Why the predictor's step must be bounded
#
# The same stream, with the plain unbounded step (`max_grad_norm=None`, the original demo's rule).
# The squared error at $x = 50$ has a gradient thousands of times larger than usual, so one step
# throws the predictor far off, and the **ordinary token right after the anomaly** becomes far more
# surprising than the anomaly itself. Surprise is then measuring the damage done by the last
# update, not the novelty of the input.

# %%
raw_unbounded, _ = surprise_trace(max_grad_norm=None)
first = anomalies[0]
print(f"bounded step  : s at anomaly = {raw[first]:9.2f}, one step later = {raw[first + 1]:9.4f}")
print(
    f"unbounded step: s at anomaly = {raw_unbounded[first]:9.2f}, "
    f"one step later = {raw_unbounded[first + 1]:9.2f}"
)
assert raw_unbounded[first + 1] > raw_unbounded[first]

plot_traces(
    {"unbounded predictor step": raw_unbounded, "bounded step (max_grad_norm=5)": raw},
    events=anomalies,
    log=True,
    ylabel="raw surprise $s_t$ (log)",
    title="Unbounded learning turns one anomaly into a lasting disturbance",
)

# %% [markdown]
# ## Effect of the momentum factor

# %%
plot_traces(
    {rf"$\beta = {beta}$": surprise_trace(momentum=beta)[1] for beta in (0.0, 0.5, 0.9, 0.97)},
    events=anomalies,
    log=True,
    ylabel=r"smoothed surprise $\bar s_t$ (log)",
    title="Larger momentum: smoother surprise, longer memory of a spike",
)

# %% [markdown]
# ## Takeaways
#
# * Surprise = how badly a small predictor reproduces the input. It is large for the unexpected and
#   shrinks as the predictor learns.
# * Measure first, learn second: the surprise of $x_t$ is taken *before* the predictor sees $x_t$.
# * Momentum $\beta$ turns a one-step spike into a decaying episode of attention.
# * Bound the learning step: an unbounded predictor step on an outlier wrecks the predictor, and
#   the surprise that follows measures that damage instead of novelty. (The full layer goes one
#   step further and scales the predictor's step by $1 - g_t$, so it hardly learns from an
#   anomaly at all; notebook 03.)
# * The raw surprise is itself **unbounded** (above it ranges from about $10^{-5}$ to about 40). Using it
#   directly as a learning rate is what made the original demo diverge; notebook 03 shows the
#   bounded write gate that replaces it.
#
# **From the demo to the papers.** In Titans (arXiv 2501.00663) the surprise is not a separate
# predictor's error but the *gradient* of the memory's own loss, and momentum accumulates it:
# $S_t = \eta_t S_{t-1} - \theta_t \nabla_M \ell(M_{t-1}; x_t)$. The core of this library
# (`NeuralMemory`) implements that rule; the scalar surprise here is its one-number summary.
