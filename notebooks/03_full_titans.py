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
# # 03 · The full Titans memory layer
#
# `TitansMemoryLayer` puts the predictor (notebook 01) and the memory (notebook 02) in one loop.
# For every token $x_t$ it performs five steps, in this order:
#
# 1. **Surprise.** $s_t = \frac{1}{d}\lVert P_\phi(x_t) - x_t\rVert^2$, and its moving average
#    $\bar s_t = \beta\,\bar s_{t-1} + (1-\beta)\,s_t$ (reported, for plots).
# 2. **Read.** $y_t = M_\theta(x_t)$, with the memory as it is *before* this token.
# 3. **Gated write.** $\theta \leftarrow \theta - \eta\, g_t\, \operatorname{clip}_{G}\bigl(\nabla_\theta \ell(\theta; x_t)\bigr)$,
#    with a write gate $g_t \in [0, 1]$ computed from $s_t$ (section 3).
# 4. **Predictor update.** $\phi \leftarrow \phi - \eta_P\,(1 - g_t)\, \operatorname{clip}_{G_P}\bigl(\nabla_\phi s_t\bigr)$:
#    the predictor learns what is *usual*, and hardly anything from an anomaly.
# 5. **Forgetting.** $\theta \leftarrow (1-\alpha)\,\theta$.
#
# Here $\ell(\theta; x) = \frac1d\lVert M_\theta(x) - x\rVert^2$, $\eta$ = `write_lr`,
# $\eta_P$ = `surprise_lr`, $\alpha$ = `forget_rate`, $\beta$ = `momentum`, and
# $\operatorname{clip}_G(v) = v \cdot \min(1, G / \lVert v\rVert)$ rescales a gradient (all of a
# network's parameters together) to norm at most $G$.
#
# The original demo ran the same loop with $g_t = s_t$ (the raw surprise), a plain predictor step
# and no clipping. That version **diverges to NaN** on its own showcase sequence; section 2
# dissects why, section 3 shows the fix.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from titans_memory import (
    MemoryModule,
    SurpriseMetric,
    TitansMemoryLayer,
    generate_repeating_with_anomalies,
)
from titans_memory.viz import (
    ScenarioRun,
    plot_gate_curve,
    plot_memory_activity,
    plot_momentum_vs_raw,
    plot_runs_side_by_side,
    plot_traces,
    run_stream,
    trace_array,
    weight_norm,
    weight_norms,
    write_norms,
)

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 100

# The original demo's full-pipeline sequence: 1..5 repeated, a value of 50 at three positions.
seq, mask = generate_repeating_with_anomalies(
    pattern=[1.0, 2.0, 3.0, 4.0, 5.0], repeats=12, anomaly_indices=[12, 30, 48], anomaly_value=50.0
)
anomalies = mask.nonzero().squeeze(-1).tolist()
ordinary = ~mask.bool().numpy()
x = seq.numpy()
T = len(seq)
t = np.arange(T)
print(f"T = {T} tokens, anomalies at {anomalies}")

# %% [markdown]
# ## 1 · Running the layer
#
# `process_sequence(seq)` takes a `(T, input_dim)` tensor and returns a dict of per-step lists:
# `outputs` ($y_t$), `surprise_scores` ($s_t$), `surprise_momentum` ($\bar s_t$), `write_gates`
# ($g_t$), `surprise_scale` ($c_{t-1}$, section 3) and `memory_snapshots` (the weights after step
# $t$). On long sequences pass `snapshot_every=k` to keep only every $k$-th snapshot, and
# `as_tensors=True` to get each trace as one stacked tensor instead of a list.
#
# The settings are the original demo's for this sequence: `memory_dim=16, hidden_dim=16,
# momentum=0.9, forget_rate=0.01`, and the defaults `write_lr=0.01, surprise_lr=0.01`.

# %%
torch.manual_seed(42)
layer = TitansMemoryLayer(input_dim=1, memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)
theta_0 = layer.memory.get_weight_snapshot()
result = layer.process_sequence(seq.unsqueeze(-1))
# the same run, packaged for the plotting functions of titans_memory.viz
run = ScenarioRun(None, seq, mask, result, layer, theta_0, label="The bounded layer")

