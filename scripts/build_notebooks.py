"""Build notebooks/01-04 (the demo-layer notebooks) from the cell sources below.

The notebooks are stored without outputs. This script is their source: edit a cell here, run

    uv run python scripts/build_notebooks.py

and commit both this file and the regenerated notebooks. Cell ids are deterministic, so an
unchanged cell gives an unchanged diff. ``tests/test_notebooks.py`` executes every notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


def build(name: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_")[0]
    for i, (kind, src) in enumerate(cells):
        cell = new_markdown_cell(src) if kind == "markdown" else new_code_cell(src)
        cell.id = f"nb{stem}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(NOTEBOOK_DIR.parent)}")


# --------------------------------------------------------------------------------------------
# 01: the surprise metric
# --------------------------------------------------------------------------------------------

NB01 = [
    md(r"""
# 01 · The surprise metric

A neural long-term memory should not store everything it sees: it should store what it did **not**
expect. This notebook builds the signal that decides *how much* to store, the **surprise**.

In the demo layer, surprise is the error of a small **predictor** network $f_\phi$ that tries to
reproduce its input. For an input $x_t \in \mathbb{R}^d$:

$$
s_t \;=\; \frac{1}{d}\,\bigl\lVert f_\phi(x_t) - x_t \bigr\rVert_2^2 .
$$

Familiar inputs are reproduced well ($s_t$ small); an input unlike anything seen so far is
reproduced badly ($s_t$ large). After measuring, the predictor takes one gradient step on that
same error, so whatever is surprising now becomes familiar later:

$$
\phi \;\leftarrow\; \phi - \eta \,\nabla_\phi\, s_t .
$$
"""),
    code(r"""
%matplotlib inline
import matplotlib.pyplot as plt
import torch

from titans_memory import SurpriseMetric, generate_repeating_with_anomalies

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 100
"""),
    md(r"""
## Familiar versus novel

Train a fresh predictor on the value `1.0` for 50 steps, then ask how surprising `1.0` and `5.0`
are. `metric(x)` only *measures* (no gradient, no update); `metric.update_predictor(x, lr)` is the
learning step.
"""),
    code(r"""
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
"""),
    md(r"""
## Surprise over a sequence

Now a stream: the pattern `1, 2, 3` repeated 20 times, with three anomalies (value `50`) injected.
At each step we measure the surprise *before* learning from the input (the order the full layer
uses), then take one predictor step.

The predictor's step is **bounded**: `max_grad_norm=5.0` rescales the gradient to norm at most 5,
so one step moves the predictor's weights by at most $\eta \cdot 5$. Ordinary inputs mostly have
smaller gradients and are barely affected; an anomaly is. (What happens without the bound is the next
section.)

The **momentum-smoothed** surprise is an exponential moving average with factor $\beta$
(`momentum`):

$$
\bar s_t \;=\; \beta\,\bar s_{t-1} + (1-\beta)\, s_t, \qquad \bar s_1 = s_1 .
$$

With $\beta = 0.9$ a spike decays over roughly $1/(1-\beta) = 10$ steps: attention stays raised
for a while *after* something surprising happened, which is what "momentum" buys.
"""),
    code(r"""
seq, mask = generate_repeating_with_anomalies(
    pattern=[1.0, 2.0, 3.0], repeats=20, anomaly_indices=[14, 35, 50], anomaly_value=50.0
)
anomalies = mask.nonzero().squeeze(-1).tolist()


def surprise_trace(momentum=0.9, max_grad_norm=5.0, lr=0.01):
    # Measure (raw and smoothed), then learn: one bounded predictor step per token.
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
"""),
    code(r"""
fig, (ax_in, ax_s) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
ax_in.plot(seq.numpy(), color="tab:blue", lw=1, label="input")
ax_in.scatter(anomalies, seq[anomalies].numpy(), color="tab:red", zorder=3, label="anomaly")
ax_in.set_ylabel("value $x_t$")
ax_in.set_title("Input: repeating pattern 1, 2, 3 with anomalies")
ax_in.legend(loc="upper right")

ax_s.plot(raw.numpy(), color="tab:orange", lw=1.2, label="raw surprise $s_t$")
ax_s.plot(smooth.numpy(), color="tab:purple", lw=2, label=r"momentum $\bar s_t$ ($\beta=0.9$)")
for i in anomalies:
    ax_s.axvline(i, color="tab:red", ls="--", alpha=0.3)
ax_s.set_yscale("log")
ax_s.set_xlabel("timestep $t$")
ax_s.set_ylabel("surprise (log scale)")
ax_s.set_title("Surprise spikes at the anomalies; momentum keeps it raised for a while")
ax_s.legend(loc="upper right")
fig.tight_layout()
plt.show()
"""),
    md(r"""
Three things to read off the plot:

* every anomaly produces a spike of several orders of magnitude (note the log scale);
* between anomalies the surprise is small but not zero: the predictor keeps adjusting, and one
  value of the pattern (here `1`) is consistently reconstructed worse than the others;
* later anomalies are less surprising than the first: each bounded step still teaches the
  predictor a little about the value 50.

## Why the predictor's step must be bounded

