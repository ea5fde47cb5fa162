"""_wide: the overflow bound of the plain arithmetic, saturation, and the float64 step."""

from __future__ import annotations

import math

import pytest
import torch

from titans_memory.demo import TitansMemoryLayer, _mlp, _wide

F32 = torch.finfo(torch.float32).max


def random_mlp(widths: list[int], scale: float, gen: torch.Generator) -> list[torch.Tensor]:
    """``[W_1, b_1, ...]`` in float64, entries uniform in ``[-scale, scale]``."""
    params = []
    for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
        params.append((torch.rand(d_out, d_in, generator=gen, dtype=torch.float64) * 2 - 1) * scale)
        params.append((torch.rand(d_out, generator=gen, dtype=torch.float64) * 2 - 1) * scale)
    return params


def largest_intermediate(params, x, lr, max_grad_norm):
    """The largest magnitude among everything the plain path computes for one step on
    ``mean((net(x) - x) ** 2)``, computed exactly enough in float64; and the mean squared
    error."""
    n_layers = len(params) // 2
    seen = [p.abs().max() for p in params] + [x.abs().max()]
    h, acts = x, [x]
    for i in range(n_layers):
        pre = h @ params[2 * i].t() + params[2 * i + 1]  # (N, d_out)
        seen.append(pre.abs().max())
        h = pre.relu() if i < n_layers - 1 else pre
        acts.append(h)
    err = h - x
    sq = err.square()
    seen += [err.abs().max(), sq.sum()]
    delta = err * (2.0 / err.numel())
    grads = []
    for i in range(n_layers - 1, -1, -1):
        seen.append(delta.abs().max())
        grads += [delta.t() @ acts[i], delta.sum(0)]
        if i > 0:
            delta = (delta @ params[2 * i]) * (acts[i] > 0)
    total = sum(float(g.square().sum()) for g in grads)
    seen += [g.abs().max() for g in grads] + [torch.tensor(total, dtype=torch.float64)]
    step = lr * (
        math.sqrt(total) if max_grad_norm is None else min(math.sqrt(total), max_grad_norm)
    )
    seen.append(torch.tensor(step, dtype=torch.float64))
    seen += [(p.abs().max() + step) for p in params]
    return max(float(v) for v in seen), float(sq.mean())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("widths", [[1, 16, 1], [3, 8, 8, 3], [2, 32, 32, 2]])
@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("x_max", [1e-3, 1.0, 1e4, 1e12])
def test_plain_fits_bounds_every_intermediate_value(seed, widths, scale, x_max):
    # The bound must hold for the true values: asked with a limit just below the largest value
    # the step really computes, it must answer "does not fit".
    gen = torch.Generator().manual_seed(seed)
    params = random_mlp(widths, scale, gen)
    rows = 1 + seed
    x = (torch.rand(rows, widths[0], generator=gen, dtype=torch.float64) * 2 - 1) * x_max
    norms = [float(p.norm()) for p in params]
    for lr, clip in [(0.01, 10.0), (0.3, None)]:
        peak, mse = largest_intermediate(params, x, lr, clip)
        kwargs = {"rows": rows, "lr": lr, "max_grad_norm": clip}
        x_abs = float(x.abs().max())
        assert not _wide.plain_fits(norms, x_abs, widths[0], bound=peak * (1 - 1e-9), **kwargs)
        assert not _wide.plain_fits(
            norms, x_abs, widths[0], bound=math.inf, mse_bound=mse * (1 - 1e-9), **kwargs
        )


def test_plain_fits_rejects_non_finite_norms_and_grows_with_the_stage():
    norms = [1.0, 0.5, 1.0, 0.5]
    assert _wide.plain_fits(norms, 1.0, 1, bound=1e6)
    assert not _wide.plain_fits([math.inf, 0.5, 1.0, 0.5], 1.0, 1, bound=1e6)
    assert not _wide.plain_fits([math.nan, 0.5, 1.0, 0.5], 1.0, 1, bound=1e6)
    # y <= 2.75 * 100: the read fits a bound of 1e3, the error's square and the step do not.
    assert _wide.plain_fits(norms, 100.0, 1, bound=1e3, upto="read")
    assert not _wide.plain_fits(norms, 100.0, 1, bound=1e3, upto="error")
    assert not _wide.plain_fits(norms, 100.0, 1, bound=1e3, upto="step")
    # growth: weights that may move before the next check count as larger.
    assert not _wide.plain_fits(norms, 1.0, 1, bound=1e6, growth=1e3)