y = trace_array(result, "outputs")[:, 0]  # (T, 1) reads of 1-d tokens -> (T,)
surprise = trace_array(result, "surprise_scores")
gates = trace_array(result, "write_gates")
c_prev = trace_array(result, "surprise_scale")  # c_{t-1}: the scale the gate compared s_t with
norms = weight_norms([theta_0] + result["memory_snapshots"])  # norms[0]: before step 0
# The write alone at step t: theta_t = (1 - alpha) (theta_{t-1} + w_t), so
# w_t = theta_t / (1 - alpha) - theta_{t-1}; write_norms gives ||w_t||.
write_size = write_norms(result["memory_snapshots"], theta_0, layer.memory.forget_rate)

print("surprise at the anomalies:", surprise[anomalies].round(2))
print("gate at the anomalies    :", gates[anomalies].round(3))
print(f"median gate elsewhere    : {np.median(gates[ordinary]):.3f}")
print(
    f"largest write: {write_size.max():.4f}  (bound write_lr * memory_max_grad_norm = "
    f"{layer.memory.write_lr * layer.memory_max_grad_norm:g})"
)
assert np.isfinite(norms).all() and ((gates >= 0) & (gates <= 1)).all()
assert write_size.max() <= layer.memory.write_lr * layer.memory_max_grad_norm * (1 + 1e-4)

# %%
plot_momentum_vs_raw(run)

# %%
plot_memory_activity(run)

# %% [markdown]
# Reading the two figures:
#
# * **Surprise** (the first) spikes by orders of magnitude at each anomaly and stays small otherwise; the
#   smoothed curve carries each spike forward.
# * **Memory** (the second, bottom). Each write moves the weights by at most $\eta\,G$ =
#   `write_lr * memory_max_grad_norm` (0.1 here), and comes close to it only where the gate is
#   open: while the pattern is new, and at the anomalies. The weight norm drifts down: forgetting
#   takes 1 % of the weights at every step, while most writes are small and do not point along
#   $\theta$.
# * **Read** (the second, top). The memory follows the pattern, below it: forgetting keeps pulling the weights
#   towards 0. At an anomaly the read is far above the pattern but far below 50: the MLP
#   *extrapolates* from the values it was trained on, and what the write of an earlier 50 added
#   has partly faded.
#
# ## 2 · Why the original rule diverges
#
# The original demo wrote with the **raw surprise as the step-size multiplier**, and took plain,
# unbounded gradient steps for both networks:
#
# $$
# \theta \leftarrow \theta - \eta\, s_t\, \nabla_\theta \ell(\theta; x_t), \qquad
# \phi \leftarrow \phi - \eta_P\, \nabla_\phi s_t .
# $$
#
# Below, that loop is written out with the same modules (`MemoryModule.write` still implements
# $\eta\,s\,\nabla\ell$ when given the raw surprise, and `SurpriseMetric.update_predictor` is a
# plain step by default), on the same sequence, with the same settings and seed.

# %%
def original_rule(seq, seed=42, write_lr=0.01, forget_rate=0.01, surprise_lr=0.01):
    # The original demo's per-token loop: raw surprise as the write's multiplier, no bounds.
    torch.manual_seed(seed)
    metric = SurpriseMetric(input_dim=1, hidden_dim=16, momentum=0.9)
    memory = MemoryModule(input_dim=1, memory_dim=16, forget_rate=forget_rate, write_lr=write_lr)
    raw, norm = [], []
    for x_t in seq.unsqueeze(-1):
        s_t = metric(x_t)  # 1. surprise
        memory.read(x_t)  # 2. read
        memory.write(x_t, surprise_score=s_t)  # 3. write, step = write_lr * s_t
        metric.update_predictor(x_t, lr=surprise_lr)  # 4. predictor, unbounded step
        memory.apply_forgetting()  # 5. forget
        raw.append(s_t.item())
        norm.append(weight_norm(memory.get_weight_snapshot()))
    return np.array(raw), np.array(norm)