The same stream, with the plain unbounded step (`max_grad_norm=None`, the original demo's rule).
The squared error at $x = 50$ has a gradient thousands of times larger than usual, so one step
throws the predictor far off, and the **ordinary token right after the anomaly** becomes far more
surprising than the anomaly itself. Surprise is then measuring the damage done by the last
update, not the novelty of the input.
"""),
    code(r"""
raw_unbounded, _ = surprise_trace(max_grad_norm=None)
first = anomalies[0]
print(f"bounded step  : s at anomaly = {raw[first]:9.2f}, one step later = {raw[first + 1]:9.4f}")
print(
    f"unbounded step: s at anomaly = {raw_unbounded[first]:9.2f}, "
    f"one step later = {raw_unbounded[first + 1]:9.2f}"
)
assert raw_unbounded[first + 1] > raw_unbounded[first]

fig, ax = plt.subplots(figsize=(10, 3.5))
ax.plot(raw_unbounded.numpy(), color="tab:red", lw=1.2, label="unbounded predictor step")
ax.plot(raw.numpy(), color="tab:orange", lw=1.2, label="bounded step (max_grad_norm=5)")
for i in anomalies:
    ax.axvline(i, color="k", ls="--", alpha=0.2)
ax.set_yscale("log")
ax.set_xlabel("timestep $t$")
ax.set_ylabel("raw surprise $s_t$ (log)")
ax.set_title("Unbounded learning turns one anomaly into a lasting disturbance")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md(r"""
## Effect of the momentum factor
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(10, 3.5))
for beta, color in [
    (0.0, "tab:orange"),
    (0.5, "tab:green"),
    (0.9, "tab:purple"),
    (0.97, "tab:brown"),
]:
    _, curve = surprise_trace(momentum=beta)
    ax.plot(curve.numpy(), color=color, lw=1.5, label=rf"$\beta = {beta}$")
ax.set_yscale("log")
ax.set_xlabel("timestep $t$")
ax.set_ylabel(r"smoothed surprise $\bar s_t$ (log)")
ax.set_title("Larger momentum: smoother surprise, longer memory of a spike")
ax.legend(ncol=4)
fig.tight_layout()
plt.show()
"""),
    md(r"""
## Takeaways

* Surprise = how badly a small predictor reproduces the input. It is large for the unexpected and
  shrinks as the predictor learns.
* Measure first, learn second: the surprise of $x_t$ is taken *before* the predictor sees $x_t$.
* Momentum $\beta$ turns a one-step spike into a decaying episode of attention.
* Bound the learning step: an unbounded predictor step on an outlier wrecks the predictor, and
  the surprise that follows measures that damage instead of novelty. (The full layer goes one
  step further and scales the predictor's step by $1 - g_t$, so it hardly learns from an
  anomaly at all; notebook 03.)
* The raw surprise is itself **unbounded** (above it ranges from about $10^{-5}$ to about 40). Using it
  directly as a learning rate is what made the original demo diverge; notebook 03 shows the
  bounded write gate that replaces it.

**From the demo to the papers.** In Titans (arXiv 2501.00663) the surprise is not a separate
predictor's error but the *gradient* of the memory's own loss, and momentum accumulates it:
$S_t = \eta_t S_{t-1} - \theta_t \nabla_M \ell(M_{t-1}; x_t)$. The core of this library
(`NeuralMemory`) implements that rule; the scalar surprise here is its one-number summary.
"""),
]


# --------------------------------------------------------------------------------------------
# 02: the memory module
# --------------------------------------------------------------------------------------------