def test_the_layer_takes_the_plain_path_on_ordinary_values_only():
    torch.manual_seed(0)
    layer = TitansMemoryLayer(1, memory_dim=16, hidden_dim=16)
    nets = (
        (layer.surprise_metric._params(), {"lr": 0.01, "max_grad_norm": 5.0, "growth": 3.2}),
        (layer.memory._params(), {"lr": 0.01, "max_grad_norm": 10.0, "growth": 6.4}),
    )
    bound = _wide.limit(torch.float32)
    assert _wide.plain_steps(nets, torch.tensor([[1.0], [-99.0], [1e5]]), bound) is None
    block = torch.tensor([[1.0], [1e20], [2.0], [-F32]])
    assert _wide.plain_steps(nets, block, bound) == [True, False, True, False]


def test_at_the_defaults_tokens_up_to_a_million_take_the_plain_path():
    # README: at the default settings, the wide path starts between 1e6 and 1e7.
    import titans_memory.demo.layer as layer_module

    torch.manual_seed(0)
    layer = TitansMemoryLayer(1)
    block = layer_module._BLOCK
    nets = (
        (
            layer.surprise_metric._params(),
            {"lr": 0.01, "max_grad_norm": 5.0, "growth": block * 0.05},
        ),
        (layer.memory._params(), {"lr": 0.01, "max_grad_norm": 10.0, "growth": block * 0.1}),
    )
    bound = _wide.limit(torch.float32)
    assert _wide.plain_steps(nets, torch.tensor([[1e6], [-1e6]]), bound) is None
    assert _wide.plain_steps(nets, torch.tensor([[1e7], [-1e7]]), bound) == [False, False]


def test_saturate():
    t = torch.tensor([1.5, -2.0, math.inf, -math.inf, 1e300, -1e300], dtype=torch.float64)
    got = _wide.saturate(t, torch.float32)
    assert got.dtype == torch.float32
    assert got.tolist() == [1.5, -2.0, F32, -F32, F32, -F32]


def params_and_grads(scale: float, gen: torch.Generator):
    params = random_mlp([2, 6, 6, 2], 1.0, gen)
    grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale for p in params]
    return params, grads


@pytest.mark.parametrize("clip", [None, 0.5, 1e6])
@pytest.mark.parametrize("gain", [1.0, 0.3])
def test_step_is_the_sgd_step_in_float64(clip, gain):
    gen = torch.Generator().manual_seed(1)
    params, grads = params_and_grads(2.0, gen)
    want = [p.clone() for p in params]
    _mlp.sgd_step_(
        want, [g.clone() for g in grads], 0.1, torch.tensor(gain, dtype=torch.float64), clip
    )
    got = [p.clone() for p in params]
    _wide.step_(got, [p.clone() for p in params], grads, 0.1, gain, clip)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


def test_clipped_step_has_its_exact_length_where_the_squared_norm_overflows():
    gen = torch.Generator().manual_seed(2)
    params64, grads = params_and_grads(1e200, gen)
    assert torch.isinf(torch.stack([g.square().sum() for g in grads]).sum())  # naive: Inf
    params = [p.float() for p in params64]
    before = [p.clone() for p in params]
    _wide.step_(params, params64, grads, 0.01, 0.5, 10.0)
    moved = math.sqrt(
        sum(
            float((a.double() - b.double()).square().sum())
            for a, b in zip(params, before, strict=True)
        )
    )
    assert moved == pytest.approx(0.01 * 0.5 * 10.0, rel=1e-5)


def test_step_without_gradient_or_beyond_the_range():
    gen = torch.Generator().manual_seed(3)
    params64, grads = params_and_grads(1.0, gen)
    params = [p.float() for p in params64]
    before = [p.clone() for p in params]
    _wide.step_(params, params64, [torch.zeros_like(g) for g in grads], 0.1, 1.0, 5.0)
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True))
    # An unclipped step far beyond float32: the weights saturate, zero gradients move nothing.
    grads[0][0, 0] = 0.0
    _wide.step_(params, params64, [g * 1e200 for g in grads], 1e200, 1.0, None)
    assert all(torch.isfinite(p).all() for p in params)
    assert params[0][0, 0] == before[0][0, 0]
    assert (params[0].abs() == F32).sum() == params[0].numel() - 1


def test_fits_for_reads_the_current_weights():
    params = [torch.ones(4, 2), torch.zeros(4), torch.ones(2, 4), torch.zeros(2)]
    assert _wide.fits_for(params, torch.ones(3, 2))
    assert not _wide.fits_for(params, torch.full((3, 2), 1e19))
    params[2][0, 0] = 1e30  # its square overflows the norm: Inf, rejected
    assert not _wide.fits_for(params, torch.ones(3, 2), upto="read")