raw_orig, norm_orig = original_rule(seq)
print(" t    x_t   surprise s_t   step multiplier write_lr*s_t   weight norm after")
for i in range(10, 16):
    print(f"{i:2d} {x[i]:6.1f} {raw_orig[i]:14.2f} {0.01 * raw_orig[i]:30.3f} {norm_orig[i]:19.4g}")
# Beyond float32's range MemoryModule clamps the weights to +-3.4e38 (the original's plain float32
# arithmetic went to inf, then NaN): either way the memory is gone.
first_bad = int(np.argmax(norm_orig > 1e30))
print(f"memory weight norm above 1e30 (at float32's limit) from t = {first_bad} on")
assert np.isfinite(norm_orig).all() and (norm_orig[first_bad:] > 1e30).all()

# %% [markdown]
# What happens, step by step:
#
# 1. **$t = 12$, the anomaly.** $s_{12} \approx 39$, so the write's step is $0.01 \times 39 \approx 0.39$
#    times the gradient, and the gradient of $\lVert M(x) - x\rVert^2$ at $x = 50$ is itself huge
#    (it grows with $x$ and with the error). The weights jump by a factor of about 200. At the same
#    time the predictor takes an unbounded step on the same outlier and is thrown far off.
# 2. **$t = 13$, an ordinary token (4).** The wrecked predictor now makes an enormous error:
#    $s_{13} \approx 75{,}500$. The write's multiplier is $0.01 \times 75{,}500 \approx 755$, applied to
#    the gradient of a memory that is already far off: the norm reaches $10^{17}$.
# 3. **$t = 14$.** The next steps leave float32's range. In the original's plain float32
#    arithmetic they overflowed to `inf`, and `inf - inf` gave `NaN`: the memory was gone for good.
#    `MemoryModule.write` clamps what float32 cannot hold to $\pm 3.4\cdot10^{38}$ instead (it
#    stays finite for any input), so here the weights sit at that limit: finite, and just as gone
#    (forgetting would need thousands of steps to bring them back).
#
# (The original's figures summed the per-layer norms instead, which reads 7.6 → 1.5·10³ →
# 2.2·10¹⁷ → inf → NaN: the same blow-up.)
#
# It is a **positive feedback loop**: large surprise → large step → large error → larger surprise.
# Nothing bounds any link of the chain: $s_t$ is a squared error, with no upper bound, and gradient
# descent is only stable while step size × curvature stays below about 2.
#
# ## 3 · The fix: a bounded write gate and bounded steps
#
# The layer cuts the loop at every link.
#
# **Relative write gate.** Surprise means something only *relative to what is usual*. With $c_{t-1}$
# a running scale of recent surprise,
#
# $$
# g_t \;=\; \frac{s_t}{s_t + \tau\, c_{t-1}} \;\in\; [0, 1), \qquad \tau = \texttt{gate\_threshold} = 3 .
# $$
#
# A token as surprising as usual gets $g \approx 1/(1+\tau) = 0.25$; the gate is half open at
# $s_t = \tau\,c_{t-1}$ and tends to 1 for an anomaly, however large. It never exceeds 1 and does not
# depend on the units of the data.
#
# **Robust running scale.** $c_t = \rho\, c_{t-1} + (1-\rho)\,\min(s_t,\; \kappa\, c_{t-1})$, with
# $\rho$ = `scale_momentum` = 0.9 and $\kappa$ = `scale_clip` = 4: a new value is capped at $\kappa$
# times the scale before it enters the average, so one anomaly raises the scale by at most a factor
# $\rho + (1-\rho)\kappa = 1.3$ and does not make the tokens after it look unsurprising.
#
# **The gate works both ways.** The memory writes in proportion to $g_t$; the predictor learns in
# proportion to $1 - g_t$. An anomaly is stored in the memory but barely taught to the predictor,
# so it neither wrecks the predictor nor stops being surprising next time.
#
# **Bounded steps.** Both gradients are clipped: the memory's to $G$ = `memory_max_grad_norm`
# (default 10), the predictor's to $G_P$ = `predictor_max_grad_norm` (default 5). Ordinary tokens
# have smaller gradients and are not affected. One write moves $\theta$ by at most
# $\delta = \eta\, G$, so with forgetting
#
# $$
# \lVert \theta_t \rVert \;\le\; \max\Bigl(\lVert\theta_0\rVert,\; \delta\,\tfrac{1-\alpha}{\alpha}\Bigr),
# $$
#
# and without forgetting the norm grows at most linearly, $\lVert\theta_t\rVert \le \lVert\theta_0\rVert + t\,\delta$.
#
# The layer of section 1 ran on the same sequence, with the same settings and seed. Side by side:

