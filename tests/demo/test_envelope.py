"""The demo layer's envelope: the five figure scenarios with tokens up to the float32 maximum.

Each scenario's stream is run with its anomalies replaced by a huge value (1e10 to float32's
maximum, either sign): only the first anomaly, every anomaly, or a burst of five tokens at
every anomaly. Every output must stay finite, the weights under the documented bound, the
ordinary steps before the first huge token bit for bit as without it, and the huge tokens must be
written (a full clipped step) and flagged (gate ~1). The test at the end shows that the plain
float32 arithmetic fails on these same streams.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from titans_memory.demo import TitansMemoryLayer, _wide
from titans_memory.demo.scenarios import SCENARIOS, weight_norm, write_norms

F32 = torch.finfo(torch.float32).max
VALUES = [1e10, 1e20, 1e30, F32, -1e10, -1e20, -1e30, -F32]
MODES = ["one", "every", "burst"]
TRACES = ("outputs", "surprise_scores", "surprise_momentum", "write_gates", "surprise_scale")
# Every scenario with its own settings; the forgetting sweep at its extremes (r = 0: the bound
# grows linearly; r = 0.05).
CASES = [(name, None) for name in SCENARIOS if name != "forgetting_effect"]
CASES += [("forgetting_effect", 0.0), ("forgetting_effect", 0.05)]


def stream(name: str, value: float, mode: str) -> tuple[torch.Tensor, list[int]]:
    """The scenario's series with huge tokens, ``(T, 1)``, and their positions."""
    scenario = SCENARIOS[name]
    seq, _ = scenario.sequence()
    anomalies = list(scenario.anomaly_indices)
    if mode == "one":
        huge = anomalies[:1]
    elif mode == "every":
        huge = anomalies
    else:
        huge = sorted({t for a in anomalies for t in range(a, min(a + 5, len(seq)))})
    seq = seq.clone()
    seq[huge] = value
    return seq.unsqueeze(-1), huge


def make_layer(name: str, rate: float | None) -> TitansMemoryLayer:
    kwargs = dict(SCENARIOS[name].layer_kwargs)
    if rate is not None:
        kwargs["forget_rate"] = rate
    torch.manual_seed(42)
    return TitansMemoryLayer(1, **kwargs)


def stacked(result, key: str) -> torch.Tensor:
    return torch.stack(list(result[key]))


def documented_bound(layer: TitansMemoryLayer, norm0: float, t: int) -> float:
    """README's bound on the memory weight norm after step ``t`` (0-based)."""
    delta = layer.memory.write_lr * layer.memory_max_grad_norm
    r = layer.memory.forget_rate
    return max(norm0, delta * (1 - r) / r) if r > 0 else norm0 + (t + 1) * delta


@pytest.fixture(scope="module")
def ordinary_runs():
    """The unmodified scenario runs, by case, for the bit-for-bit prefix comparison."""
    runs = {}
    for name, rate in CASES:
        seq, _ = SCENARIOS[name].sequence()
        runs[name, rate] = make_layer(name, rate).process_sequence(seq.unsqueeze(-1))
    return runs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{v:.0e}")