NB02 = [
    md(r"""
# 02 · The memory module: weights as memory

In Titans the long-term memory is not a buffer of stored vectors: it is a small neural network
$M_\theta$, and **its weights $\theta$ are the memory**. The demo's `MemoryModule` is an MLP
`Linear → ReLU → Linear → ReLU → Linear` with three operations:

| operation | what it does | equation |
|---|---|---|
| `read(x)` | a forward pass; changes nothing | $y = M_\theta(x)$ |
| `write(x, s)` | one gradient step on the reconstruction loss, scaled by a surprise $s \ge 0$ | $\theta \leftarrow \theta - \eta\, s\, \nabla_\theta \ell(\theta; x)$ |
| `apply_forgetting()` | shrinks every weight | $\theta \leftarrow (1 - \alpha)\,\theta$ |

with the loss $\ell(\theta; x) = \frac{1}{d}\lVert M_\theta(x) - x\rVert_2^2$, the base step size
$\eta$ = `write_lr` and the forget rate $\alpha$ = `forget_rate`. Writing $x$ makes the network
reproduce $x$ a little better; the effective step size is $\eta\,s$.
"""),
    code(r"""
%matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from titans_memory import MemoryModule

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 100


def weight_norm(snapshot):
    # L2 norm of all the memory's parameters together.
    return math.sqrt(sum(float(w.square().sum()) for w in snapshot))


def total_abs_change(before, after):
    # Sum over every weight and bias of |after - before|.
    return sum(float((a - b).abs().sum()) for a, b in zip(after, before, strict=True))
"""),
    md(r"""
## The memory is a handful of numbers

A memory for 4-dimensional vectors with hidden width 16. Everything it will ever "know" lives in
these tensors; `get_weight_snapshot()` returns copies of them.
"""),
    code(r"""
mem = MemoryModule(input_dim=4, memory_dim=16)
print(mem.memory_net)
for name, p in mem.memory_net.named_parameters():
    print(f"{name:10s} {tuple(p.shape)}")
print("total numbers in the memory:", sum(p.numel() for p in mem.parameters()))

# Copying the weights copies the memory: a fresh module loaded with them recalls the same thing.
clone = MemoryModule(input_dim=4, memory_dim=16)
clone.load_state_dict(mem.state_dict())
probe = torch.randn(4)
assert torch.equal(clone.read(probe), mem.read(probe))
"""),
    md(r"""
## Surprise gates the write

A write with surprise $s = 0$ has step size $\eta \cdot 0 = 0$: the memory must come out exactly
as it went in. A write with $s = 1$ takes a real step, so reading the same key afterwards gives a
different (closer to $x$) answer.
"""),
    code(r"""
torch.manual_seed(42)
mem = MemoryModule(input_dim=4, memory_dim=16, write_lr=0.01)
x = torch.randn(4)

before = mem.read(x)
weights_before = mem.get_weight_snapshot()
mem.write(x, surprise_score=torch.tensor(0.0))
after_zero = mem.read(x)
print("read before        :", before.numpy().round(4))
print("after write, s = 0 :", after_zero.numpy().round(4))
assert torch.equal(before, after_zero), "a zero-surprise write must not change the read"
assert all(
    torch.equal(a, b) for a, b in zip(weights_before, mem.get_weight_snapshot(), strict=True)
)

mem.write(x, surprise_score=torch.tensor(1.0))
after_one = mem.read(x)
print("after write, s = 1 :", after_one.numpy().round(4))
assert not torch.allclose(before, after_one), "a surprise-1 write must change the read"

err_before = (before - x).square().mean().item()
err_after = (after_one - x).square().mean().item()
print(f"reconstruction error l(x): {err_before:.4f} -> {err_after:.4f}")
assert err_after < err_before
"""),
    md(r"""
## How hard does each write push?

Eight writes of the same value $x = 3.14$ into a 1-d memory (hidden width 8, $\eta = 0.05$, no
forgetting), with surprise levels `[0, 0.1, 0.5, 1, 0, 0, 2, 0]`. For each write we record the
total change $\sum_i \lvert\Delta\theta_i\rvert$ and what the memory reads back for $x$.
"""),
    code(r"""
torch.manual_seed(42)
levels = [0.0, 0.1, 0.5, 1.0, 0.0, 0.0, 2.0, 0.0]
mem = MemoryModule(input_dim=1, memory_dim=8, write_lr=0.05, forget_rate=0.0)
x = torch.tensor([3.14])

changes, reads = [], []
for s in levels:
    before = mem.get_weight_snapshot()
    mem.write(x, surprise_score=torch.tensor(s))
    changes.append(total_abs_change(before, mem.get_weight_snapshot()))
    reads.append(mem.read(x).item())

for i, (s, c, r) in enumerate(zip(levels, changes, reads, strict=True)):
    print(f"write {i}: surprise {s:3.1f}   sum|dW| = {c:8.4f}   read M(x) = {r:7.4f}")
assert all(c == 0.0 for s, c in zip(levels, changes, strict=True) if s == 0.0)
assert all(c > 0.0 for s, c in zip(levels, changes, strict=True) if s > 0.0)
"""),
    code(r"""
idx = np.arange(len(levels))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].bar(idx, levels, color="tab:orange")
axes[0].set_title("Surprise of each write")
axes[0].set_ylabel("surprise $s$")

axes[1].bar(idx, changes, color="tab:blue")
axes[1].set_title(r"Total weight change $\sum|\Delta\theta|$")
axes[1].set_ylabel(r"total $|\Delta\theta|$")

axes[2].plot(idx, reads, "o-", color="tab:green", label="read $M(x)$ after the write")
axes[2].axhline(3.14, color="k", ls="--", lw=1, label="target $x = 3.14$")
axes[2].set_title("What the memory recalls")
axes[2].set_ylabel("$M(x)$")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("write number")
    ax.set_xticks(idx)
fig.tight_layout()
plt.show()
"""),
    md(r"""
What the bars say:

* **$s = 0$ writes are exact no-ops** (zero change), whatever happened before.
* The change grows with $s$, but not in proportion: the gradient itself depends on how wrong the
  memory currently is, so the same $s$ pushes harder when the error is large.
* **A large surprise overshoots.** At $s = 1$ the read jumps *past* the target 3.14, and at
  $s = 2$ it is thrown far to the other side. Gradient descent is only stable while the step is
  small relative to the curvature of the loss, and that curvature grows roughly like $\lVert x\rVert^2$.
  An unbounded surprise used as a step-size multiplier therefore breaks the memory exactly when
  the input is unusual. This is the seed of the divergence dissected in notebook 03.

## Forgetting

Forgetting multiplies every parameter by $(1 - \alpha)$ at each step. With no new writes, after
$t$ steps

$$
\theta_t = (1-\alpha)^t\,\theta_0, \qquad \lVert\theta_t\rVert = (1-\alpha)^t\,\lVert\theta_0\rVert,
\qquad t_{1/2} = \frac{\ln 2}{-\ln(1-\alpha)} \approx \frac{0.69}{\alpha}.
$$

Below: one write of $x = 5.0$ (surprise 1), then 100 forgetting steps, for four forget rates.
"""),
    code(r"""
rates = [0.0, 0.005, 0.02, 0.05]
steps = np.arange(101)
fig, ax = plt.subplots(figsize=(9, 4))
for rate in rates:
    torch.manual_seed(42)
    mem = MemoryModule(input_dim=1, memory_dim=8, write_lr=0.05, forget_rate=rate)
    mem.write(torch.tensor([5.0]), surprise_score=torch.tensor(1.0))
    norms = []
    for _ in steps:
        norms.append(weight_norm(mem.get_weight_snapshot()))
        mem.apply_forgetting()
    norms = np.array(norms)
    theory = norms[0] * (1.0 - rate) ** steps
    assert np.allclose(norms, theory, rtol=1e-4), "forgetting is exactly geometric"
    half_life = f"{math.log(2) / -math.log(1 - rate):.0f} steps" if rate > 0 else "none"
    ax.plot(steps, norms, lw=2, label=rf"$\alpha$ = {rate}  (half-life: {half_life})")
    ax.plot(steps, theory, ls=":", color="k", lw=1)
ax.set_xlabel("forgetting steps after the write")
ax.set_ylabel(r"weight norm $\|\theta_t\|$")
ax.set_title(r"Forgetting shrinks the memory geometrically (dotted: $(1-\alpha)^t\|\theta_0\|$)")
ax.legend()
fig.tight_layout()
plt.show()
"""),
    md(r"""
## Takeaways

* The memory *is* the MLP's weights: reading is a forward pass, writing is one gradient step,
  copying the weights copies the memory.
* The surprise scales the write: $s = 0$ is an exact no-op, a larger $s$ writes harder, and an
  unbounded $s$ overshoots.
* Forgetting is weight decay: $\lVert\theta\rVert$ falls as $(1-\alpha)^t$; only what keeps being
  written survives.

**From the demo to the papers.** Titans writes with $M_t = (1-\alpha_t)\,M_{t-1} + S_t$: the same
decay, applied together with the (momentum) surprise update, where $\alpha_t$ is a learned,
data-dependent gate. The core (`NeuralMemory`) implements exactly that, chunk-parallel.
"""),
]


# --------------------------------------------------------------------------------------------
# 03: the full layer
# --------------------------------------------------------------------------------------------

