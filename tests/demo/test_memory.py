"""MemoryModule: read, surprise-scaled write, forgetting, snapshots, argument checks."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch
from torch import nn

from titans_memory.demo import MemoryModule


def test_original_signature_and_defaults():
    sig = inspect.signature(MemoryModule.__init__)
    assert list(sig.parameters)[1:] == ["input_dim", "memory_dim", "forget_rate", "write_lr"]
    assert sig.parameters["memory_dim"].default == 32
    assert sig.parameters["forget_rate"].default == 0.0
    assert sig.parameters["write_lr"].default == 0.01
    assert list(inspect.signature(MemoryModule.write).parameters)[1:3] == ["x", "surprise_score"]


def test_memory_net_structure():
    net = MemoryModule(input_dim=4, memory_dim=16).memory_net
    assert isinstance(net, nn.Sequential)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net[::2]] == [(4, 16), (16, 16), (16, 4)]


@pytest.mark.parametrize("shape", [(4,), (3, 4)])
def test_read_has_input_shape_no_grad_and_changes_nothing(shape, param_copies, all_equal):
    torch.manual_seed(0)
    mem = MemoryModule(input_dim=4, memory_dim=16)
    before = param_copies(mem)
    y = mem.read(torch.randn(shape))
    assert y.shape == shape and not y.requires_grad
    assert all_equal(before, param_copies(mem))


@pytest.mark.parametrize("score", [torch.tensor(0.0), 0.0, torch.tensor(1e-9)])
def test_write_with_zero_surprise_changes_nothing(score, param_copies, all_equal):
    torch.manual_seed(1)
    mem = MemoryModule(input_dim=4, memory_dim=16)
    before = param_copies(mem)
    mem.write(torch.randn(4), surprise_score=score)
    assert all_equal(before, param_copies(mem))


def test_write_with_surprise_one_changes_the_read():
    torch.manual_seed(2)
    mem = MemoryModule(input_dim=4, memory_dim=16)
    x = torch.randn(4)
    before = mem.read(x)
    mem.write(x, surprise_score=torch.tensor(1.0))
    after = mem.read(x)
    assert not torch.allclose(before, after)
    # ... and towards x: a write is a step on ||M(x) - x||^2.
    assert ((after - x) ** 2).mean() < ((before - x) ** 2).mean()


@pytest.mark.parametrize("shape", [(4,), (5, 4)])
@pytest.mark.parametrize("max_norm", [None, 0.1])
def test_write_is_one_step_with_lr_write_lr_times_surprise(
    shape, max_norm, reference_step, params_close
):
    torch.manual_seed(3)
    mem = MemoryModule(input_dim=4, memory_dim=8, write_lr=0.05)
    x = torch.randn(shape)
    ref = reference_step(mem.memory_net, x, lr=0.05 * 0.37, max_norm=max_norm)
    mem.write(x, surprise_score=torch.tensor(0.37), max_grad_norm=max_norm)
    assert params_close(mem.memory_net, ref)


def test_write_step_scales_linearly_with_surprise(param_copies):
    x = torch.tensor([0.5, -1.0])
    deltas = []
    for score in (1.0, 3.0):
        torch.manual_seed(4)
        mem = MemoryModule(input_dim=2, memory_dim=8, write_lr=1e-3)
        before = param_copies(mem)
        mem.write(x, surprise_score=torch.tensor(score))
        deltas.append([a - b for a, b in zip(param_copies(mem), before, strict=True)])
    for d1, d3 in zip(*deltas, strict=True):
        assert torch.allclose(3 * d1, d3, atol=1e-6)


@pytest.mark.parametrize("rate", [0.01, 0.3])
def test_forgetting_multiplies_every_weight_by_one_minus_rate(rate, param_copies):
    torch.manual_seed(5)
    mem = MemoryModule(input_dim=3, memory_dim=8, forget_rate=rate)
    before = param_copies(mem)
    mem.apply_forgetting()
    for a, b in zip(param_copies(mem), before, strict=True):
        assert torch.allclose(a, b * (1.0 - rate), rtol=1e-6, atol=0)


def test_forgetting_shrinks_the_read_and_zero_rate_does_nothing(param_copies, all_equal):
    torch.manual_seed(6)
    mem = MemoryModule(input_dim=4, memory_dim=16, forget_rate=0.1)
    x = torch.randn(4)
    mem.write(x, surprise_score=torch.tensor(1.0))
    y = mem.read(x)
    for _ in range(50):
        mem.apply_forgetting()
    assert mem.read(x).norm() < y.norm()
    still = MemoryModule(input_dim=4, memory_dim=16, forget_rate=0.0)
    before = param_copies(still)
    still.apply_forgetting()
    assert all_equal(before, param_copies(still))


def test_snapshot_is_a_detached_copy(all_equal):
    torch.manual_seed(7)
    mem = MemoryModule(input_dim=2, memory_dim=4, forget_rate=0.5)
    snap = mem.get_weight_snapshot()
    assert [s.shape for s in snap] == [p.shape for p in mem.memory_net.parameters()]
    assert not any(s.requires_grad for s in snap)
    kept = [s.clone() for s in snap]
    mem.apply_forgetting()
    mem.write(torch.ones(2), surprise_score=torch.tensor(1.0))
    assert all_equal(snap, kept)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_dim": 0}, ValueError, "input_dim must be a positive int, got 0"),
        (
            {"input_dim": 1, "memory_dim": -1},
            ValueError,
            "memory_dim must be a positive int, got -1",
        ),
        ({"input_dim": 1, "memory_dim": 2.0}, TypeError, "memory_dim must be an int, got float"),
        (
            {"input_dim": 1, "forget_rate": -0.01},
            ValueError,
            "forget_rate must be >= 0.0, got -0.01",
        ),
        ({"input_dim": 1, "forget_rate": 1.0}, ValueError, "forget_rate must be < 1.0, got 1.0"),
        (
            {"input_dim": 1, "forget_rate": float("inf")},
            ValueError,
            "forget_rate must be finite, got inf",
        ),
        ({"input_dim": 1, "write_lr": -0.01}, ValueError, "write_lr must be >= 0.0, got -0.01"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MemoryModule(**kwargs)


@pytest.mark.parametrize(
    ("score", "error", "message"),
    [
        (torch.tensor(float("nan")), ValueError, "surprise_score must be finite, got nan"),
        (torch.tensor(float("inf")), ValueError, "surprise_score must be finite, got inf"),
        (float("nan"), ValueError, "surprise_score must be finite, got nan"),
        (torch.tensor(-1.0), ValueError, "surprise_score must be >= 0.0, got -1.0"),
        (torch.ones(2), ValueError, "surprise_score must be a scalar, got shape (2,)"),
        ("high", TypeError, "surprise_score must be a real number, got str"),
    ],
)
def test_bad_surprise_scores(score, error, message):
    mem = MemoryModule(input_dim=1)
    with pytest.raises(error, match=re.escape(message)):
        mem.write(torch.ones(1), surprise_score=score)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.tensor([1.0, float("nan")]), ValueError, "x contains NaN or Inf"),
        (torch.ones(3), ValueError, "x must have last dimension input_dim=2, got shape (3,)"),
        (torch.ones(0, 2), ValueError, "x is empty (shape (0, 2))"),
        ((1.0, 2.0), TypeError, "x must be a torch.Tensor, got tuple"),
    ],
)
def test_bad_inputs(x, error, message):
    mem = MemoryModule(input_dim=2)
    with pytest.raises(error, match=re.escape(message)):
        mem.read(x)
    with pytest.raises(error, match=re.escape(message)):
        mem.write(x, surprise_score=torch.tensor(1.0))


# -- Inputs up to the float32 maximum --------------------------------------------------------

F32 = torch.finfo(torch.float32).max
HUGE = [1e10, 1e20, 1e30, F32, -1e20, -F32]


def huge_input(value: float, shape: tuple[int, ...]) -> torch.Tensor:
    """Ordinary values with one element at ``value``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    x.view(-1)[0] = value
    return x


