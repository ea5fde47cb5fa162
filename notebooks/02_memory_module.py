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
# # 02 · The memory module: weights as memory
#
# In Titans the long-term memory is not a buffer of stored vectors: it is a small neural network
# $M_\theta$, and **its weights $\theta$ are the memory**. The demo's `MemoryModule` is an MLP
# `Linear → ReLU → Linear → ReLU → Linear` with three operations:
#
# | operation | what it does | equation |
# |---|---|---|
# | `read(x)` | a forward pass; changes nothing | $y = M_\theta(x)$ |
# | `write(x, s)` | one gradient step on the reconstruction loss, scaled by a surprise $s \ge 0$ | $\theta \leftarrow \theta - \eta\, s\, \nabla_\theta \ell(\theta; x)$ |
# | `apply_forgetting()` | shrinks every weight | $\theta \leftarrow (1 - \alpha)\,\theta$ |
#
# with the loss $\ell(\theta; x) = \frac{1}{d}\lVert M_\theta(x) - x\rVert_2^2$, the base step size
# $\eta$ = `write_lr` and the forget rate $\alpha$ = `forget_rate`. Writing $x$ makes the network
# reproduce $x$ a little better; the effective step size is $\eta\,s$.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from titans_memory import MemoryModule
from titans_memory.viz import weight_norm, write_updates

torch.manual_seed(42)
plt.rcParams["figure.dpi"] = 100

# %% [markdown]
# ## The memory is a handful of numbers
#
# A memory for 4-dimensional vectors with hidden width 16. Everything it will ever "know" lives in
# these tensors; `get_weight_snapshot()` returns copies of them.

# %%
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

# %% [markdown]
# ## Surprise gates the write
#
# A write with surprise $s = 0$ has step size $\eta \cdot 0 = 0$: the memory must come out exactly
# as it went in. A write with $s = 1$ takes a real step, so reading the same key afterwards gives a
# different (closer to $x$) answer.

# %%
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

# %% [markdown]
# ## How hard does each write push?
#
# Eight writes of the same value $x = 3.14$ into a 1-d memory (hidden width 8, $\eta = 0.05$, no
# forgetting), with surprise levels `[0, 0.1, 0.5, 1, 0, 0, 2, 0]`. For each write we record the
# total change $\sum_i \lvert\Delta\theta_i\rvert$ and what the memory reads back for $x$.

# %%
torch.manual_seed(42)
levels = [0.0, 0.1, 0.5, 1.0, 0.0, 0.0, 2.0, 0.0]
mem = MemoryModule(input_dim=1, memory_dim=8, write_lr=0.05, forget_rate=0.0)
x = torch.tensor([3.14])

initial = mem.get_weight_snapshot()
snapshots, reads = [], []
for s in levels:
    mem.write(x, surprise_score=torch.tensor(s))
    snapshots.append(mem.get_weight_snapshot())
    reads.append(mem.read(x).item())
# write_updates: |change| of every weight of one tensor (0: first layer), per write (no forgetting
# here, so forget_rate=0); summed over all of the memory's tensors
changes = sum(write_updates(snapshots, initial, 0.0, i).sum(axis=0) for i in range(len(initial)))

for i, (s, c, r) in enumerate(zip(levels, changes, reads, strict=True)):
    print(f"write {i}: surprise {s:3.1f}   sum|dW| = {c:8.4f}   read M(x) = {r:7.4f}")
assert all(c == 0.0 for s, c in zip(levels, changes, strict=True) if s == 0.0)
assert all(c > 0.0 for s, c in zip(levels, changes, strict=True) if s > 0.0)

# %%
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

# %% [markdown]
# What the bars say:
#
# * **$s = 0$ writes are exact no-ops** (zero change), whatever happened before.
# * The change grows with $s$, but not in proportion: the gradient itself depends on how wrong the
#   memory currently is, so the same $s$ pushes harder when the error is large.
# * **A large surprise overshoots.** At $s = 1$ the read jumps *past* the target 3.14, and at
#   $s = 2$ it is thrown far to the other side. Gradient descent is only stable while the step is
#   small relative to the curvature of the loss, and that curvature grows roughly like $\lVert x\rVert^2$.
#   An unbounded surprise used as a step-size multiplier therefore breaks the memory exactly when
#   the input is unusual. This is the seed of the divergence dissected in notebook 03.
#
# ## Forgetting
#
# Forgetting multiplies every parameter by $(1 - \alpha)$ at each step. With no new writes, after
# $t$ steps
#
# $$
# \theta_t = (1-\alpha)^t\,\theta_0, \qquad \lVert\theta_t\rVert = (1-\alpha)^t\,\lVert\theta_0\rVert,
# \qquad t_{1/2} = \frac{\ln 2}{-\ln(1-\alpha)} \approx \frac{0.69}{\alpha}.
# $$
#
# Below: one write of $x = 5.0$ (surprise 1), then 100 forgetting steps, for four forget rates.

# %%
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

# %% [markdown]
# ## Takeaways
#
# * The memory *is* the MLP's weights: reading is a forward pass, writing is one gradient step,
#   copying the weights copies the memory.
# * The surprise scales the write: $s = 0$ is an exact no-op, a larger $s$ writes harder, and an
#   unbounded $s$ overshoots.
# * Forgetting is weight decay: $\lVert\theta\rVert$ falls as $(1-\alpha)^t$; only what keeps being
#   written survives.
#
# **From the demo to the papers.** Titans writes with $M_t = (1-\alpha_t)\,M_{t-1} + S_t$: the same
# decay, applied together with the (momentum) surprise update, where $\alpha_t$ is a learned,
# data-dependent gate. The core (`NeuralMemory`) implements exactly that, chunk-parallel.
