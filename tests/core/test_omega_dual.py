"""The Omega rule's factored chunked operators against the reference and the materialising form
(ATLAS, arXiv 2505.23735; docs/atlas.md, section 3).

``omega_dual`` (OmegaNet in the dual form: no per-token weight or gradient formed) and
``omega_atlas`` (Atlas' per-token momenta from the gradient factors) must give the numbers of the
token-by-token reference (``recurrent_memory`` running ``OmegaRule.token_step``) and of the first
chunked form (``omega_materialised``): outputs, final state with the carried window, and
gradients w.r.t. every input and the initial state, in float64, to 1e-10.
"""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.config import MemoryConfig
from titans_memory.core.newton_schulz import MUON_COEFFICIENTS, newton_schulz
from titans_memory.core.omega import omega_atlas, omega_chunked, omega_dual, omega_materialised
from titans_memory.core.ops import MemoryInputs, recurrent_memory
from titans_memory.core.rule import UpdateRule

from .test_atlas_ops import _assert_close, _case, _flat, _leaves, _rule, _split

D = torch.float64

# (window c, chunk b, depth, objective, step bound): c = 1, 3, 16 and c > b; b = 1, 4, 16; the
# biases l2, lp, Huber (a per-token parameter carried with the tail) and the dot product. The
# step bound keeps the l2 and lp memories of this data finite over 37 tokens (without it some grow
# to 1e11, where 1e-10 is no longer a float64 rounding error); Huber's error is bounded by itself.
CASES = [
    (1, 4, 2, "l2", 1.0),
    (3, 1, 2, "l2", 0.5),
    (3, 16, 1, "huber", None),
    (16, 4, 2, "l2", 0.5),
    (16, 16, 2, "lp", 1.0),
    (16, 4, 1, "huber", 0.5),
    (20, 4, 2, "huber", None),
    (5, 16, 2, "l2", 1.0),
    (7, 4, 1, "dot", None),
]


