"""Stable by construction: the stability envelope at a CI size, and the two mechanisms behind it
(input_norm, max_step_norm), each tested on what it guarantees."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import PRESETS, MemoryConfig, NeuralMemory, preset
from titans_memory.core.stability import force_gates, memory_norms, stability_envelope

CONFIGS = {"default": MemoryConfig(dim=16, heads=2)} | {name: preset(name, dim=16, heads=2) for name in PRESETS}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_envelope_is_finite_and_under_the_bound(name):
    """Every scale 1e-3..1e6, bursts of 1/4/64 tokens at 10x..1e6x, gates at init and forced to
    theta = max_lr, eta = 0.999: finite, and ||M_t|| under the documented bound b^M_t."""
    rows = stability_envelope(name, CONFIGS[name], tokens=2048, piece=512)
    assert len(rows) == 2 * 6 * 10
    not_finite = [r for r in rows if not r.finite]
    assert not not_finite, not_finite[:3]
    over = [r for r in rows if not r.max_ratio <= 1.0 + 1e-9]
    assert not over, over[:3]
    assert all(r.max_weight_norm > 0 for r in rows)


def test_without_the_bounds_the_same_rule_diverges():
    """The envelope can fail: the default rule with both mechanisms off goes NaN under forced
    gates (theta = max_lr, eta = 0.999), which the bounded rule survives."""
    results = {}
    for on in (True, False):
        cfg = MemoryConfig(dim=16, heads=2) if on else MemoryConfig(dim=16, heads=2, input_norm=False, max_step_norm=None)
        torch.manual_seed(0)
        mem = NeuralMemory(cfg)
        force_gates(mem, lr=cfg.max_lr, momentum=0.999)
        with torch.no_grad():
            y, state = mem(torch.randn(1, 2048, 16, generator=torch.Generator().manual_seed(1)))
        results[on] = bool(torch.isfinite(y).all()) and bool(torch.isfinite(memory_norms(state)).all())
    assert results == {True: True, False: False}


@pytest.mark.parametrize("scale", [1e-2, 1e6])
def test_input_norm_makes_the_layer_scale_invariant(scale):
    """f(c x) = f(x), up to the norm's eps (1e-12 on the mean square: relative 5e-9 at c = 1e-2, amplified a little by the stream)."""
    torch.manual_seed(0)
    mem = NeuralMemory(MemoryConfig(dim=16, heads=2, chunk_size=8)).double()
    x = torch.randn(2, 40, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        y, s = mem(x)
        y_scaled, s_scaled = mem(scale * x)
    torch.testing.assert_close(y_scaled, y, rtol=1e-6, atol=1e-8)
    for a, b in zip(s.weights, s_scaled.weights, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)
    # and per token: one token 1e6 times larger is read as the token itself
    burst = x.clone()
    burst[:, 17] *= 1e6
    with torch.no_grad():
        y_burst, _ = mem(burst)
    torch.testing.assert_close(y_burst, y, rtol=1e-10, atol=1e-12)


def test_every_step_is_bounded_by_max_step_norm():
    """Without momentum S_t = -theta_t u_t: after each token ||S_t||_F <= theta_t tau, however
    large the values (input_norm off, so the outliers reach the memory)."""
    tau = 0.5
    cfg = MemoryConfig(dim=16, heads=2, momentum=False, input_norm=False, max_step_norm=tau, chunk_size=4,
                       lr_gate=False, lr_init=0.05)  # a constant theta: no gate saturates on the burst
    torch.manual_seed(0)
    mem = NeuralMemory(cfg).double()
    x = torch.randn(1, 24, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[:, 5:9] *= 1e4  # a burst
    state, steps = None, []
    with torch.no_grad():
        theta = mem.gates(x).lr  # (1, heads, T)
        for t in range(x.shape[1]):
            state = mem.store(x[:, t : t + 1], state)
            step = torch.stack([s.flatten(2).norm(dim=-1) for s in state.momentum]).norm(dim=0)  # (1, heads)
            steps.append(step / theta[..., t])
    ratio = torch.stack(steps)  # ||u_t|| after the bound
    assert (ratio <= tau * (1 + 1e-9)).all()  # rounding of theta * u / theta
    assert (ratio > 0.99 * tau).any()  # the burst hit the bound


def test_the_envelope_goes_on_through_a_nan_stream():
    """A stream that turns NaN is reported as not finite, and the next pieces still run."""
    cfg = MemoryConfig(dim=16, heads=2, input_norm=False, max_step_norm=None)
    rows = stability_envelope("unbounded", cfg, tokens=96, piece=32, scales=(1e3,), bursts=((4, 1e6),), regimes=("forced",))
    assert len(rows) == 2 and rows[1].burst == (4, 1e6) and not rows[1].finite  # NaN, and no error raised
    assert all(r.bound == float("inf") for r in rows)