NB03 = [
    md(r"""
# 03 · The full Titans memory layer

`TitansMemoryLayer` puts the predictor (notebook 01) and the memory (notebook 02) in one loop.
For every token $x_t$ it performs five steps, in this order:

1. **Surprise.** $s_t = \frac{1}{d}\lVert P_\phi(x_t) - x_t\rVert^2$, and its moving average
   $\bar s_t = \beta\,\bar s_{t-1} + (1-\beta)\,s_t$ (reported, for plots).
2. **Read.** $y_t = M_\theta(x_t)$, with the memory as it is *before* this token.
3. **Gated write.** $\theta \leftarrow \theta - \eta\, g_t\, \operatorname{clip}_{G}\bigl(\nabla_\theta \ell(\theta; x_t)\bigr)$,
   with a write gate $g_t \in [0, 1]$ computed from $s_t$ (section 3).
4. **Predictor update.** $\phi \leftarrow \phi - \eta_P\,(1 - g_t)\, \operatorname{clip}_{G_P}\bigl(\nabla_\phi s_t\bigr)$:
   the predictor learns what is *usual*, and hardly anything from an anomaly.
5. **Forgetting.** $\theta \leftarrow (1-\alpha)\,\theta$.

Here $\ell(\theta; x) = \frac1d\lVert M_\theta(x) - x\rVert^2$, $\eta$ = `write_lr`,
$\eta_P$ = `surprise_lr`, $\alpha$ = `forget_rate`, $\beta$ = `momentum`, and
$\operatorname{clip}_G(v) = v \cdot \min(1, G / \lVert v\rVert)$ rescales a gradient (all of a
network's parameters together) to norm at most $G$.

The original demo ran the same loop with $g_t = s_t$ (the raw surprise), a plain predictor step
and no clipping. That version **diverges to NaN** on its own showcase sequence; section 2
dissects why, section 3 shows the fix.
"""),
    code(r"""
%matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from titans_memory import (
    MemoryModule,
    SurpriseMetric,
    TitansMemoryLayer,
    generate_repeating_with_anomalies,
)

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 100


def weight_norm(snapshot):
    # L2 norm of all of the memory's parameters together.
    return math.sqrt(sum(float(w.square().sum()) for w in snapshot))


def as_array(trace):
    # A list of 0-d or (d,) tensors from process_sequence -> numpy array of shape (T,).
    return torch.stack(list(trace)).reshape(len(trace), -1).squeeze(-1).numpy()


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
"""),
    md(r"""
## 1 · Running the layer

`process_sequence(seq)` takes a `(T, input_dim)` tensor and returns a dict of per-step lists:
`outputs` ($y_t$), `surprise_scores` ($s_t$), `surprise_momentum` ($\bar s_t$), `write_gates`
($g_t$), `surprise_scale` ($c_{t-1}$, section 3) and `memory_snapshots` (the weights after step
$t$). On long sequences pass `snapshot_every=k` to keep only every $k$-th snapshot, and
`as_tensors=True` to get each trace as one stacked tensor instead of a list.

The settings are the original demo's for this sequence: `memory_dim=16, hidden_dim=16,
momentum=0.9, forget_rate=0.01`, and the defaults `write_lr=0.01, surprise_lr=0.01`.
"""),
    code(r"""
torch.manual_seed(42)
layer = TitansMemoryLayer(input_dim=1, memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)
theta_0 = layer.memory.get_weight_snapshot()
result = layer.process_sequence(seq.unsqueeze(-1))

y = as_array(result["outputs"])
surprise = as_array(result["surprise_scores"])
smoothed = as_array(result["surprise_momentum"])
gates = as_array(result["write_gates"])
c_prev = as_array(result["surprise_scale"])  # c_{t-1}: the scale the gate compared s_t with
snapshots = [theta_0] + result["memory_snapshots"]
norms = np.array([weight_norm(w) for w in snapshots])  # norms[0]: before step 0
# The write alone at step t: theta_t = (1 - alpha) (theta_{t-1} + w_t), so
# w_t = theta_t / (1 - alpha) - theta_{t-1}.
keep = 1.0 - layer.memory.forget_rate
write_size = np.array(
    [
        math.sqrt(
            sum(
                float((a / keep - b).square().sum())
                for a, b in zip(snapshots[i + 1], snapshots[i], strict=True)
            )
        )
        for i in range(T)
    ]
)

print("surprise at the anomalies:", surprise[anomalies].round(2))
print("gate at the anomalies    :", gates[anomalies].round(3))
print(f"median gate elsewhere    : {np.median(gates[ordinary]):.3f}")
print(
    f"largest write: {write_size.max():.4f}  (bound write_lr * memory_max_grad_norm = "
    f"{layer.memory.write_lr * layer.memory_max_grad_norm:g})"
)
assert np.isfinite(norms).all() and ((gates >= 0) & (gates <= 1)).all()
assert write_size.max() <= layer.memory.write_lr * layer.memory_max_grad_norm * (1 + 1e-4)
"""),
    code(r"""
fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)

ax = axes[0]
ax.plot(t, x, color="tab:blue", lw=1, label="input $x_t$")
ax.plot(t, y, color="tab:green", lw=1.5, label="memory read $y_t = M(x_t)$, before the write")
ax.scatter(anomalies, x[anomalies], color="tab:red", zorder=3, label="anomaly")
ax.set_ylabel("value")
ax.set_title("① Input, and what the memory returns for it")
ax.legend(loc="upper left", fontsize=8)

ax = axes[1]
ax.plot(t, surprise, color="tab:orange", lw=1.2, label="raw surprise $s_t$")
ax.plot(t, smoothed, color="tab:purple", lw=2, label=r"smoothed $\bar s_t$ ($\beta = 0.9$)")
ax.set_yscale("log")
ax.set_ylabel("surprise (log)")
ax.set_title("② Surprise")
ax.legend(loc="upper right", fontsize=8)

ax = axes[2]
ax.bar(t, write_size, color="tab:red", alpha=0.7, label=r"write size $\|w_t\|$")
ax.set_ylabel(r"$\|w_t\|$")
ax.set_xlabel("timestep $t$")
ax.set_title("③ Memory: size of each write (left axis) and the weight norm (right axis)")
ax2 = ax.twinx()
ax2.plot(np.arange(-1, T), norms, color="k", lw=1.5, label=r"weight norm $\|\theta_t\|$")
ax2.set_ylabel(r"$\|\theta_t\|$")
ax.legend(loc="upper left", fontsize=8)
ax2.legend(loc="upper right", fontsize=8)
for a in axes:
    for i in anomalies:
        a.axvline(i, color="tab:red", ls="--", alpha=0.25)
fig.tight_layout()
plt.show()
"""),
    md(r"""
Reading the three panels:

* **② Surprise** spikes by orders of magnitude at each anomaly and stays small otherwise; the
  smoothed curve carries each spike forward.
* **③ Memory.** Each write moves the weights by at most $\eta\,G$ =
  `write_lr * memory_max_grad_norm` (0.1 here), and comes close to it only where the gate is
  open: while the pattern is new, and at the anomalies. The weight norm drifts down: forgetting
  takes 1 % of the weights at every step, while most writes are small and do not point along
  $\theta$.
* **① Read.** The memory follows the pattern, below it: forgetting keeps pulling the weights
  towards 0. At an anomaly the read is far above the pattern but far below 50: the MLP
  *extrapolates* from the values it was trained on, and what the write of an earlier 50 added
  has partly faded.

## 2 · Why the original rule diverges

The original demo wrote with the **raw surprise as the step-size multiplier**, and took plain,
unbounded gradient steps for both networks:

$$
\theta \leftarrow \theta - \eta\, s_t\, \nabla_\theta \ell(\theta; x_t), \qquad
\phi \leftarrow \phi - \eta_P\, \nabla_\phi s_t .
$$

Below, that loop is written out with the same modules (`MemoryModule.write` still implements
$\eta\,s\,\nabla\ell$ when given the raw surprise, and `SurpriseMetric.update_predictor` is a
plain step by default), on the same sequence, with the same settings and seed.
"""),
    code(r"""
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
first_bad = int(np.argmax(~np.isfinite(norm_orig)))
print(f"memory weights are inf/NaN from t = {first_bad} on")
assert not np.isfinite(norm_orig[-1])
"""),
    md(r"""
What happens, step by step:

1. **$t = 12$, the anomaly.** $s_{12} \approx 39$, so the write's step is $0.01 \times 39 \approx 0.39$
   times the gradient, and the gradient of $\lVert M(x) - x\rVert^2$ at $x = 50$ is itself huge
   (it grows with $x$ and with the error). The weights jump by a factor of about 200. At the same
   time the predictor takes an unbounded step on the same outlier and is thrown far off.
2. **$t = 13$, an ordinary token (4).** The wrecked predictor now makes an enormous error:
   $s_{13} \approx 75{,}500$. The write's multiplier is $0.01 \times 75{,}500 \approx 755$, applied to
   the gradient of a memory that is already far off: the norm reaches $10^{17}$.
3. **$t = 14$.** The next step overflows to `inf`, and `inf - inf` gives `NaN`. The memory is
   gone for good.

(The original's figures summed the per-layer norms instead, which reads 7.6 → 1.5·10³ →
2.2·10¹⁷ → inf → NaN: the same blow-up.)

It is a **positive feedback loop**: large surprise → large step → large error → larger surprise.
Nothing bounds any link of the chain: $s_t$ is a squared error, with no upper bound, and gradient
descent is only stable while step size × curvature stays below about 2.

## 3 · The fix: a bounded write gate and bounded steps

The layer cuts the loop at every link.

**Relative write gate.** Surprise means something only *relative to what is usual*. With $c_{t-1}$
a running scale of recent surprise,

$$
g_t \;=\; \frac{s_t}{s_t + \tau\, c_{t-1}} \;\in\; [0, 1), \qquad \tau = \texttt{gate\_threshold} = 3 .
$$

A token as surprising as usual gets $g \approx 1/(1+\tau) = 0.25$; the gate is half open at
$s_t = \tau\,c_{t-1}$ and tends to 1 for an anomaly, however large. It never exceeds 1 and does not
depend on the units of the data.

**Robust running scale.** $c_t = \rho\, c_{t-1} + (1-\rho)\,\min(s_t,\; \kappa\, c_{t-1})$, with
$\rho$ = `scale_momentum` = 0.9 and $\kappa$ = `scale_clip` = 4: a new value is capped at $\kappa$
times the scale before it enters the average, so one anomaly raises the scale by at most a factor
$\rho + (1-\rho)\kappa = 1.3$ and does not make the tokens after it look unsurprising.

**The gate works both ways.** The memory writes in proportion to $g_t$; the predictor learns in
proportion to $1 - g_t$. An anomaly is stored in the memory but barely taught to the predictor,
so it neither wrecks the predictor nor stops being surprising next time.

**Bounded steps.** Both gradients are clipped: the memory's to $G$ = `memory_max_grad_norm`
(default 10), the predictor's to $G_P$ = `predictor_max_grad_norm` (default 5). Ordinary tokens
have smaller gradients and are not affected. One write moves $\theta$ by at most
$\delta = \eta\, G$, so with forgetting

$$
\lVert \theta_t \rVert \;\le\; \max\Bigl(\lVert\theta_0\rVert,\; \delta\,\tfrac{1-\alpha}{\alpha}\Bigr),
$$

and without forgetting the norm grows at most linearly, $\lVert\theta_t\rVert \le \lVert\theta_0\rVert + t\,\delta$.

The layer of section 1 ran on the same sequence, with the same settings and seed. Side by side:
"""),
    code(r"""
assert np.allclose(gates, surprise / (surprise + layer.gate_threshold * c_prev), atol=1e-6)
delta = layer.memory.write_lr * layer.memory_max_grad_norm
alpha = layer.memory.forget_rate
bound = max(norms[0], delta * (1 - alpha) / alpha)
assert norms.max() <= bound + 1e-6
finite = np.isfinite(norm_orig)
print(
    f"largest weight norm: original rule {norm_orig[finite].max():.3g} (then inf/NaN), "
    f"bounded layer {norms.max():.3g} (guaranteed <= {bound:.3g})"
)
print(
    f"surprise one step after the first anomaly: original {raw_orig[13]:.0f}, "
    f"bounded layer {surprise[13]:.3f}"
)
"""),
    code(r"""
fig, axes = plt.subplots(2, 2, figsize=(12, 6.5), sharex=True)
ax = axes[0, 0]
ax.plot(t, raw_orig, color="tab:red", lw=1.2, label="original rule")
ax.plot(t, surprise, color="tab:orange", lw=1.2, label="bounded layer")
ax.set_yscale("log")
ax.set_ylabel("raw surprise $s_t$ (log)")
ax.set_title("Surprise")
ax.legend(fontsize=8)

ax = axes[0, 1]
ax.plot(t[finite], norm_orig[finite], "o-", color="tab:red", ms=3, label="original rule")
ax.plot(t, norms[1:], color="tab:green", lw=1.5, label="bounded layer")
if (~finite).any():
    ax.axvspan(
        t[~finite][0] - 0.5, T - 0.5, color="tab:red", alpha=0.12, label="original: inf / NaN"
    )
ax.set_yscale("log")
ax.set_ylabel(r"weight norm $\|\theta_t\|$ (log)")
ax.set_title("Memory weights")
ax.legend(fontsize=8)

ax = axes[1, 0]
ax.plot(t, surprise, color="tab:orange", lw=1.2, label="raw surprise $s_t$")
ax.plot(
    t,
    layer.gate_threshold * c_prev,
    color="k",
    ls="--",
    lw=1,
    label=r"half-open level $\tau\, c_{t-1}$",
)
ax.set_yscale("log")
ax.set_xlabel("timestep $t$")
ax.set_ylabel("surprise (log)")
ax.set_title("Bounded layer: surprise against its running scale")
ax.legend(fontsize=8)

ax = axes[1, 1]
ax.bar(t, gates, color="tab:blue", alpha=0.8, label="write gate $g_t$")
ax.set_ylim(0, 1.05)
ax.set_xlabel("timestep $t$")
ax.set_ylabel("$g_t$")
ax.set_title("The write gate actually used, in [0, 1]")
ax.legend(fontsize=8)
for a in axes.flat:
    for i in anomalies:
        a.axvline(i, color="tab:red", ls="--", alpha=0.25)
fig.suptitle(
    "Original rule (gate = raw surprise) versus the bounded layer: same data, settings, seed"
)
fig.tight_layout()
plt.show()
"""),
    md(r"""
The gate is a saturating function of the ratio $r_t = s_t / c_{t-1}$ alone, $g = r / (r + \tau)$:
a raw surprise of 40 and one of 75,000 both give $g \approx 1$. The curve, with the layer's actual
$(r_t, g_t)$ pairs on it:
"""),
    code(r"""
ratio = surprise / c_prev
r_grid = np.logspace(-4, 5, 200)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(
    r_grid,
    r_grid / (r_grid + layer.gate_threshold),
    color="k",
    lw=1.5,
    label=r"$g = r / (r + \tau)$, $\tau = 3$",
)
ax.scatter(ratio[ordinary], gates[ordinary], s=14, color="tab:blue", label="ordinary tokens")
ax.scatter(ratio[anomalies], gates[anomalies], s=40, color="tab:red", zorder=3, label="anomalies")
ax.set_xscale("log")
ax.set_xlabel(r"relative surprise $r_t = s_t / c_{t-1}$ (log)")
ax.set_ylabel("write gate $g_t$")
ax.set_title("The gate saturates: no surprise can open it past 1")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
"""),
    md(r"""
What the gate does *not* do: it is relative, so even in a stream where nothing is unusual it
opens partway for the tokens that are hardest *for now*. It tells the memory *how much more than
usual* to write, not *whether* to write at all.

## 4 · Hyperparameters

Three knobs, each varied alone from the settings of section 1:

* **momentum $\beta$** only smooths the *reported* surprise $\bar s_t$. The gate uses the raw
  $s_t$, so the memory is exactly the same for every $\beta$ (checked below);
* **forget rate $\alpha$**: how fast unused contents fade;
* **write lr $\eta$**: how far one write can move the memory (at most $\eta\,G$).

The memory's quality is its read error $\lvert y_t - x_t\rvert$ on ordinary tokens, before each
write (lower is better), averaged over each period of 5 tokens.
"""),
    code(r"""
def run(**overrides):
    settings = dict(input_dim=1, memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)
    settings.update(overrides)
    torch.manual_seed(42)
    lay = TitansMemoryLayer(**settings)
    res = lay.process_sequence(seq.unsqueeze(-1))
    res["read_error"] = np.abs(as_array(res["outputs"]) - x)
    res["norm"] = np.array([weight_norm(w) for w in res["memory_snapshots"]])
    return res


def per_period_error(res, period=5):
    # Mean read error on the ordinary tokens of each period of the pattern.
    err = np.where(ordinary, res["read_error"], np.nan).reshape(-1, period)
    return np.nanmean(err, axis=1)


fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))

ax = axes[0]
runs = {beta: run(momentum=beta) for beta in [0.0, 0.5, 0.9, 0.97]}
for beta, res in runs.items():
    ax.plot(t, as_array(res["surprise_momentum"]), lw=1.5, label=rf"$\beta$ = {beta}")
    assert np.array_equal(res["norm"], runs[0.0]["norm"]), "momentum must not change the memory"
ax.set_yscale("log")
ax.set_xlabel("timestep $t$")
ax.set_ylabel(r"$\bar s_t$ (log)")
ax.set_title(r"momentum $\beta$: smoothed surprise")

ax = axes[1]
for a in [0.0, 0.003, 0.01, 0.05]:
    ax.plot(t, run(forget_rate=a)["norm"], lw=1.5, label=rf"$\alpha$ = {a}")
ax.set_xlabel("timestep $t$")
ax.set_ylabel(r"$\|\theta_t\|$")
ax.set_title(r"forget rate $\alpha$: weight norm")

ax = axes[2]
periods = np.arange(T // 5)
for lr in [0.003, 0.01, 0.03, 0.1]:
    ax.plot(
        periods, per_period_error(run(write_lr=lr)), "o-", ms=3, lw=1.5, label=rf"$\eta$ = {lr}"
    )
ax.set_yscale("log")
ax.set_xlabel("period (5 tokens)")
ax.set_ylabel(r"mean $|y_t - x_t|$ (log)")
ax.set_title(r"write lr $\eta$: read error, ordinary tokens")
for a in axes:
    a.legend(fontsize=8)
fig.tight_layout()
plt.show()
"""),
    md(r"""
Writing and forgetting pull in opposite directions, so they are best chosen together. The mean
read error over the last two periods, for a grid of write lr × forget rate. Look for the valley:
the faster the memory forgets, the harder it must write to keep up, while writes that are too
large overshoot (as in notebook 02) and the error rises again.
"""),
    code(r"""
lrs = [0.003, 0.01, 0.03, 0.1, 0.3]
alphas = [0.0, 0.003, 0.01, 0.03, 0.1]
tail = ordinary & (t >= T - 10)
grid = np.array(
    [[run(write_lr=lr, forget_rate=a)["read_error"][tail].mean() for lr in lrs] for a in alphas]
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
"""),
    md(r"""
## Takeaways

* The layer runs five steps per token: surprise, read, gated write, predictor update, forgetting.
* The raw surprise is unbounded. Used as a step-size multiplier it feeds a loop (surprise → step
  → error → surprise) that took the original demo from a normal state to NaN within two steps
  of the first anomaly.
* The fix bounds every link: a relative gate $g_t = s_t / (s_t + \tau c_{t-1}) \in [0, 1)$, a running
  scale that one outlier cannot inflate, a predictor that learns with $1 - g_t$, and clipped
  gradient steps. The memory's norm is then provably bounded, whatever the input.
* Momentum here only smooths the reported surprise. Write lr and forget rate set the balance
  between storing and fading.

**From the demo to the papers.** Titans replaces the scalar gate with data-dependent gates
$\theta_t$ (step size), $\eta_t$ (momentum) and $\alpha_t$ (forgetting) in
$S_t = \eta_t S_{t-1} - \theta_t \nabla\ell(M_{t-1}; x_t)$, $M_t = (1-\alpha_t) M_{t-1} + S_t$;
there, momentum acts on the update itself. It also normalises the keys, which plays the role the
clipping plays here: with raw keys the core's memory diverges too. See `NeuralMemory` in the core.
"""),
]


