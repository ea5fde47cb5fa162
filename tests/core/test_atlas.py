"""ATLAS in NeuralMemory (arXiv 2505.23735; docs/atlas.md): presets, exactness of the chunked form
against the reference at module level (outputs, state, parameter gradients), streaming,
Titans left untouched, the state's window tail, bad input, the stability bound with Muon."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import MemoryConfig, MemoryState, NeuralMemory, preset
from titans_memory.core.stability import stability_envelope

D = torch.float64


def _mem(seed=0, **kw) -> NeuralMemory:
    torch.manual_seed(seed)
    base = dict(dim=12, heads=2, expansion=2.0, chunk_size=4)
    return NeuralMemory(MemoryConfig(**{**base, **kw})).to(D)


def _x(B=2, T=15, dim=12, seed=1):
    return torch.randn(B, T, dim, dtype=D, generator=torch.Generator().manual_seed(seed))


def _state_tensors(s: MemoryState):
    return list(s.tensors().values())


@pytest.mark.parametrize(
    "kw",
    [
        dict(algorithm="atlas", omega_window=1),
        dict(algorithm="omeganet", omega_window=3),
        dict(algorithm="atlas", omega_window=3, ns_steps=2),
        dict(algorithm="atlas", omega_window=16),
        dict(algorithm="omeganet", omega_window=6, chunk_size=4, depth=1),
        dict(algorithm="omeganet", omega_window=3, feature_degree=2),
        dict(algorithm="atlas", omega_window=3, feature_degree=2, depth=1),
        dict(algorithm="omeganet", omega_window=4, objective="huber"),
    ],
)
def test_chunked_equals_reference_in_the_module(kw):
    """Outputs, final state and the gradients of every parameter, float64, 1e-10."""
    mem, x = _mem(**kw), _x()
    y_c, s_c = mem(x)
    y_r, s_r = mem(x, backend="recurrent")
    torch.testing.assert_close(y_c, y_r, atol=1e-10, rtol=0)
    for a, b in zip(_state_tensors(s_c), _state_tensors(s_r), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    params = [p for p in mem.parameters() if p.requires_grad]
    probe = torch.randn(y_c.shape, dtype=D, generator=torch.Generator().manual_seed(5))
    w_probe = [torch.randn(w.shape, dtype=D, generator=torch.Generator().manual_seed(6)) for w in s_c.weights]

    def loss(y, s):
        return (probe * y).sum() + sum((p * w).sum() for p, w in zip(w_probe, s.weights, strict=True))

    g_c = torch.autograd.grad(loss(y_c, s_c), params, allow_unused=True)
    g_r = torch.autograd.grad(loss(y_r, s_r), params, allow_unused=True)
    for a, b in zip(g_c, g_r, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["omeganet", "atlas"])
def test_presets_stream_for_any_split(name):
    mem = NeuralMemory(preset(name, dim=12, heads=2, chunk_size=5, expansion=2.0)).to(D)
    x = _x(T=23)
    y, s = mem(x)
    assert s.carried["omega_keys"].shape == (2, 2, 15, 6)  # c - 1 = 15 keys of every stream and head
    for cuts in ([1], [4, 9, 10], [22]):
        ys, state, lo = [], None, 0
        for hi in [*cuts, 23]:
            yi, state = mem(x[:, lo:hi], state)
            ys.append(yi)
            lo = hi
        torch.testing.assert_close(torch.cat(ys, 1), y, atol=1e-12, rtol=0)
        for a, b in zip(_state_tensors(state), _state_tensors(s), strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_store_then_retrieve_matches_forward():
    mem, x = _mem(algorithm="atlas", omega_window=3, feature_degree=2), _x()
    _, s_f = mem(x)
    s_s = mem.store(x)
    for name in ("weights", "momentum"):
        for a, b in zip(getattr(s_f, name), getattr(s_s, name), strict=True):
            torch.testing.assert_close(a, b, atol=1e-13, rtol=0)
    for name in s_f.carried:
        torch.testing.assert_close(s_f.carried[name], s_s.carried[name], atol=1e-13, rtol=0)
    h, _ = mem.retrieve(x[:, :3], s_s)
    assert h.shape == (2, 3, 12)


def test_titans_is_untouched_when_atlas_is_off():
    """feature_degree=None, omega_window=1, no ATLAS algorithm: the same parameters (a pre-ATLAS
    checkpoint loads), the Titans algorithm and operator, nothing carried; the same numbers bit for bit."""
    mem = _mem()
    assert type(mem.rule.algorithm).__name__ == "GradientDescent"
    assert mem.rule.algorithm.operator("chunked") is None
    assert mem.to_gates.out_features == 3 * 2  # lr, momentum, forget: no gamma row
    assert mem.init_state(1).carried == {}
    explicit = _mem(omega_window=1, feature_degree=None, ns_steps=5)
    x = _x()
    y1, s1 = mem(x)
    y2, s2 = explicit(x)
    assert torch.equal(y1, y2) and all(torch.equal(a, b) for a, b in zip(s1.weights, s2.weights, strict=True))


def test_state_window_saves_and_loads(tmp_path):
    mem, x = _mem(algorithm="omeganet", omega_window=4, objective="huber"), _x()
    _, s = mem(x[:, :7])
    assert len(s.carried) == 4  # keys, values, gammas, and Huber's delta
    s.save(tmp_path / "s.safetensors")
    back = MemoryState.load(tmp_path / "s.safetensors")
    y_a, _ = mem(x[:, 7:], s)
    y_b, _ = mem(x[:, 7:], back)
    assert torch.equal(y_a, y_b)


def test_bad_input_and_mismatched_state():
    with pytest.raises(ValueError, match="omega_window"):
        NeuralMemory(MemoryConfig(dim=8, algorithm="omeganet", omega_window=0))
    with pytest.raises(ValueError, match="feature_degree"):
        NeuralMemory(MemoryConfig(dim=8, algorithm="omeganet", feature_degree=-2))
    with pytest.raises(ValueError, match="Newton-Schulz"):
        NeuralMemory(MemoryConfig(dim=8, algorithm="atlas", ns_steps=-1))
    with pytest.raises(ValueError, match="unknown algorithm"):
        MemoryConfig(dim=8, algorithm="omega")
    a, b = _mem(algorithm="omeganet", omega_window=3), _mem(algorithm="omeganet", omega_window=5)
    _, s = a(_x(T=3))
    with pytest.raises(ValueError, match="carried"):
        b(_x(T=3), s)
    with pytest.raises(ValueError, match="carried"):
        _mem()(_x(T=3), s)


@pytest.mark.parametrize("name", ["omeganet", "atlas"])
def test_stability_envelope_small(name):
    """Every stream finite and under the documented weight-norm bound (Muon's bound included),
    inputs from 1e-3 to 1e6 with bursts, gates at init and forced to their limits."""
    cfg = preset(name, dim=16, heads=2, chunk_size=16)
    rows = stability_envelope(name, cfg, tokens=96, scales=(1e-3, 1.0, 1e6), bursts=((4, 1e6),), piece=40)
    assert rows and all(r.finite for r in rows)
    assert max(r.max_ratio for r in rows) <= 1.0