def _grads(outputs: list[torch.Tensor], leaves: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Gradients of one random scalar of ``outputs`` w.r.t. ``leaves`` (zeros where unused)."""
    gen = torch.Generator().manual_seed(seed)
    probe = sum((torch.randn(t.shape, generator=gen, dtype=D) * t).sum() for t in outputs)
    grads = torch.autograd.grad(probe, leaves, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]


@pytest.mark.parametrize("muon", [False, True])
@pytest.mark.parametrize(("window", "chunk", "depth", "objective", "tau"), CASES)
def test_factored_equals_reference_and_materialised(window, chunk, depth, objective, tau, muon):
    """Odd length (37: several chunks and a partial one), a random split, float64, 1e-10."""
    rule = _rule(
        omega_window=window, chunk_size=chunk, depth=depth, objective=objective, max_step_norm=tau,
        muon=muon, ns_steps=3,
    )
    gen = torch.Generator().manual_seed(window * 13 + chunk)
    cuts = sorted(torch.randperm(36, generator=gen)[:3].add(1).tolist())
    _three_forms_agree(rule, muon, T=37, seed=window + chunk, cuts=cuts, grad_seed=window)


def _three_forms_agree(rule, muon: bool, T: int, seed: int, cuts: list[int], grad_seed: int) -> None:
    """The reference, the materialising form and the factored form (split at ``cuts``) agree on
    outputs, final state and the gradients of every input and the initial state, to 1e-10."""
    inputs, state = _case(rule, T=T, seed=seed, grad=True)
    fast = omega_atlas if muon else omega_dual
    results = {
        "reference": _flat(*recurrent_memory(inputs, state, rule)),
        "materialised": _flat(*_split(omega_materialised, inputs, state, rule, cuts)),
        "factored": _flat(*_split(fast, inputs, state, rule, cuts)),
    }
    _assert_close(results["reference"], results["factored"], 1e-10)
    _assert_close(results["materialised"], results["factored"], 1e-10)
    leaves = [x for x in (*_leaves(inputs), *state.weights) if x is not None and x.requires_grad]
    grads = {name: _grads(out, leaves, seed=grad_seed) for name, out in results.items()}
    _assert_close(grads["reference"], grads["factored"], 1e-10)
    _assert_close(grads["materialised"], grads["factored"], 1e-10)


@pytest.mark.parametrize("muon", [False, True])
@pytest.mark.parametrize(("momentum", "forget"), [(False, True), (True, False), (False, False)])
def test_gates_off(momentum, forget, muon):
    """Without momentum (the state's momentum is the last step) or without forgetting."""
    rule = _rule(omega_window=4, chunk_size=3, momentum=momentum, forget=forget, muon=muon, ns_steps=2)
    inputs, state = _case(rule, T=11, grad=True)
    fast = omega_atlas if muon else omega_dual
    ref = _flat(*recurrent_memory(inputs, state, rule))
    out = _flat(*_split(fast, inputs, state, rule, [2, 7]))
    _assert_close(ref, out, 1e-10)
    leaves = [x for x in (*_leaves(inputs), *state.weights) if x is not None and x.requires_grad]
    _assert_close(_grads(ref, leaves, 3), _grads(out, leaves, 3), 1e-10)


@pytest.mark.parametrize("muon", [False, True])
def test_write_only_equals_the_read_write_state(muon):
    rule = _rule(omega_window=6, chunk_size=4, muon=muon, ns_steps=2)
    inputs, state = _case(rule, T=15)
    fast = omega_atlas if muon else omega_dual
    _, s_full = fast(inputs, state, rule)
    _, s_write = _split(fast, inputs._replace(q=None), state, rule, [5])
    _assert_close(_flat(None, s_full), _flat(None, s_write), 1e-12)


@pytest.mark.parametrize("muon", [False, True])
@pytest.mark.parametrize(("window", "chunk", "depth"), [(1, 4, 2), (3, 4, 1), (3, 1, 2), (16, 4, 2), (6, 4, 1)])
def test_feature_memory_factored_equals_reference_and_materialised(window, chunk, depth, muon):
    """The polynomial feature memory (p = 2: keys and queries ``d_phi`` wide, the skip past the
    constant feature) in the dual form: outputs, state and gradients, float64, 1e-10."""
    rule = _rule(
        omega_window=window, chunk_size=chunk, depth=depth, feature_degree=2, max_step_norm=1.0, muon=muon,
        ns_steps=2,
    )
    _three_forms_agree(rule, muon, T=23, seed=window + 7 * chunk, cuts=[5, 14], grad_seed=window)


def test_chunked_picks_the_factored_forms():
    """``omega_chunked`` is ``omega_dual`` for OmegaNet and ``omega_atlas`` for Atlas on an MLP
    memory and on the feature memory (bit for bit); ``omega_materialised`` on a memory without a
    dual form."""
    for muon, fast in ((False, omega_dual), (True, omega_atlas)):
        for features in (None, 2):
            rule = _rule(omega_window=5, chunk_size=4, muon=muon, feature_degree=features)
            inputs, state = _case(rule, T=9)
            for a, b in zip(_flat(*omega_chunked(inputs, state, rule)), _flat(*fast(inputs, state, rule)), strict=True):
                assert torch.equal(a, b)


def test_wrong_algorithm_is_a_clear_error():
    omeganet, atlas = _rule(omega_window=3, chunk_size=4), _rule(omega_window=3, chunk_size=4, muon=True)
    inputs, state = _case(omeganet, T=5)
    with pytest.raises(TypeError, match="omega_atlas runs atlas"):
        omega_atlas(inputs, state, omeganet)
    with pytest.raises(TypeError, match="omega_dual runs omeganet"):
        omega_dual(inputs, state, atlas)
    titans = UpdateRule.from_config(MemoryConfig(dim=6, heads=1, depth=2, expansion=2.0, input_norm=False, chunk_size=4))
    plain = MemoryInputs(*inputs[:7], None, None)
    with pytest.raises(TypeError, match="runs the omeganet and atlas algorithms"):
        omega_dual(plain, state._replace(carried={}), titans)


def test_autocast_runs_in_the_autocast_dtype_and_keeps_the_state_dtype():
    """Under bfloat16 autocast the dual form computes in bfloat16 and hands the state back in
    float32; its reads stay within bfloat16's rounding of the float32 ones."""
    rule = _rule(omega_window=4, chunk_size=4)
    inputs, state = _case(rule, T=12)
    f32 = MemoryInputs(*(x.float() if isinstance(x, torch.Tensor) else x for x in inputs[:8]),
                       {k: g.float() for k, g in inputs.extra_gates.items()})
    state32 = state._replace(
        weights=tuple(w.float() for w in state.weights), momentum=tuple(m.float() for m in state.momentum),
        anchor=tuple(a.float() for a in state.anchor), carried={k: c.float() for k, c in state.carried.items()},
    )
    y32, _ = omega_dual(f32, state32, rule)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16, s16 = omega_dual(f32, state32, rule)
    assert y16.dtype == torch.bfloat16
    assert all(w.dtype == torch.float32 for w in (*s16.weights, *s16.momentum, *s16.carried.values()))
    err = (y16.float() - y32).abs().max().item()
    assert err < 0.05 * y32.abs().max().item(), err


@pytest.mark.parametrize("shape", [(6, 6), (3, 5, 8), (2, 4, 7, 3), (4, 9, 2)])
@pytest.mark.parametrize("steps", [0, 1, 5])
def test_newton_schulz_hand_backward_equals_autograd(shape, steps):
    """``newton_schulz``'s steps run as one node with a hand-written backward: its values equal
    the quintic written out plainly, and its gradients autograd's through that, float64, 1e-12."""
    a, b, c = MUON_COEFFICIENTS

    def plain(g):
        tall = g.shape[-2] > g.shape[-1]
        x = g.transpose(-1, -2) if tall else g
        x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
        for _ in range(steps):
            gram = x @ x.transpose(-1, -2)
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x.transpose(-1, -2) if tall else x

    gen = torch.Generator().manual_seed(steps + len(shape))
    g = torch.randn(*shape, dtype=D, generator=gen, requires_grad=True)
    probe = torch.randn(*shape, dtype=D, generator=gen)
    fast, ref = newton_schulz(g, steps), plain(g)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    (g_fast,) = torch.autograd.grad((probe * fast).sum(), g)
    (g_ref,) = torch.autograd.grad((probe * ref).sum(), g)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-12, rtol=0)