# --------------------------------------------------------------------------------------------
# 04: visualisation
# --------------------------------------------------------------------------------------------

NB04 = [
    md(r"""
# 04 · Visualising the memory on four kinds of stream

Notebooks 01–03 built the layer piece by piece. Here we only *look*: four streams with different
kinds of novelty, each through the same layer, shown as a full dashboard and then side by side.

| scenario | what is new | what a good memory does |
|---|---|---|
| **A. anomalies** | isolated spikes in a repeating pattern | write hard at each spike, little otherwise |
| **B. frequency shift** | a sine wave changes frequency | react at the switch, then settle to the new regime |
| **C. step change** | the pattern jumps to a new level and stays there | react at the jump, then treat the new level as usual |
| **D. noisy pattern** | spikes in a noisy sine | react to the spikes more than to the noise |

One of the four will not go as hoped, and that is instructive too.

The plotting functions come from `titans_memory.viz`: each returns a matplotlib `Figure` (and
never calls `plt.show`), so a cell that ends with a figure displays it.
"""),
    code(r"""
%matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from titans_memory import TitansMemoryLayer, generate_frequency_shift
from titans_memory.viz import (
    SCENARIOS,
    DemoScenario,
    ScenarioRun,
    plot_full_pipeline,
    plot_surprise_over_time,
    trace_array,
    weight_norms,
)

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 90

LAYER = dict(memory_dim=16, hidden_dim=16, momentum=0.9, forget_rate=0.01)


def run_stream(name, title, seq, events, seed=42, **overrides):
    # Run the layer on any 1-d stream and package it as a ScenarioRun for the viz functions.
    # `events` are the positions of the novelties (marked in red, like anomalies).
    torch.manual_seed(seed)
    layer = TitansMemoryLayer(input_dim=1, **{**LAYER, **overrides})
    initial = layer.memory.get_weight_snapshot()
    result = layer.process_sequence(seq.unsqueeze(-1))
    mask = torch.zeros(len(seq))
    mask[list(events)] = 1.0
    scenario = DemoScenario(
        name=name, title=title, pattern=(0.0,), repeats=1, anomaly_indices=(), anomaly_value=0.0
    )
    return ScenarioRun(scenario, seq, mask, result, layer, initial)
"""),
    md(r"""
## The four streams
"""),
    code(r"""
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
    "A. anomalies": ("anomalies", seq_a, events_a),
    "B. frequency shift": ("frequency_shift", seq_b, events_b),
    "C. step change": ("step_change", seq_c, events_c),
    "D. noisy pattern": ("noisy_pattern", seq_d, events_d),
}
runs = {
    title: run_stream(name, title, seq, events) for title, (name, seq, events) in streams.items()
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
"""),
    md(r"""
## Dashboards

`plot_full_pipeline` shows, for one run: the input, the raw and the smoothed surprise, the write
gate $g_t$, the memory's weight norm and, at the bottom, the size of each write on every
first-layer weight (forgetting factored out). Scenario A is the original demo's showcase.
"""),
    code(r"""
plot_full_pipeline(runs["A. anomalies"])
"""),
    md(r"""
**B. Frequency shift.** Nothing special happens at the switch, and that is the lesson. The
demo's predictor and memory map each *value* to itself: they see values, not the order in which
they come. Before and after the switch the sine takes values in the same range $[-1, 1]$, so for
them nothing is new; the surprise even drops, because the faster sine, sampled at integer $t$,
repeats a handful of values. Detecting a change of *rhythm* needs a memory whose keys depend on
the recent past: in the core, keys and values come from a short causal convolution over
neighbouring tokens.
"""),
    code(r"""
fig = plot_full_pipeline(runs["B. frequency shift"])
fig.axes[0].set_title("1. Input (red: the frequency switch)")
fig
"""),
    md(r"""
**C. Step change.** Unlike an isolated anomaly, the new level stays. The gate opens fully at the
jump and stays high for a few steps. The surprise remains higher than before (the predictor
learns new values slowly, and least while the gate is open), but the running scale $c_t$ follows
it up (geometrically: by at most a factor 1.3 per step), so within about twenty steps the gate
falls back towards its usual level: the new regime has become the usual one.
"""),
    code(r"""
fig = plot_full_pipeline(runs["C. step change"])
fig.axes[0].set_title("1. Input (red: the jump)")
fig
"""),
    md(r"""
**D. Noisy pattern.** Noise keeps the raw surprise jittering; the running scale absorbs that
level, and the spikes open the gate more than anything else in the stream because the gate is
*relative* to it. Later spikes open it less than the first: the predictor, which learns to map
each value to itself, drifts towards the identity and extrapolates a little better each time (a
limit of the demo's predictor, documented in `TitansMemoryLayer`). `plot_surprise_over_time`
shows the input, the surprise and the gate only:
"""),
    code(r"""
fig = plot_surprise_over_time(runs["D. noisy pattern"])
fig.axes[0].set_title("Input: a noisy sine with three spikes")
fig
"""),
    md(r"""
## Side by side

One column per scenario: the input, the raw surprise (log scale) with the gate's half-open level
$\tau\,c_{t-1}$, and the write gate. The red lines mark the events.
"""),
    code(r"""
fig, axes = plt.subplots(3, 4, figsize=(16, 8), sharex="col")
for col, (title, run) in enumerate(runs.items()):
    t = np.arange(len(run.seq))
    s = trace_array(run.result, "surprise_scores")
    c = trace_array(run.result, "surprise_scale")
    g = trace_array(run.result, "write_gates")
    axes[0, col].plot(t, run.seq.numpy(), color="tab:blue", lw=1)
    axes[0, col].set_title(title)
    axes[1, col].semilogy(t, s, color="tab:orange", lw=1, label="$s_t$")
    axes[1, col].semilogy(
        t, run.layer.gate_threshold * c, color="k", ls="--", lw=1, label=r"$\tau c_{t-1}$"
    )
    axes[2, col].fill_between(t, g, step="mid", color="tab:green", alpha=0.4)
    axes[2, col].set_ylim(0, 1.05)
    axes[2, col].set_xlabel("timestep $t$")
    for row in range(3):
        for e in run.anomaly_indices:
            axes[row, col].axvline(e, color="tab:red", ls="--", alpha=0.35)
axes[0, 0].set_ylabel("input $x_t$")
axes[1, 0].set_ylabel("surprise (log)")
axes[1, 0].legend(fontsize=8)
axes[2, 0].set_ylabel("write gate $g_t$")
fig.suptitle("Four streams through the same layer", fontsize=13)
fig.tight_layout()
plt.show()
"""),
    md(r"""
## How the gate threshold $\tau$ changes what gets written

The gate $g_t = s_t / (s_t + \tau\,c_{t-1})$ is half open when the surprise is $\tau$ times the
usual level. A small $\tau$ writes almost everything; a large one writes only what stands far out.
Below: the gate per scenario (columns) for three values of `gate_threshold` (rows), with the
mean gate on ordinary steps and on the events.
"""),
    code(r"""
taus = [1.0, 3.0, 10.0]
fig, axes = plt.subplots(len(taus), 4, figsize=(16, 7), sharex="col", sharey=True)
for row, tau in enumerate(taus):
    for col, (title, (name, seq, events)) in enumerate(streams.items()):
        run = run_stream(name, title, seq, events, gate_threshold=tau)
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
"""),
    md(r"""
## How long does a memory last? Forget rate × scenario

The weight norm $\lVert\theta_t\rVert$ per scenario for four forget rates. Without forgetting the
norm only moves with the writes. With forgetting it falls until writing and decay balance: where
the values are small (B, D) the writes are small too and the memory decays almost freely, while
the jump in C drives a burst of writes that lifts the norm again.
"""),
    code(r"""
rates = [0.0, 0.005, 0.02, 0.05]
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
for col, (title, (name, seq, events)) in enumerate(streams.items()):
    ax = axes[col]
    for rate in rates:
        run = run_stream(name, title, seq, events, forget_rate=rate)
        ax.plot(weight_norms(run.result["memory_snapshots"]), lw=1.5, label=rf"$\alpha$ = {rate:g}")
    for e in events:
        ax.axvline(e, color="tab:red", ls="--", alpha=0.35)
    ax.set_title(title)
    ax.set_xlabel("timestep $t$")
axes[0].set_ylabel(r"weight norm $\|\theta_t\|$")
axes[0].legend(fontsize=8)
fig.suptitle("Memory weight norm for four forget rates", fontsize=13)
fig.tight_layout()
plt.show()
"""),
    md(r"""
## Summary

* The same three mechanisms handle all four kinds of novelty: **surprise** says how unexpected
  an input is, the **bounded write gate** turns that into how hard to write (relative to the
  usual level, never more than 1), and **forgetting** lets unused contents fade.
* Isolated anomalies (A, D) open the gate briefly; a lasting change of level (C) opens it at
  the jump, then the running scale and the predictor adapt and it closes again.
* A change of *order* that keeps the same values (B) is invisible to the demo's value-to-value
  memory: what counts as new depends on what the memory is asked to predict.
* Every run stays finite: with the bounded gate and clipped steps, no input can blow up the
  memory.

Next: the same ideas as equations, in the core (`NeuralMemory`), where the gate, the momentum and
the forgetting are learned, data-dependent and computed for whole chunks at once.
"""),
]


if __name__ == "__main__":
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    build("01_surprise_metric", NB01)
    build("02_memory_module", NB02)
    build("03_full_titans", NB03)
    build("04_visualization", NB04)