@pytest.mark.parametrize("shape", [(2,), (3, 2)])
@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{v:.0e}")
def test_read_of_huge_inputs_is_the_float64_read_saturated(value, shape):
    torch.manual_seed(10)
    mem = MemoryModule(input_dim=2, memory_dim=8)
    x = huge_input(value, shape)
    y = mem.read(x)
    with torch.no_grad():
        exact = copy.deepcopy(mem.memory_net).double()(x.double()).clamp(-F32, F32)
    assert y.shape == shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert torch.allclose(y.double(), exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [F32, -F32], ids=lambda v: f"{v:.0e}")
def test_read_beyond_the_float32_range_saturates(value):
    torch.manual_seed(10)
    mem = MemoryModule(input_dim=2, memory_dim=8)
    with torch.no_grad():
        for p in mem.memory_net.parameters():
            p *= 4.0  # a gain of ~64: reads of a 3.4e38 input exceed float32's range
    x = huge_input(value, (3, 2))
    y = mem.read(x)
    with torch.no_grad():
        exact = copy.deepcopy(mem.memory_net).double()(x.double())
        plain = mem.memory_net(x)
    beyond = exact.abs() > F32
    assert beyond.any() and torch.isfinite(y).all()
    assert torch.equal(y[beyond].double(), exact[beyond].sign() * F32)
    assert torch.allclose(y[~beyond].double(), exact[~beyond], rtol=1e-5, atol=1e-6)
    assert not torch.isfinite(plain).all()  # not vacuous: the float32 forward pass overflows