@pytest.mark.parametrize(("name", "rate"), CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_envelope(name, rate, value, mode, ordinary_runs, all_equal):
    seq, huge = stream(name, value, mode)
    layer = make_layer(name, rate)
    initial = layer.memory.get_weight_snapshot()
    norm0 = weight_norm(initial)
    r = layer.process_sequence(seq)

    # Every output finite, the gate in [0, 1], the surprise saturated at most.
    for key in TRACES:
        assert torch.isfinite(stacked(r, key)).all(), key
    for snap in r["memory_snapshots"]:
        assert all(torch.isfinite(w).all() for w in snap)
    gates = stacked(r, "write_gates").double()
    surprise = stacked(r, "surprise_scores").double()
    scale = stacked(r, "surprise_scale").double()
    assert ((gates >= 0) & (gates <= 1)).all()
    assert (surprise <= F32).all()

    # The documented weight bound, at every step.
    for t, snap in enumerate(r["memory_snapshots"]):
        assert weight_norm(snap) <= documented_bound(layer, norm0, t) * (1 + 1e-5), t

    # Before the first huge token: exactly the run without huge tokens.
    first = huge[0]
    plain = ordinary_runs[name, rate]
    for key in TRACES:
        assert torch.equal(stacked(r, key)[:first], stacked(plain, key)[:first]), key
    for a, b in zip(r["memory_snapshots"][:first], plain["memory_snapshots"][:first], strict=True):
        assert all_equal(a, b)

    # The huge token is flagged and written: a full clipped step, not a skipped one.
    assert gates[first] >= 0.99
    assert surprise[first] >= 1e6 * surprise[:first].median()
    writes = write_norms(r["memory_snapshots"], initial, layer.memory.forget_rate)
    delta = layer.memory.write_lr * layer.memory_max_grad_norm
    assert writes[first] == pytest.approx(delta * float(gates[first]), rel=1e-3)
    assert (writes <= delta * gates.numpy() * (1 + 1e-4) + 1e-5).all()

    # The trace obeys the documented formulas, saturated values included.
    assert torch.allclose(gates, surprise / (surprise + layer.gate_threshold * scale), rtol=1e-6)
    capped = torch.minimum(surprise[:-1], layer.scale_clip * scale[:-1])
    expected = scale[:-1] + (1 - layer.scale_momentum) * (capped - scale[:-1])
    assert torch.allclose(scale[1:], expected, rtol=1e-5)


@pytest.mark.parametrize("value", [1e20, -F32])
def test_envelope_as_tensors_and_sparse_snapshots(value, stack, all_equal):
    seq, _ = stream("full_pipeline", value, "burst")
    lists = make_layer("full_pipeline", None).process_sequence(seq)
    tensors = make_layer("full_pipeline", None).process_sequence(
        seq, snapshot_every=7, as_tensors=True
    )
    for key in TRACES:
        assert torch.isfinite(tensors[key]).all()
        assert torch.equal(tensors[key], stack(lists[key])), key
    for t, snap in enumerate(tensors["memory_snapshots"]):
        assert (snap is None) == (t % 7 != 0 and t != len(seq) - 1)
        if snap is not None:
            assert all_equal(snap, lists["memory_snapshots"][t])


def saturating_reference(layer: TitansMemoryLayer, seq: torch.Tensor, reference_step):
    """The five steps in float64 with autograd, on copies of the layer's networks; the surprise
    saturates at the float32 maximum before the moving average, the gate and the scale see it,
    and the reads are clamped to float32's range: the specification of the wide path."""
    predictor = copy.deepcopy(layer.surprise_metric.predictor).double()
    memory = copy.deepcopy(layer.memory.memory_net).double()
    keep = 1.0 - layer.memory.forget_rate
    momentum = layer.surprise_metric.momentum
    trace = {k: [] for k in (*TRACES, "memory_snapshots")}
    ema = scale = None
    for x in seq.double():
        with torch.no_grad():
            s = min(float(((predictor(x) - x) ** 2).mean()), F32)
            y = memory(x).clamp(-F32, F32)
        ema = s if ema is None else momentum * ema + (1 - momentum) * s
        scale = s if scale is None else scale
        gate = s / (s + layer.gate_threshold * scale)
        trace["surprise_scale"].append(scale)
        scale += (1 - layer.scale_momentum) * (min(s, layer.scale_clip * scale) - scale)
        memory = reference_step(memory, x, layer.memory.write_lr * gate, layer.memory_max_grad_norm)
        predictor = reference_step(
            predictor, x, layer.surprise_lr * (1 - gate), layer.predictor_max_grad_norm
        )
        with torch.no_grad():
            for p in memory.parameters():
                p *= keep
        for key, value in [
            ("outputs", y),
            ("surprise_scores", s),
            ("surprise_momentum", ema),
            ("write_gates", gate),
            ("memory_snapshots", [p.detach().clone() for p in memory.parameters()]),
        ]:
            trace[key].append(value)
    return trace


def assert_matches_reference(got, want, stack):
    # float32 against float64 over ~60 steps: agreement to float32 rounding, amplified where
    # the surprise is a small difference of two close values.
    assert torch.allclose(
        stack(got["outputs"]).double(), stack(want["outputs"]), rtol=1e-5, atol=1e-5
    )
    for key in ("surprise_scores", "surprise_momentum", "write_gates", "surprise_scale"):
        a = stack(got[key]).double()
        b = torch.tensor(want[key], dtype=torch.float64)
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-6), key
    for a, b in zip(got["memory_snapshots"], want["memory_snapshots"], strict=True):
        assert all(torch.allclose(p.double(), q, atol=1e-5) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize("mode", ["one", "burst"])
@pytest.mark.parametrize("value", [1e10, 1e30, -F32], ids=lambda v: f"{v:.0e}")
@pytest.mark.parametrize("name", ["full_pipeline", "surprise_over_time"])
def test_wide_steps_match_the_float64_reference(name, value, mode, reference_step, stack):
    seq, _ = stream(name, value, mode)
    layer = make_layer(name, None)
    want = saturating_reference(layer, seq, reference_step)
    assert_matches_reference(layer.process_sequence(seq), want, stack)


def test_every_step_wide_matches_the_reference_on_an_ordinary_stream(
    monkeypatch, reference_step, stack
):
    # The wide path is a second implementation of the same step: forced on every token of the
    # ordinary figure stream, it must agree with the reference (and so with the plain path).
    monkeypatch.setattr(_wide, "plain_steps", lambda nets, block, bound: [False] * len(block))
    seq, _ = SCENARIOS["full_pipeline"].sequence()
    layer = make_layer("full_pipeline", None)
    want = saturating_reference(layer, seq.unsqueeze(-1), reference_step)
    assert_matches_reference(layer.process_sequence(seq.unsqueeze(-1)), want, stack)


def test_the_plain_float32_arithmetic_fails_on_these_streams(monkeypatch):
    """Not vacuous: without the wide path (every step in plain float32), the same streams break.

    A square overflows from sqrt(max) = 1.84e19 on. On the full-pipeline stream one token of
    2.1e19 (or -1.6e19) overflows the write's gradient or the next surprise, and the weights
    turn NaN for good (Inf * 0 in the clipped step, or the gate Inf / Inf); from 1e20 on, the
    surprise itself is Inf and the gate NaN at the token. Below that, from 4e9 on, the squared
    gradient norm overflows: the clipping factor becomes 0 and the write is silently skipped
    (README quotes these values).
    """
    monkeypatch.setattr(_wide, "plain_steps", lambda nets, block, bound: None)

    def plain_run(value: float):
        seq, huge = stream("full_pipeline", value, "one")
        layer = make_layer("full_pipeline", None)
        initial = layer.memory.get_weight_snapshot()
        r = layer.process_sequence(seq)
        writes = write_norms(r["memory_snapshots"], initial, layer.memory.forget_rate)
        finite = all(torch.isfinite(w).all() for w in r["memory_snapshots"][-1])
        return float(r["write_gates"][huge[0]]), writes[huge[0]], finite

    for value in (2.1e19, -1.6e19, 1e20, 1e30, F32, -F32):
        gate, _, finite = plain_run(value)
        assert not finite, value  # NaN weights at the end of the stream
        assert math.isnan(gate) == (abs(value) >= 1e20), value  # s = Inf: the gate Inf / Inf
    for value in (2.0e19, -1.5e19):
        gate, write, finite = plain_run(value)
        assert gate >= 0.99 and finite, value  # finite, but ...
        assert write < 1e-5, value  # ... nothing written
    for value, written in ((3.5e9, True), (4e9, False), (1e10, False)):
        gate, write, finite = plain_run(value)
        assert gate >= 0.99 and finite
        assert (write == pytest.approx(0.1 * gate, rel=1e-3)) == written, value


def test_bad_input_still_raises_the_same_errors():
    layer = TitansMemoryLayer(1)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="seq contains NaN or Inf"):
            layer.process_sequence(torch.tensor([[1.0], [bad]]))
    # A finite float64 value beyond float32's range becomes Inf in the layer's dtype.
    with pytest.raises(ValueError, match="seq contains NaN or Inf"):
        layer.process_sequence(torch.tensor([[1.0], [1e39]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"seq must have shape \(T, input_dim=1\)"):
        layer.process_sequence(torch.full((2, 3, 1), F32))
    with pytest.raises(TypeError, match="seq must be a torch.Tensor, got ndarray"):
        layer.process_sequence(np.full((3, 1), F32, dtype=np.float32))