# %%
assert np.allclose(gates, surprise / (surprise + layer.gate_threshold * c_prev), atol=1e-6)
delta = layer.memory.write_lr * layer.memory_max_grad_norm
alpha = layer.memory.forget_rate
bound = max(norms[0], delta * (1 - alpha) / alpha)
assert norms.max() <= bound + 1e-6
print(
    f"largest weight norm: original rule {norm_orig.max():.3g} (float32's limit), "
    f"bounded layer {norms.max():.3g} (guaranteed <= {bound:.3g})"
)
print(
    f"surprise one step after the first anomaly: original {raw_orig[13]:.0f}, "
    f"bounded layer {surprise[13]:.3f}"
)

# %%
display(
    plot_traces(
        {"original rule": raw_orig, "bounded layer": surprise},
        events=anomalies,
        log=True,
        ylabel="raw surprise $s_t$ (log)",
        title="Surprise: original rule (gate = raw surprise) versus the bounded layer",
    )
)
display(
    plot_traces(
        {"original rule": norm_orig, "bounded layer": norms[1:]},
        events=anomalies,
        log=True,
        ylabel=r"weight norm $\|\theta_t\|$ (log)",
        title=f"Memory weights: the original rule's are at float32's limit from t = {first_bad} on",
    )
)
# the bounded layer's surprise against the gate's half-open level, and the gate it used
plot_runs_side_by_side({"The bounded layer: same data, settings, seed": run})

# %% [markdown]
# The gate is a saturating function of the ratio $r_t = s_t / c_{t-1}$ alone, $g = r / (r + \tau)$:
# a raw surprise of 40 and one of 75,000 both give $g \approx 1$. The curve, with the layer's actual
# $(r_t, g_t)$ pairs on it:

# %%
plot_gate_curve(run)


# %% [markdown]
# What the gate does *not* do: it is relative, so even in a stream where nothing is unusual it
# opens partway for the tokens that are hardest *for now*. It tells the memory *how much more than
# usual* to write, not *whether* to write at all.
#
# ## 4 · Hyperparameters
#
# Three knobs, each varied alone from the settings of section 1:
#
# * **momentum $\beta$** only smooths the *reported* surprise $\bar s_t$. The gate uses the raw
#   $s_t$, so the memory is exactly the same for every $\beta$ (checked below);
# * **forget rate $\alpha$**: how fast unused contents fade;
# * **write lr $\eta$**: how far one write can move the memory (at most $\eta\,G$).
#
# The memory's quality is its read error $\lvert y_t - x_t\rvert$ on ordinary tokens, before each
# write (lower is better), averaged over each period of 5 tokens.

# %%
SETTINGS = dict(memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)


def sweep_run(**overrides):
    # The layer of section 1 (seeded alike) with some settings changed.
    return run_stream(seq, anomalies, **{**SETTINGS, **overrides})


def read_error(r):
    # |y_t - x_t| per step: the memory's read before each write against the token.
    return np.abs(trace_array(r.result, "outputs")[:, 0] - x)


def per_period_error(r, period=5):
    # Mean read error on the ordinary tokens of each period of the pattern.
    err = np.where(ordinary, read_error(r), np.nan).reshape(-1, period)
    return np.nanmean(err, axis=1)


by_beta = {beta: sweep_run(momentum=beta) for beta in [0.0, 0.5, 0.9, 0.97]}
for r in by_beta.values():
    assert np.array_equal(
        weight_norms(r.result["memory_snapshots"]),
        weight_norms(by_beta[0.0].result["memory_snapshots"]),
    ), "momentum must not change the memory"
