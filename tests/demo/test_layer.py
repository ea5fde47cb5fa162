"""TitansMemoryLayer: original API, the five steps, the bounded gate, snapshots, argument checks."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch

from titans_memory.demo import TitansMemoryLayer

KEYS = {
    "outputs",
    "surprise_scores",
    "surprise_momentum",
    "memory_snapshots",
    "write_gates",
    "surprise_scale",
}


def test_original_signature_and_defaults():
    params = inspect.signature(TitansMemoryLayer.__init__).parameters
    original = {
        "input_dim": inspect.Parameter.empty,
        "memory_dim": 32,
        "hidden_dim": 16,
        "momentum": 0.0,
        "forget_rate": 0.01,
        "surprise_lr": 0.01,
        "write_lr": 0.01,
    }
    names = list(params)[1:]
    assert names[:7] == list(original)
    for name, default in original.items():
        assert params[name].default == default
        assert params[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Everything new is keyword-only, so positional calls written for the original still work.
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names[7:])
    seq_params = inspect.signature(TitansMemoryLayer.process_sequence).parameters
    assert list(seq_params)[1:] == ["seq", "snapshot_every", "as_tensors"]
    assert seq_params["snapshot_every"].default == 1
    assert seq_params["as_tensors"].default is False


def test_result_keys_lengths_and_types():
    torch.manual_seed(0)
    layer = TitansMemoryLayer(input_dim=3, memory_dim=8)
    result = layer.process_sequence(torch.randn(7, 3))
    assert set(result) == KEYS
    assert all(len(v) == 7 for v in result.values())
    assert all(y.shape == (3,) for y in result["outputs"])
    for key in ("surprise_scores", "surprise_momentum", "write_gates", "surprise_scale"):
        assert all(isinstance(v, torch.Tensor) and v.shape == () for v in result[key])
    shapes = [p.shape for p in layer.memory.memory_net.parameters()]
    assert all([w.shape for w in snap] == shapes for snap in result["memory_snapshots"])


def reference_loop(layer: TitansMemoryLayer, seq: torch.Tensor):
    """The five steps written with the public methods of the two modules, one call each.

    Slow and plain on purpose: process_sequence's fused loop must reproduce it.
    """
    metric, memory = layer.surprise_metric, layer.memory
    metric.reset_momentum()
    scale = None
    trace = {k: [] for k in KEYS}
    for x in seq:
        s = metric(x)  # (1)
        ema = metric.compute_with_momentum(x)
        if scale is None:
            scale = s.clone()
        gate = s / (s + layer.gate_threshold * scale)
        trace["surprise_scale"].append(scale)
        scale = scale + (1 - layer.scale_momentum) * (
            torch.minimum(s, layer.scale_clip * scale) - scale
        )
        y = memory.read(x)  # (2)
        memory.write(x, gate, max_grad_norm=layer.memory_max_grad_norm)  # (3)
        metric.update_predictor(  # (4)
            x, lr=layer.surprise_lr * (1 - gate.item()), max_grad_norm=layer.predictor_max_grad_norm
        )
        memory.apply_forgetting()  # (5)
        for key, value in [
            ("outputs", y),
            ("surprise_scores", s),
            ("surprise_momentum", ema),
            ("write_gates", gate),
            ("memory_snapshots", memory.get_weight_snapshot()),
        ]:
            trace[key].append(value)
    return trace


@pytest.mark.parametrize("input_dim", [1, 3])
def test_fused_loop_equals_the_five_public_steps(input_dim, stack):
    seq = torch.randn(40, input_dim, generator=torch.Generator().manual_seed(5))
    seq[17] = 30.0  # an outlier, so that clipping and the gate are exercised
    kwargs = {"memory_dim": 8, "hidden_dim": 8, "momentum": 0.7, "forget_rate": 0.02}
    torch.manual_seed(1)
    fast = TitansMemoryLayer(input_dim, **kwargs)
    torch.manual_seed(1)
    slow = TitansMemoryLayer(input_dim, **kwargs)
    got = fast.process_sequence(seq)
    want = reference_loop(slow, seq)
    for key in ("outputs", "surprise_scores", "surprise_momentum", "write_gates", "surprise_scale"):
        assert torch.allclose(stack(got[key]), stack(want[key]), rtol=1e-4, atol=1e-6), key
    for a, b in zip(got["memory_snapshots"], want["memory_snapshots"], strict=True):
        assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a, b, strict=True))
    for p, q in zip(fast.parameters(), slow.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_gate_and_scale_follow_their_formulas(stack):
    torch.manual_seed(2)
    layer = TitansMemoryLayer(
        1, memory_dim=8, gate_threshold=2.0, scale_momentum=0.8, scale_clip=3.0
    )
    seq = torch.tensor([1.0, 2.0, 3.0] * 6 + [40.0] + [1.0, 2.0, 3.0] * 3).unsqueeze(-1)
    r = layer.process_sequence(seq)
    s, g, c = (stack(r[k]).double() for k in ("surprise_scores", "write_gates", "surprise_scale"))
    assert torch.allclose(g, s / (s + 2.0 * c), atol=1e-6)
    assert c[0] == s[0]  # the scale starts at the first surprise
    expected = c[:-1] * 0.8 + 0.2 * torch.minimum(s[:-1], 3.0 * c[:-1])
    assert torch.allclose(c[1:], expected, rtol=1e-5)
    # The winsorised scale grows by at most 0.8 + 0.2 * 3 = 1.4 per step, whatever the anomaly.
    assert (c[1:] / c[:-1]).max() <= 1.4 + 1e-5
    assert g[18] > 0.95  # the anomaly opens the gate
    assert torch.allclose(
        layer.surprise_scale.double(), c[-1] * 0.8 + 0.2 * torch.minimum(s[-1], 3 * c[-1])
    )


def test_momentum_trace_is_the_ema_of_the_raw_trace(stack):
    torch.manual_seed(3)
    layer = TitansMemoryLayer(1, momentum=0.9)
    r = layer.process_sequence(torch.rand(30, 1) * 5)
    raw, ema = stack(r["surprise_scores"]), stack(r["surprise_momentum"])
    expected = [raw[0]]
    for value in raw[1:]:
        expected.append(0.9 * expected[-1] + 0.1 * value)
    assert torch.allclose(ema, torch.stack(expected), rtol=1e-5)
    # The metric is left holding the last average, as compute_with_momentum would.
    assert torch.allclose(layer.surprise_metric._ema_surprise, ema[-1])


def test_outputs_are_the_reads_before_each_write():
    torch.manual_seed(4)
    layer = TitansMemoryLayer(2, memory_dim=8)
    seq = torch.randn(5, 2)
    snaps_before = layer.memory.get_weight_snapshot()
    r = layer.process_sequence(seq)
    with torch.no_grad():
        net = layer.memory.memory_net
        for t in range(5):
            weights = snaps_before if t == 0 else r["memory_snapshots"][t - 1]
            for p, w in zip(net.parameters(), weights, strict=True):
                p.copy_(w)
            assert torch.allclose(r["outputs"][t], net(seq[t]), atol=1e-6)


@pytest.mark.parametrize(
    ("every", "recorded"), [(3, [0, 3, 6, 9]), (4, [0, 4, 8, 9]), (20, [0, 9])]
)
def test_snapshot_every_k(every, recorded, stack, all_equal):
    seq = torch.randn(10, 1, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(7)
    full = TitansMemoryLayer(1, memory_dim=4).process_sequence(seq)
    torch.manual_seed(7)
    sparse = TitansMemoryLayer(1, memory_dim=4).process_sequence(seq, snapshot_every=every)
    snaps = sparse["memory_snapshots"]
    assert len(snaps) == 10
    assert [t for t, s in enumerate(snaps) if s is not None] == recorded
    for t in recorded:
        assert all_equal(snaps[t], full["memory_snapshots"][t])
    # Everything else is recorded at every step regardless.
    assert torch.equal(stack(sparse["write_gates"]), stack(full["write_gates"]))


def test_trace_entries_do_not_alias_each_other_or_the_layer(all_equal):
    torch.manual_seed(8)
    layer = TitansMemoryLayer(1, momentum=0.5)
    r = layer.process_sequence(torch.rand(4, 1))
    first = [r[k][0] for k in ("surprise_scores", "surprise_momentum", "surprise_scale")]
    assert len({id(v) for v in first}) == 3
    kept = [v.clone() for v in first]
    layer.process_sequence(torch.rand(4, 1))
    assert all_equal(first, kept)


def test_state_carries_over_between_calls_and_resets():
    torch.manual_seed(9)
    layer = TitansMemoryLayer(1)
    assert layer.surprise_scale is None
    layer.process_sequence(torch.rand(10, 1))
    carried = layer.surprise_scale
    r = layer.process_sequence(torch.rand(3, 1))
    assert torch.equal(r["surprise_scale"][0], carried)
    layer.reset_surprise_scale()
    r = layer.process_sequence(torch.rand(3, 1))
    assert torch.equal(r["surprise_scale"][0], r["surprise_scores"][0])


def test_one_dimensional_series_is_accepted_when_input_dim_is_one(stack):
    seq = torch.rand(12)
    torch.manual_seed(10)
    a = TitansMemoryLayer(1).process_sequence(seq)
    torch.manual_seed(10)
    b = TitansMemoryLayer(1).process_sequence(seq.unsqueeze(-1))
    assert torch.equal(stack(a["write_gates"]), stack(b["write_gates"]))


def test_zero_learning_rates_freeze_the_networks(param_copies, all_equal):
    torch.manual_seed(11)
    layer = TitansMemoryLayer(1, forget_rate=0.0, write_lr=0.0, surprise_lr=0.0)
    before = param_copies(layer)
    layer.process_sequence(torch.rand(20, 1) * 50)
    assert all_equal(before, layer.parameters())


@pytest.mark.parametrize("forget_rate", [0.0, 0.01, 0.1])
def test_weight_norm_obeys_the_documented_bound_under_huge_outliers(forget_rate, flat_norm, stack):
    gen = torch.Generator().manual_seed(12)
    seq = torch.rand(200, 2, generator=gen) * 3
    seq[::17] = torch.tensor([1e4, -3e3])  # far worse than any demo scenario
    torch.manual_seed(12)
    layer = TitansMemoryLayer(2, memory_dim=16, forget_rate=forget_rate, write_lr=0.05)
    norm0 = flat_norm(layer.memory.memory_net.parameters())
    r = layer.process_sequence(seq)
    delta = layer.memory.write_lr * layer.memory_max_grad_norm
    for t, snap in enumerate(r["memory_snapshots"]):
        norm = flat_norm(snap)
        if forget_rate > 0:
            bound = max(norm0, delta * (1 - forget_rate) / forget_rate)
        else:
            bound = norm0 + (t + 1) * delta
        assert norm <= bound * (1 + 1e-5)
    for key in ("outputs", "surprise_scores", "surprise_momentum", "write_gates", "surprise_scale"):
        assert torch.isfinite(stack(r[key])).all(), key
    gates = stack(r["write_gates"])
    assert ((gates >= 0) & (gates <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_dim": 0}, ValueError, "input_dim must be a positive int, got 0"),
        ({"input_dim": 1, "memory_dim": 0}, ValueError, "memory_dim must be a positive int, got 0"),
        (
            {"input_dim": 1, "hidden_dim": -4},
            ValueError,
            "hidden_dim must be a positive int, got -4",
        ),
        ({"input_dim": 1, "momentum": 1.0}, ValueError, "momentum must be < 1.0, got 1.0"),
        ({"input_dim": 1, "momentum": -0.5}, ValueError, "momentum must be >= 0.0, got -0.5"),
        ({"input_dim": 1, "forget_rate": 1.0}, ValueError, "forget_rate must be < 1.0, got 1.0"),
        ({"input_dim": 1, "forget_rate": -0.1}, ValueError, "forget_rate must be >= 0.0, got -0.1"),
        (
            {"input_dim": 1, "surprise_lr": -0.01},
            ValueError,
            "surprise_lr must be >= 0.0, got -0.01",
        ),
        ({"input_dim": 1, "write_lr": -0.01}, ValueError, "write_lr must be >= 0.0, got -0.01"),
        (
            {"input_dim": 1, "write_lr": float("nan")},
            ValueError,
            "write_lr must be finite, got nan",
        ),
        (
            {"input_dim": 1, "gate_threshold": 0.0},
            ValueError,
            "gate_threshold must be > 0, got 0.0",
        ),
        (
            {"input_dim": 1, "scale_momentum": 1.0},
            ValueError,
            "scale_momentum must be < 1.0, got 1.0",
        ),
        ({"input_dim": 1, "scale_clip": 0.5}, ValueError, "scale_clip must be >= 1.0, got 0.5"),
        (
            {"input_dim": 1, "memory_max_grad_norm": 0.0},
            ValueError,
            "memory_max_grad_norm must be > 0, got 0.0",
        ),
        (
            {"input_dim": 1, "predictor_max_grad_norm": -1.0},
            ValueError,
            "predictor_max_grad_norm must be >= 0.0, got -1.0",
        ),
        ({"input_dim": "1"}, TypeError, "input_dim must be an int, got str"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        TitansMemoryLayer(**kwargs)


@pytest.mark.parametrize(
    ("seq", "error", "message"),
    [
        (torch.empty(0, 2), ValueError, "seq is empty: it needs at least one timestep"),
        (
            torch.ones(5, 3),
            ValueError,
            "seq must have last dimension input_dim=2, got shape (5, 3)",
        ),
        # 1-D is only accepted for input_dim 1
        (torch.ones(5), ValueError, "seq must have shape (T, input_dim=2), got (5,)"),
        (torch.ones(2, 5, 2), ValueError, "seq must have shape (T, input_dim=2), got (2, 5, 2)"),
        (torch.tensor([[1.0, float("nan")]]), ValueError, "seq contains NaN or Inf"),
        (torch.tensor([[float("inf"), 1.0]]), ValueError, "seq contains NaN or Inf"),
        ([[1.0, 2.0]], TypeError, "seq must be a torch.Tensor, got list"),
        (
            torch.ones(3, 2, dtype=torch.bool),
            TypeError,
            "seq must be a real-valued tensor, got dtype torch.bool",
        ),
    ],
)
def test_bad_sequences(seq, error, message):
    layer = TitansMemoryLayer(input_dim=2)
    with pytest.raises(error, match=re.escape(message)):
        layer.process_sequence(seq)


def test_bad_snapshot_every():
    layer = TitansMemoryLayer(input_dim=1)
    with pytest.raises(ValueError, match=r"snapshot_every must be a positive int, got 0"):
        layer.process_sequence(torch.ones(3, 1), snapshot_every=0)
    with pytest.raises(TypeError, match=r"snapshot_every must be an int, got float"):
        layer.process_sequence(torch.ones(3, 1), snapshot_every=2.5)


def test_integer_and_double_inputs_are_converted():
    torch.manual_seed(13)
    layer = TitansMemoryLayer(1)
    r = layer.process_sequence(torch.tensor([[1], [2], [3]]))
    assert r["outputs"][0].dtype == torch.float32
    r = layer.process_sequence(torch.tensor([[1.0], [2.0]], dtype=torch.float64))
    assert r["surprise_scores"][0].dtype == torch.float32


@pytest.mark.parametrize("chunk", [3, 4096])
def test_as_tensors_stacks_the_same_traces(monkeypatch, chunk, stack):
    import titans_memory.demo.layer as layer_module

    monkeypatch.setattr(layer_module, "_CHUNK", chunk)  # 3: exercises the periodic stacking
    seq = torch.randn(10, 2, generator=torch.Generator().manual_seed(14))
    torch.manual_seed(15)
    lists = TitansMemoryLayer(2, memory_dim=4).process_sequence(seq, snapshot_every=4)
    torch.manual_seed(15)
    tensors = TitansMemoryLayer(2, memory_dim=4).process_sequence(
        seq, snapshot_every=4, as_tensors=True
    )
    assert tensors["outputs"].shape == (10, 2)
    for key in ("outputs", "surprise_scores", "surprise_momentum", "write_gates", "surprise_scale"):
        assert torch.equal(tensors[key], stack(lists[key])), key
    assert [s is None for s in tensors["memory_snapshots"]] == [
        s is None for s in lists["memory_snapshots"]
    ]


@pytest.mark.parametrize("seed", range(20))
def test_predictor_hardly_learns_from_a_flagged_anomaly(seed):
    # The predictor steps with surprise_lr * (1 - gate): a token the gate flags as an anomaly
    # barely changes it, so the same anomaly stays surprising (the next one is not missed).
    # After a constant stream the running scale is small and a far-off value is flagged whatever
    # the seed (after a varied pattern such as 1..5 the predictor may extrapolate to it instead).
    torch.manual_seed(seed)
    layer = TitansMemoryLayer(1, memory_dim=16, hidden_dim=16)
    layer.process_sequence(torch.ones(30, 1))
    anomaly = torch.tensor([50.0])
    ungated = copy.deepcopy(layer.surprise_metric)
    before = layer.surprise_metric(anomaly)
    gate = layer.process_sequence(anomaly.unsqueeze(0))["write_gates"][0]
    after = layer.surprise_metric(anomaly)
    # the same predictor step without the (1 - gate) factor, from the same state
    ungated.update_predictor(
        anomaly, lr=layer.surprise_lr, max_grad_norm=layer.predictor_max_grad_norm
    )
    after_ungated = ungated(anomaly)
    assert gate >= 0.99
    assert after >= 0.95 * before  # seeds 0-19: >= 0.999; ungated: 0.54 to 0.91
    assert after_ungated < after
