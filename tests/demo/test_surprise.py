"""SurpriseMetric: the original API and semantics, the explicit gradient step, argument checks."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch
from torch import nn

from titans_memory.demo import SurpriseMetric


def test_original_signature_and_defaults():
    sig = inspect.signature(SurpriseMetric.__init__)
    assert list(sig.parameters)[1:] == ["input_dim", "hidden_dim", "momentum"]
    assert sig.parameters["hidden_dim"].default == 16
    assert sig.parameters["momentum"].default == 0.0
    assert inspect.signature(SurpriseMetric.update_predictor).parameters["lr"].default == 0.01


def test_predictor_structure():
    m = SurpriseMetric(input_dim=3, hidden_dim=7)
    p = m.predictor
    assert isinstance(p, nn.Sequential) and len(p) == 3
    assert isinstance(p[0], nn.Linear) and (p[0].in_features, p[0].out_features) == (3, 7)
    assert isinstance(p[1], nn.ReLU)
    assert isinstance(p[2], nn.Linear) and (p[2].in_features, p[2].out_features) == (7, 3)


@pytest.mark.parametrize("shape", [(3,), (5, 3), (2, 4, 3)])
def test_forward_is_mean_squared_error_without_grad(shape):
    torch.manual_seed(0)
    m = SurpriseMetric(input_dim=3)
    x = torch.randn(shape)
    s = m(x)
    assert s.shape == () and not s.requires_grad
    with torch.no_grad():
        expected = ((m.predictor(x) - x) ** 2).mean()
    assert torch.allclose(s, expected)


@pytest.mark.parametrize("shape", [(3,), (6, 3)])
@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_update_predictor_matches_autograd(shape, max_norm, reference_step, params_close):
    torch.manual_seed(1)
    m = SurpriseMetric(input_dim=3, hidden_dim=8)
    x = 3 * torch.randn(shape)
    ref = reference_step(m.predictor, x, lr=0.1, max_norm=max_norm)
    m.update_predictor(x, lr=0.1, max_grad_norm=max_norm)
    assert params_close(m.predictor, ref)


def test_update_predictor_clipping_bounds_the_step(param_copies, flat_norm):
    torch.manual_seed(2)
    m = SurpriseMetric(input_dim=1)
    before = param_copies(m)
    m.update_predictor(torch.tensor([99.0]), lr=0.01, max_grad_norm=5.0)
    step = flat_norm(a - b for a, b in zip(param_copies(m), before, strict=True))
    assert 0 < step <= 0.01 * 5.0 * (1 + 1e-5)


def test_novel_input_is_more_surprising_after_training():
    torch.manual_seed(42)
    m = SurpriseMetric(input_dim=1, hidden_dim=16)
    familiar = torch.tensor([1.0])
    for _ in range(50):
        m.update_predictor(familiar, lr=0.01)
    assert m(torch.tensor([99.0])) > 100 * m(familiar)


def test_compute_with_momentum_is_the_ema_by_hand():
    torch.manual_seed(3)
    m = SurpriseMetric(input_dim=1, momentum=0.8)
    values = [1.0, 1.0, 7.0, 1.0, 2.0]
    # The predictor does not change here, so the raw surprises can be taken first.
    raw = [m(torch.tensor([v])).item() for v in values]
    expected, ema = [], None
    for r in raw:
        ema = r if ema is None else 0.8 * ema + 0.2 * r
        expected.append(ema)
    got = [m.compute_with_momentum(torch.tensor([v])).item() for v in values]
    assert got == pytest.approx(expected, rel=1e-6)
    # A spike carries forward: the step after it is still raised.
    assert got[3] > got[1]


def test_momentum_zero_gives_raw_and_reset_restarts():
    torch.manual_seed(4)
    m = SurpriseMetric(input_dim=2, momentum=0.0)
    x = torch.randn(2)
    assert torch.allclose(m.compute_with_momentum(x), m(x))
    m = SurpriseMetric(input_dim=2, momentum=0.9)
    m.compute_with_momentum(torch.full((2,), 50.0))
    m.reset_momentum()
    assert torch.allclose(m.compute_with_momentum(x), m(x))


def test_compute_with_momentum_returns_a_copy():
    m = SurpriseMetric(input_dim=1, momentum=0.5)
    first = m.compute_with_momentum(torch.tensor([1.0]))
    kept = first.clone()
    m.compute_with_momentum(torch.tensor([30.0]))
    assert torch.equal(first, kept)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_dim": 0}, ValueError, "input_dim must be a positive int, got 0"),
        ({"input_dim": -2}, ValueError, "input_dim must be a positive int, got -2"),
        ({"input_dim": 1.5}, TypeError, "input_dim must be an int, got float"),
        ({"input_dim": True}, TypeError, "input_dim must be an int, got bool"),
        ({"input_dim": 1, "hidden_dim": 0}, ValueError, "hidden_dim must be a positive int, got 0"),
        ({"input_dim": 1, "momentum": -0.1}, ValueError, "momentum must be >= 0.0, got -0.1"),
        ({"input_dim": 1, "momentum": 1.0}, ValueError, "momentum must be < 1.0, got 1.0"),
        (
            {"input_dim": 1, "momentum": float("nan")},
            ValueError,
            "momentum must be finite, got nan",
        ),
        ({"input_dim": 1, "momentum": "0.5"}, TypeError, "momentum must be a real number, got str"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SurpriseMetric(**kwargs)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.tensor([float("nan")]), ValueError, "x contains NaN or Inf"),
        (torch.tensor([float("inf")]), ValueError, "x contains NaN or Inf"),
        (torch.ones(2), ValueError, "x must have last dimension input_dim=1, got shape (2,)"),
        (torch.ones(0, 1), ValueError, "x is empty (shape (0, 1))"),
        ([1.0], TypeError, "x must be a torch.Tensor, got list"),
    ],
)
def test_bad_inputs(x, error, message):
    m = SurpriseMetric(input_dim=1)
    with pytest.raises(error, match=re.escape(message)):
        m(x)
    with pytest.raises(error, match=re.escape(message)):
        m.update_predictor(x)


def test_bad_step_arguments():
    m = SurpriseMetric(input_dim=1)
    with pytest.raises(ValueError, match=r"lr must be >= 0\.0, got -0\.1"):
        m.update_predictor(torch.ones(1), lr=-0.1)
    with pytest.raises(ValueError, match=r"max_grad_norm must be > 0, got 0\.0"):
        m.update_predictor(torch.ones(1), max_grad_norm=0.0)


# -- Inputs up to the float32 maximum --------------------------------------------------------

F32 = torch.finfo(torch.float32).max
HUGE = [1e10, 1e20, 1e30, F32, -1e20, -F32]


def huge_input(value: float, shape: tuple[int, ...]) -> torch.Tensor:
    """Ordinary values with one element at ``value``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    x.view(-1)[0] = value
    return x