@pytest.mark.parametrize("score", [1.0, 0.37])
@pytest.mark.parametrize("shape", [(2,), (3, 2)])
@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{v:.0e}")
def test_clipped_write_of_huge_inputs_is_the_float64_step(
    value, shape, score, reference_step, param_copies, flat_norm
):
    torch.manual_seed(11)
    mem = MemoryModule(input_dim=2, memory_dim=8, write_lr=0.05)
    x = huge_input(value, shape)
    lr = 0.05 * score
    want = reference_step(copy.deepcopy(mem.memory_net).double(), x.double(), lr, max_norm=10.0)
    before = param_copies(mem)
    mem.write(x, surprise_score=torch.tensor(score), max_grad_norm=10.0)
    for p, q in zip(mem.memory_net.parameters(), want.parameters(), strict=True):
        assert torch.allclose(p.double(), q, atol=1e-6)
    step = flat_norm(a - b for a, b in zip(param_copies(mem), before, strict=True))
    assert step == pytest.approx(lr * 10.0, rel=1e-4)  # the full clipped step, not a skipped one


@pytest.mark.parametrize("value", [1e20, -F32], ids=lambda v: f"{v:.0e}")
def test_unclipped_write_of_a_huge_input_saturates_and_reads_stay_finite(value):
    torch.manual_seed(12)
    mem = MemoryModule(input_dim=1, memory_dim=8)
    mem.write(torch.tensor([value]), surprise_score=F32)  # the original rule, unbounded
    weights = list(mem.memory_net.parameters())
    assert all(torch.isfinite(w).all() for w in weights)
    assert any((w.abs() == F32).any() for w in weights)
    for x in (torch.tensor([1.0]), torch.tensor([value]), torch.full((4, 1), -F32)):
        assert torch.isfinite(mem.read(x)).all()
    mem.write(torch.tensor([2.0]), surprise_score=1.0, max_grad_norm=1.0)
    assert all(torch.isfinite(w).all() for w in weights)
