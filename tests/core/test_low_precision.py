"""bfloat16 and float16: a module in the low dtype and float32 under ``torch.autocast`` run forward
and backward, and agree with the same layer in float64 to per-tensor relative tolerances
(outputs, every state tensor, the gradient of every parameter and of the input). The gate products
and their cumulative sums are accumulated in float32: shown directly on the coefficients."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.ops.chunked import chunk_coefficients

# relative tolerance per tensor, ||low - ref|| / ||ref||: 3-4x the largest error measured on these
# seeds (bf16: 0.017, the gradient of the gate weights; fp16: 0.0021, the momentum; bf16 keeps 8
# significant bits, fp16 11). The outputs alone are within 0.008 (bf16) and 0.001 (fp16).
TOL = {torch.bfloat16: 0.05, torch.float16: 0.008}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def _run(mem: NeuralMemory, x: torch.Tensor, probe: torch.Generator, autocast: torch.dtype | None):
    """Outputs, state tensors and gradients (params and x) of a random functional of them."""
    x = x.detach().requires_grad_()
    if autocast is None:
        y, state = mem(x)
    else:
        with torch.autocast("cpu", dtype=autocast):
            y, state = mem(x)
    tensors = {"y": y, **{f"state.{k}": t for k, t in state.tensors().items()}}
    total = sum((torch.randn(t.shape, generator=probe, dtype=torch.float64) * t.double()).sum() for t in tensors.values())
    params = dict(mem.named_parameters())
    grads = torch.autograd.grad(total, [x, *params.values()], allow_unused=True, materialize_grads=True)
    return tensors, dict(zip(["x", *params], grads, strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["module", "autocast"])
def test_low_precision_agrees_with_float64(dtype, mode):
    torch.manual_seed(0)
    cfg = MemoryConfig(dim=32, heads=2, chunk_size=16)  # the default rule: depth 2, momentum, forget, bounds
    ref = NeuralMemory(cfg).double()
    low = NeuralMemory(cfg)
    low.load_state_dict(ref.state_dict())
    if mode == "module":
        low = low.to(dtype)
    x = torch.randn(2, 75, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want, want_grads = _run(ref, x, torch.Generator().manual_seed(2), None)
    got, got_grads = _run(low, x.to(dtype if mode == "module" else torch.float32),
                          torch.Generator().manual_seed(2), dtype if mode == "autocast" else None)
    if mode == "module":  # everything in the low dtype, the state included
        assert all(t.dtype == dtype for t in got.values())
    else:  # autocast: the state keeps the module's dtype between calls
        assert all(t.dtype == torch.float32 for name, t in got.items() if name.startswith("state."))
    errors = {name: _relative(got[name], want[name]) for name in want}
    errors.update({f"d/d{name}": _relative(got_grads[name], want_grads[name]) for name in want_grads})
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL[dtype], f"{worst}: relative error {errors[worst]:.3g} (all: {errors})"
    assert errors["y"] < TOL[dtype] / 4
    assert errors["y"] > 0 and errors["d/dx"] > 0  # the low dtype was really used


def test_gate_products_accumulate_in_float32():
    """64 log-gates near log(0.995) and log(0.9): the coefficients from bfloat16 gates agree with
    float64 to bfloat16's rounding of the result. Cumulative sums kept in bfloat16 would not: the
    momentum's reaches about -6.7, where bfloat16's spacing is 0.03, so the ratios
    ``P[t, s] = exp(cum_t - cum_s)`` would be off by percents."""
    g = torch.Generator().manual_seed(3)
    lr = (torch.rand(4, 64, generator=g, dtype=torch.float64) * 0.02).to(torch.bfloat16)
    log_ret = (-0.005 - 0.002 * torch.rand(4, 64, generator=g, dtype=torch.float64)).to(torch.bfloat16)
    log_mom = (-0.105 + 0.01 * torch.rand(4, 64, generator=g, dtype=torch.float64)).to(torch.bfloat16)
    exact = chunk_coefficients(lr.double(), log_ret.double(), log_mom.double())
    low = chunk_coefficients(lr, log_ret, log_mom)
    assert low.decay.dtype == torch.bfloat16
    for name in ("decay", "momentum_in", "momentum_decay", "mix", "momentum_mix"):
        err = _entrywise(getattr(low, name), getattr(exact, name))
        assert err < 5e-3, (name, err)  # bfloat16 rounds each entry by at most 2^-8 ~ 4e-3
    cum = log_mom.cumsum(-1)  # held in bfloat16
    lower = torch.ones(64, 64, dtype=torch.bool).tril()
    naive = (cum[:, :, None] - cum[:, None, :]).double().exp() * lower
    assert _entrywise(naive, exact.momentum_mix) > 2e-2


def _entrywise(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest relative error over the entries of ``b`` above 1e-3."""
    keep = b.abs() > 1e-3
    return ((a.double() - b.double()).abs()[keep] / b.abs()[keep]).max().item()