def float64_surprise(metric: SurpriseMetric, x: torch.Tensor) -> torch.Tensor:
    predictor = copy.deepcopy(metric.predictor).double()
    with torch.no_grad():
        return ((predictor(x.double()) - x.double()) ** 2).mean()


@pytest.mark.parametrize("shape", [(2,), (3, 2)])
@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{v:.0e}")
def test_surprise_of_huge_inputs_is_the_float64_value_saturated(value, shape):
    torch.manual_seed(5)
    m = SurpriseMetric(input_dim=2)
    x = huge_input(value, shape)
    s = m(x)
    exact = float64_surprise(m, x)
    assert s.dtype == torch.float32 and torch.isfinite(s)
    assert float(s) == pytest.approx(min(float(exact), F32), rel=1e-6)
    # Not vacuous: the plain float32 formula overflows from |x| ~ 1.8e19 on.
    with torch.no_grad():
        plain = (m.predictor(x) - x).square().mean()
    assert torch.isfinite(plain) == (abs(value) < 1e19)


def test_compute_with_momentum_averages_the_saturated_surprise():
    torch.manual_seed(6)
    m = SurpriseMetric(input_dim=1, momentum=0.8)
    values = [1.0, F32, 2.0, -1e30, 3.0]
    raw = [min(float(float64_surprise(m, torch.tensor([v]))), F32) for v in values]
    expected, ema = [], None
    for r in raw:
        ema = r if ema is None else 0.8 * ema + 0.2 * r
        expected.append(ema)
    got = [m.compute_with_momentum(torch.tensor([v])) for v in values]
    assert all(torch.isfinite(g) for g in got)
    assert [float(g) for g in got] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("shape", [(2,), (3, 2)])
@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{v:.0e}")
def test_clipped_update_on_huge_inputs_is_the_float64_step(
    value, shape, reference_step, param_copies, flat_norm
):
    torch.manual_seed(8)
    m = SurpriseMetric(input_dim=2, hidden_dim=8)
    x = huge_input(value, shape)
    want = reference_step(copy.deepcopy(m.predictor).double(), x.double(), lr=0.01, max_norm=5.0)
    before = param_copies(m)
    m.update_predictor(x, lr=0.01, max_grad_norm=5.0)
    for p, q in zip(m.predictor.parameters(), want.parameters(), strict=True):
        assert torch.allclose(p.double(), q, atol=1e-6)
    step = flat_norm(a - b for a, b in zip(param_copies(m), before, strict=True))
    assert step == pytest.approx(0.01 * 5.0, rel=1e-4)  # the full clipped step


def test_unclipped_update_on_a_huge_input_saturates_the_weights():
    torch.manual_seed(9)
    m = SurpriseMetric(input_dim=1)
    m.update_predictor(torch.tensor([F32]), lr=0.01)  # the original, unbounded step
    weights = list(m.predictor.parameters())
    assert all(torch.isfinite(w).all() for w in weights)
    assert any((w.abs() == F32).any() for w in weights)
    # The metric still answers, finite, on ordinary and huge inputs.
    assert torch.isfinite(m(torch.tensor([1.0]))) and torch.isfinite(m(torch.tensor([-F32])))
