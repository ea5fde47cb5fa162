"""The modes of ``check_finite``: where the NaN/Inf check runs, what each raises, and what is lost
with the check off."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.finite import on_host, require_finite

DT = torch.float64


def _memory(mode) -> NeuralMemory:
    torch.manual_seed(0)
    return NeuralMemory(MemoryConfig(dim=8, heads=2, chunk_size=4), check_finite=mode).to(DT)


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[3] = float("nan")
    return t


@pytest.mark.parametrize("mode", [True, "sync"])
def test_host_modes_raise_value_error_naming_the_input(mode):
    mem = _memory(mode)
    x = torch.randn(2, 5, 8, dtype=DT)
    with pytest.raises(ValueError, match=r"^x contains NaN or Inf$"):
        mem(_with_nan(x))
    _, state = mem(x)
    bad = state.replace(momentum=(state.momentum[0], _with_nan(state.momentum[1])))
    with pytest.raises(ValueError, match=r"^MemoryState\.momentum\.1 contains NaN or Inf$"):
        mem(x, bad)


def test_async_mode_asserts_on_the_device():
    """The device-side assertion, no host read of the answer; on the CPU it fails at once."""
    mem = _memory("async")
    x = torch.randn(2, 5, 8, dtype=DT)
    y, state = mem(x)  # finite: no error
    assert torch.isfinite(y).all()
    with pytest.raises(RuntimeError, match="x contains NaN or Inf"):
        mem(_with_nan(x))
    bad = state.replace(weights=(_with_nan(state.weights[0]), state.weights[1]))
    with pytest.raises(RuntimeError, match=r"MemoryState\.weights\.0 contains NaN or Inf"):
        mem(x, bad)


def test_off_lets_a_nan_spread_into_the_state():
    """What is lost with ``check_finite=False``: the NaN reaches the state and every later output."""
    mem = _memory(False)
    x = torch.randn(2, 5, 8, dtype=DT)
    _, state = mem(_with_nan(x))
    assert not torch.isfinite(state.weights[0]).all()
    y, _ = mem(torch.randn(2, 5, 8, dtype=DT), state)  # a clean input afterwards
    assert not torch.isfinite(y).all()


def test_where_each_mode_checks():
    cpu = torch.zeros(3)
    meta = torch.zeros(3, device="meta")  # stands in for an accelerator here
    assert on_host(True, cpu) and not on_host(True, meta)  # default: host on the CPU only
    assert on_host("sync", cpu) and on_host("sync", meta)
    assert not on_host("async", cpu) and not on_host(False, cpu)
    require_finite(torch.full((3,), float("nan")), "t", False)  # off: nothing
    require_finite(torch.empty(0), "t", "sync")  # empty and integer tensors are finite
    require_finite(torch.arange(3), "t", "sync")


@pytest.mark.parametrize("bad", ["yes", 1, None, "Sync"])
def test_bad_mode(bad):
    with pytest.raises(TypeError, match=r"check_finite must be True, False, 'sync' or 'async', got"):
        NeuralMemory(MemoryConfig(dim=8), check_finite=bad)
