"""The learning-algorithm registry: the built-ins resolve from the config's flags, naming them
changes nothing, and bad names, flags and inputs get clear errors."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import ALGORITHMS, GradientDescent, MemoryConfig, NeuralMemory, preset
from titans_memory.core.algorithms import algorithm_name
from titans_memory.core.ops import MemoryInputs, fresh_op_state, get_backend
from titans_memory.core.rule import UpdateRule

DT = torch.float64


@pytest.mark.parametrize(
    ("name", "algorithm", "flags"),
    [
        ("titans", "titans", (True, True, False)),
        ("moneta", "no_momentum", (False, True, False)),
        ("deltanet", "no_momentum", (False, False, False)),
        ("gated_deltanet", "decayed_gradient", (False, True, True)),
    ],
)
def test_the_built_ins_resolve_from_the_flags(name, algorithm, flags):
    cfg = preset(name, dim=8)
    assert algorithm_name(cfg) == algorithm
    rule = UpdateRule.from_config(cfg)
    assert isinstance(rule.algorithm, GradientDescent) and rule.algorithm.name == algorithm
    assert (rule.momentum, rule.forget, rule.decayed_gradient) == flags
    assert list(ALGORITHMS)[:3] == ["titans", "no_momentum", "decayed_gradient"]


@pytest.mark.parametrize("overrides", [{}, {"momentum": False}, {"decayed_gradient": True}])
def test_naming_the_algorithm_changes_nothing(overrides):
    x = torch.randn(2, 11, 8, generator=torch.Generator().manual_seed(0), dtype=DT)
    outs = []
    for explicit in (False, True):
        cfg = MemoryConfig(dim=8, heads=2, chunk_size=4, **overrides)
        if explicit:
            cfg = cfg.replace(algorithm=algorithm_name(cfg))
        torch.manual_seed(0)
        mem = NeuralMemory(cfg).to(DT)
        outs.append(mem(x))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for a, b in zip(outs[0][1].tensors().values(), outs[1][1].tensors().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_names_flags_and_inputs():
    with pytest.raises(TypeError, match=r"MemoryConfig.algorithm must be a string or None, got 3"):
        MemoryConfig(algorithm=3)
    with pytest.raises(ValueError, match=r"algorithm='no_momentum' needs momentum=False"):
        MemoryConfig(algorithm="no_momentum")
    with pytest.raises(ValueError, match=r"algorithm='decayed_gradient' needs forget=True and decayed_gradient=True"):
        MemoryConfig(algorithm="decayed_gradient")
    rule = UpdateRule.from_config(MemoryConfig(dim=4, depth=1, chunk_size=2))
    with pytest.raises(TypeError, match=r"UpdateRule.algorithm must be a LearningAlgorithm, got str"):
        rule.replace(algorithm="titans")
    assert rule.replace(momentum=False).algorithm == GradientDescent(momentum=False, forget=True)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 3, 4, generator=g, dtype=DT) for _ in range(3))
    gates = torch.full((1, 3), -0.1, dtype=DT)
    inputs = MemoryInputs(q, k, v, gates.exp(), gates, gates, extra_gates={"lookahead": gates})
    state = fresh_op_state([torch.zeros(1, 4, 4, dtype=DT)], rule)
    for backend in ("recurrent", "chunked"):
        with pytest.raises(ValueError, match=r"inputs.extra_gates must hold the gates \[\] of the learning algorithm 'titans', got \['lookahead'\]"):
            get_backend(backend)(inputs, state, rule)
        with pytest.raises(ValueError, match=r"state.carried must hold \[\] .*, got \['tail'\]"):
            get_backend(backend)(inputs._replace(extra_gates=None), state._replace(carried={"tail": gates}), rule)


@pytest.mark.parametrize(("momentum", "forget"), [(True, True), (True, False), (False, True), (False, False)])
def test_gradient_descent_and_omega_share_their_momentum_and_forget_gates(momentum, forget):
    """One declaration (``MomentumForgetGates``) of eta and alpha serves both algorithms; the Omega
    rule adds its window weight after them and still claims no chunk coefficients."""
    from titans_memory.core.algorithms import MomentumForgetGates, OmegaRule
    from titans_memory.core.algorithms.omega import GAMMA

    gd = GradientDescent(momentum=momentum, forget=forget, momentum_init=0.8, forget_init=0.01)
    omega = OmegaRule(window=3, momentum=momentum, forget=forget, momentum_init=0.8, forget_init=0.01)
    expected = [name for name, on in (("momentum", momentum), ("forget", forget)) if on]
    assert isinstance(gd, MomentumForgetGates) and isinstance(omega, MomentumForgetGates)
    assert [(g.name, g.init) for g in gd.gates()] == [(n, 0.8 if n == "momentum" else 0.01) for n in expected]
    assert [g.name for g in omega.gates()] == [*expected, GAMMA]
    assert (gd.has_momentum, gd.has_forget) == (omega.has_momentum, omega.has_forget) == (momentum, forget)
    assert gd.has_chunked_form and not omega.has_chunked_form
    with pytest.raises(NotImplementedError, match="no chunk-parallel form"):
        omega.chunk_coefficients(torch.ones(1, 2), None, None, {}, DT)
