"""Fuzz: any config, shape, input scale and split of the stream either raises one of the
documented errors (ValueError or TypeError, with a message) or returns finite outputs and a
finite state."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.stability import force_gates

VALID = {
    "dim": st.integers(1, 16),
    "heads": st.integers(1, 4),
    "depth": st.integers(1, 3),
    "expansion": st.floats(0.5, 3.0),
    "chunk_size": st.integers(1, 9),
    "conv_kernel": st.integers(1, 4),
    "objective": st.sampled_from(["l2", "lp", "huber", "dot"]),
    "retention": st.sampled_from(["decay", "lq", "kl", "elastic_net"]),
    "momentum": st.booleans(),
    "forget": st.booleans(),
    "decayed_gradient": st.booleans(),
    "p": st.floats(1.0, 4.0),
    "lr_init": st.floats(1e-4, 0.2),
    "max_lr": st.floats(1e-3, 1.0),
    "huber_delta_init": st.floats(1e-3, 1e4),
    "max_step_norm": st.floats(1e-2, 1e3),
}
INVALID = {
    "dim": st.sampled_from([0, -2, 3.5, "8", True]),
    "heads": st.sampled_from([0, None]),
    "depth": st.just(0),
    "expansion": st.sampled_from([0.0, -1.0, math.inf, math.nan]),
    "chunk_size": st.sampled_from([0, 2.0]),
    "conv_kernel": st.just(0),
    "objective": st.just("l7"),
    "retention": st.just("none"),
    "momentum": st.sampled_from(["no", 1]),
    "p": st.sampled_from([math.inf, 0.5]),
    "huber_delta_init": st.just(0.0),
    "max_step_norm": st.sampled_from([-1.0, math.nan]),
}


@st.composite
def cases(draw):
    changes = {name: draw(strategy) for name, strategy in VALID.items() if draw(st.booleans())}
    if draw(st.integers(0, 3)) == 0:  # one field out of range, a quarter of the time
        name = draw(st.sampled_from(sorted(INVALID)))
        changes[name] = draw(INVALID[name])
    batch = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=4))
    scale = 10.0 ** draw(st.floats(-3, 6))
    burst = draw(st.one_of(st.none(), st.tuples(st.integers(0, 20), st.integers(1, 6), st.sampled_from([10.0, 1e3, 1e6]))))
    forced = draw(st.booleans())
    return changes, batch, sizes, scale, burst, forced, draw(st.integers(0, 2**16))


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_documented_error_or_finite_result(case):
    changes, batch, sizes, scale, burst, forced, seed = case
    try:
        config = MemoryConfig(**changes)
    except (ValueError, TypeError) as err:
        assert str(err).startswith(("MemoryConfig.", "UpdateRule.")), str(err)
        event("config refused")
        return
    event("config built")
    torch.manual_seed(seed)
    mem = NeuralMemory(config)
    if forced:
        force_gates(mem, lr=config.max_lr, momentum=0.999)
    x = scale * torch.randn(batch, sum(sizes), config.dim, generator=torch.Generator().manual_seed(seed))
    if burst is not None:
        start, length, factor = burst
        x[:, start : start + length] *= factor
    state, start, outputs = None, 0, []
    with torch.no_grad():
        for n in sizes:
            y, state = mem(x[:, start : start + n], state)
            outputs.append(y)
            start += n
    y = torch.cat(outputs, dim=1)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    for name, t in state.tensors().items():
        assert torch.isfinite(t).all(), name