display(
    plot_traces(
        {rf"$\beta$ = {b}": trace_array(r.result, "surprise_momentum") for b, r in by_beta.items()},
        events=anomalies,
        log=True,
        ylabel=r"$\bar s_t$ (log)",
        title=r"momentum $\beta$: smoothed surprise (the memory is the same for every $\beta$)",
    )
)
display(
    plot_traces(
        {
            rf"$\alpha$ = {a}": weight_norms(sweep_run(forget_rate=a).result["memory_snapshots"])
            for a in [0.0, 0.003, 0.01, 0.05]
        },
        events=anomalies,
        ylabel=r"$\|\theta_t\|$",
        title=r"forget rate $\alpha$: weight norm",
    )
)
plot_traces(
    {
        rf"$\eta$ = {lr}": per_period_error(sweep_run(write_lr=lr))
        for lr in [0.003, 0.01, 0.03, 0.1]
    },
    log=True,
    xlabel="period (5 tokens)",
    ylabel=r"mean $|y_t - x_t|$ (log)",
    title=r"write lr $\eta$: read error, ordinary tokens",
)

# %% [markdown]
# Writing and forgetting pull in opposite directions, so they are best chosen together. The mean
# read error over the last two periods, for a grid of write lr × forget rate. Look for the valley:
# the faster the memory forgets, the harder it must write to keep up, while writes that are too
# large overshoot (as in notebook 02) and the error rises again.

# %%
lrs = [0.003, 0.01, 0.03, 0.1, 0.3]
alphas = [0.0, 0.003, 0.01, 0.03, 0.1]
tail = ordinary & (t >= T - 10)
grid = np.array(
    [[read_error(sweep_run(write_lr=lr, forget_rate=a))[tail].mean() for lr in lrs] for a in alphas]
)
best = np.unravel_index(np.argmin(grid), grid.shape)
print(
    f"lowest error {grid[best]:.3f} at write_lr = {lrs[best[1]]}, forget_rate = {alphas[best[0]]}"
)

fig, ax = plt.subplots(figsize=(6.5, 4.5))
im = ax.imshow(grid, cmap="viridis_r", norm=plt.matplotlib.colors.LogNorm(), origin="lower")
ax.set_xticks(range(len(lrs)), [str(v) for v in lrs])
ax.set_yticks(range(len(alphas)), [str(v) for v in alphas])
ax.set_xlabel(r"write lr $\eta$")
ax.set_ylabel(r"forget rate $\alpha$")
ax.set_title("Mean read error, last two periods (lower is better)")
for i in range(len(alphas)):
    for j in range(len(lrs)):
        light = grid[i, j] < np.sqrt(grid.min() * grid.max())  # light cell: dark text
        ax.text(
            j,
            i,
            f"{grid[i, j]:.2f}",
            ha="center",
            va="center",
            fontsize=8,
            color="k" if light else "w",
        )
fig.colorbar(im, ax=ax, label=r"mean $|y_t - x_t|$")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Takeaways
#
# * The layer runs five steps per token: surprise, read, gated write, predictor update, forgetting.
# * The raw surprise is unbounded. Used as a step-size multiplier it feeds a loop (surprise → step
#   → error → surprise) that took the original demo from a normal state to NaN within two steps
#   of the first anomaly.
# * The fix bounds every link: a relative gate $g_t = s_t / (s_t + \tau c_{t-1}) \in [0, 1)$, a running
#   scale that one outlier cannot inflate, a predictor that learns with $1 - g_t$, and clipped
#   gradient steps. The memory's norm is then provably bounded, whatever the input.
# * Momentum here only smooths the reported surprise. Write lr and forget rate set the balance
#   between storing and fading.
#
# **From the demo to the papers.** Titans replaces the scalar gate with data-dependent gates
# $\theta_t$ (step size), $\eta_t$ (momentum) and $\alpha_t$ (forgetting) in
# $S_t = \eta_t S_{t-1} - \theta_t \nabla\ell(M_{t-1}; x_t)$, $M_t = (1-\alpha_t) M_{t-1} + S_t$;
# there, momentum acts on the update itself. It also normalises the keys, which plays the role the
# clipping plays here: with raw keys the core's memory diverges too. See `NeuralMemory` in the core.
