"""The chunk-parallel operator equals the token-by-token reference: values, state and gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from titans_memory.core.config import MemoryConfig
from titans_memory.core.ops import BACKENDS, REFERENCE, MemoryInputs, MemoryOpState, fresh_op_state
from titans_memory.core.rule import UpdateRule

DT = torch.float64
N, D, HIDDEN = 2, 4, 8
TOL = {"rtol": 1e-10, "atol": 1e-10}
# every registered fast path is compared with the reference
FAST = [name for name in BACKENDS if name != REFERENCE]
reference = BACKENDS[REFERENCE]


def _rule(depth: int, momentum: bool, forget: bool, chunk_size: int, activation: str = "gelu",
          decayed_gradient: bool = False, tau: float | None = 10.0) -> UpdateRule:
    cfg = MemoryConfig(dim=D, depth=depth, expansion=HIDDEN / D, activation=activation, momentum=momentum,
                       forget=forget, chunk_size=chunk_size, decayed_gradient=decayed_gradient, max_step_norm=tau)
    return UpdateRule.from_config(cfg)


def _shapes(depth: int) -> list[tuple[int, int]]:
    return [(D, D)] if depth == 1 else [(D, HIDDEN), (HIDDEN, D)]


def _inputs(T: int, depth: int, momentum: bool, forget: bool, seed: int = 0):
    """Leaf tensors: q, k, v, lr, log_retention, log_momentum, initial weights (all requires_grad)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=DT) * scale + shift).requires_grad_()

    # pre-normalisation q, k (the operators expect unit keys: docs/design.md)
    q_raw, k_raw, v = rnd(N, T, D), rnd(N, T, D), rnd(N, T, D)
    lr_raw = rnd(N, T, scale=0.5)
    # gates in a stable regime (a diverging memory would make the comparison meaningless):
    # theta ~ 0.015, retention 1 - alpha ~ 0.99, eta ~ 0.73
    ret_raw = rnd(N, T, scale=0.5, shift=4.5) if forget else None
    mom_raw = rnd(N, T, scale=0.5, shift=1.0) if momentum else None
    w0 = [rnd(N, a, b, scale=a**-0.5) for a, b in _shapes(depth)]
    if depth == 1:
        with torch.no_grad():
            w0[0].mul_(0.3)
    leaves = {"q": q_raw, "k": k_raw, "v": v, "lr": lr_raw, "ret": ret_raw, "mom": mom_raw}
    leaves.update({f"w{i}": w for i, w in enumerate(w0)})
    return {name: t for name, t in leaves.items() if t is not None}


def _op_inputs(leaves: dict, momentum: bool, forget: bool, reads: bool = True) -> MemoryInputs:
    q = F.normalize(leaves["q"], dim=-1)
    k = F.normalize(leaves["k"], dim=-1)
    lr = 0.03 * torch.sigmoid(leaves["lr"])
    log_ret = F.logsigmoid(leaves["ret"]) if forget else None  # log(1 - alpha), alpha = sigmoid(-ret)
    log_mom = F.logsigmoid(leaves["mom"]) if momentum else None
    return MemoryInputs(q if reads else None, k, leaves["v"], lr, log_ret, log_mom)


def _state_tensors(state: MemoryOpState) -> list[torch.Tensor]:
    return [*state.weights, *state.momentum, *state.anchor]


def _run(op, leaves, momentum, forget, chunk_size, activation, state=None, functional=None, decayed=False,
         tau=10.0):
    rule = _rule(sum(name.startswith("w") for name in leaves), momentum, forget, chunk_size, activation, decayed, tau)
    if state is None:
        state = fresh_op_state([leaves[name] for name in sorted(leaves) if name.startswith("w")])
    y, final = op(_op_inputs(leaves, momentum, forget), state, rule)
    grads = torch.autograd.grad(
        functional([y, *_state_tensors(final)]), list(leaves.values()), allow_unused=True, materialize_grads=True
    )
    return y, final, dict(zip(leaves, grads, strict=True))


def _assert_same(run_a, run_b):
    y_a, s_a, g_a = run_a
    y_b, s_b, g_b = run_b
    torch.testing.assert_close(y_a, y_b, **TOL)
    assert s_a.offset == s_b.offset
    for name in ("weights", "momentum", "anchor"):
        for a, b in zip(getattr(s_a, name), getattr(s_b, name), strict=True):
            torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"state.{name}: {m}")
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        torch.testing.assert_close(
            g_a[name], g_b[name], **TOL, msg=lambda m, name=name: f"d/d{name}: {m}"
        )


# Full grid of chunk sizes x lengths at the richest config (depth 2, momentum, forget) ...
GRID = [(c, t, 2, True, True) for c, t in itertools.product([1, 2, 16, 64], [1, 7, 63, 100, 257])]
# ... and every depth x momentum x forget combination at a few chunk/length pairs.
GRID += [
    (c, t, depth, mom, fgt)
    for (c, t), depth, mom, fgt in itertools.product(
        [(1, 7), (16, 63), (64, 100), (2, 257)], [1, 2], [True, False], [True, False]
    )
    if not (depth == 2 and mom and fgt)
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("chunk_size", "T", "depth", "momentum", "forget"), GRID)
def test_fast_path_equals_reference(backend, chunk_size, T, depth, momentum, forget, random_functional):
    leaves = _inputs(T, depth, momentum, forget)
    activation = "gelu"
    rec = _run(reference, leaves, momentum, forget, chunk_size, activation, functional=random_functional)
    chk = _run(BACKENDS[backend], leaves, momentum, forget, chunk_size, activation, functional=random_functional)
    _assert_same(rec, chk)
    assert rec[1].offset == T % chunk_size
    # the memory did move, and gradients reach every input
    assert (rec[1].weights[-1] - leaves[f"w{depth - 1}"]).abs().max() > 1e-3
    for name in ("q", "k", "v", "lr", "w0"):
        assert chk[2][name].abs().max() > 0, name


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("chunk_size", "T", "depth", "momentum", "forget"), GRID[::4])
@pytest.mark.parametrize("tau", [None, 0.5], ids=["unbounded", "bound-binds"])
def test_fast_path_equals_reference_with_and_without_the_step_bound(
    backend, chunk_size, T, depth, momentum, forget, tau, random_functional
):
    leaves = _inputs(T, depth, momentum, forget, seed=21)
    rec = _run(reference, leaves, momentum, forget, chunk_size, "gelu", functional=random_functional, tau=tau)
    chk = _run(BACKENDS[backend], leaves, momentum, forget, chunk_size, "gelu", functional=random_functional, tau=tau)
    _assert_same(rec, chk)
    if tau is not None:  # the bound really acts: without it the state differs
        free = _run(reference, leaves, momentum, forget, chunk_size, "gelu", functional=random_functional, tau=None)
        assert max((a - b).abs().max() for a, b in zip(free[1].weights, rec[1].weights, strict=True)) > 1e-6


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_fast_path_equals_reference_other_activations(backend, activation, random_functional):
    leaves = _inputs(37, 2, True, True, seed=3)
    _assert_same(
        _run(reference, leaves, True, True, 8, activation, functional=random_functional),
        _run(BACKENDS[backend], leaves, True, True, 8, activation, functional=random_functional),
    )


def _mid_chunk_state(leaves: dict, depth: int, offset: int, seed: int = 5) -> MemoryOpState:
    """A state in the middle of a chunk: anchor != weights, non-zero momentum, all differentiable."""
    g = torch.Generator().manual_seed(seed)
    ws, ms, anchors = [], [], []
    for i, (a, b) in enumerate(_shapes(depth)):
        w = leaves[f"w{i}"]
        m = (torch.randn(N, a, b, generator=g, dtype=DT) * 0.05).requires_grad_()
        anc = (w.detach() + torch.randn(N, a, b, generator=g, dtype=DT) * 0.1).requires_grad_()
        leaves[f"s{i}"], leaves[f"anchor{i}"] = m, anc
        ws.append(w)
        ms.append(m)
        anchors.append(anc)
    return MemoryOpState(tuple(ws), tuple(ms), tuple(anchors), offset)


MID_CHUNK = [
    (16, 5, 3, 2, True, True),  # stays inside the chunk
    (16, 5, 11, 2, True, True),  # ends exactly on the boundary
    (16, 5, 40, 2, True, True),  # finishes the chunk, then whole and partial chunks
    (16, 15, 1, 1, True, False),
    (4, 3, 30, 1, False, True),
    (4, 1, 30, 2, False, False),
    (64, 63, 100, 2, True, True),
    (2, 1, 7, 1, True, True),
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(
    ("chunk_size", "offset", "T", "depth", "momentum", "forget", "decayed"),
    # every case, and again with the gradient at the decayed memory where the rule forgets
    [(*case, False) for case in MID_CHUNK] + [(*case, True) for case in MID_CHUNK if case[-1]],
)
def test_fast_path_equals_reference_from_mid_chunk_state(
    backend, chunk_size, offset, T, depth, momentum, forget, decayed, random_functional
):
    leaves = _inputs(T, depth, momentum, forget, seed=11)
    state = _mid_chunk_state(leaves, depth, offset)
    rec = _run(reference, leaves, momentum, forget, chunk_size, "gelu", state, random_functional, decayed)
    chk = _run(BACKENDS[backend], leaves, momentum, forget, chunk_size, "gelu", state, random_functional, decayed)
    _assert_same(rec, chk)
    assert rec[1].offset == (offset + T) % chunk_size
    # the anchor matters: gradients reach it (it is where the first chunk's gradients are taken)
    assert chk[2]["anchor0"].abs().max() > 0
    if momentum:
        assert chk[2]["s0"].abs().max() > 0  # the carried momentum enters the update


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize(("chunk_size", "offset", "T", "depth", "momentum", "forget"), MID_CHUNK[:6])
def test_write_only_gives_the_state_of_read_and_write(
    backend, chunk_size, offset, T, depth, momentum, forget, random_functional
):
    """``q = None``: no reads, the same final state as the fused read-and-write, gradients included."""
    leaves = _inputs(T, depth, momentum, forget, seed=13)
    state = _mid_chunk_state(leaves, depth, offset)
    rule = _rule(depth, momentum, forget, chunk_size)
    op = BACKENDS[backend]
    y, both = op(_op_inputs(leaves, momentum, forget), state, rule)
    y_none, write = op(_op_inputs(leaves, momentum, forget, reads=False), state, rule)
    assert y_none is None and y.shape == (N, T, D)
    assert write.offset == both.offset
    names = [name for name in leaves if name != "q"]  # without reads q plays no part
    g_both = torch.autograd.grad(random_functional(_state_tensors(both)), [leaves[n] for n in names],
                                 allow_unused=True, materialize_grads=True)
    g_write = torch.autograd.grad(random_functional(_state_tensors(write)), [leaves[n] for n in names],
                                  allow_unused=True, materialize_grads=True)
    for a, b in zip(_state_tensors(both), _state_tensors(write), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    for name, a, b in zip(names, g_both, g_write, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"d/d{n}: {m}")
    assert g_write[names.index("k")].abs().max() > 0


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_empty_sequence_returns_the_state(backend):
    leaves = _inputs(0, 2, True, True)
    state = _mid_chunk_state(leaves, 2, offset=3)
    y, final = BACKENDS[backend](_op_inputs(leaves, True, True), state, _rule(2, True, True, 8))
    assert y.shape == (N, 0, D)
    assert final.offset == 3
    for a, b in zip(_state_tensors(final), _state_tensors(state), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", FAST)
def test_fast_path_under_no_grad_equals_with_grad_and_leaves_inputs_alone(backend):
    """The inference path overwrites buffers in place: results must not change, inputs must not be touched."""
    op = BACKENDS[backend]
    for momentum in (True, False):
        rule = _rule(2, momentum, True, 16)
        for reads in (True, False):
            leaves = _inputs(70, 2, momentum, True, seed=2)
            state = _mid_chunk_state(leaves, 2, offset=6)
            before = [t.detach().clone() for t in _state_tensors(state)]
            inputs = _op_inputs(leaves, momentum, True, reads=reads)
            y, final = op(inputs, state, rule)
            with torch.no_grad():
                inputs_ng = MemoryInputs(*(None if a is None else a.detach() for a in inputs))
                state_ng = MemoryOpState(*(tuple(t.detach() for t in ts) for ts in state[:3]), state.offset)
                y_ng, final_ng = op(inputs_ng, state_ng, rule)
            if reads:
                torch.testing.assert_close(y_ng, y.detach(), rtol=1e-12, atol=1e-12)
            for a, b in zip(_state_tensors(final_ng), _state_tensors(final), strict=True):
                torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
            after = [t.detach() for t in _state_tensors(state)]
            for a, b in zip(before, after, strict=True):
                assert torch.equal(a, b)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bad_arguments(backend):
    op = BACKENDS[backend]
    leaves = _inputs(5, 1, True, True)
    inputs = _op_inputs(leaves, True, True)
    rule = _rule(1, True, True, 2)
    state = fresh_op_state([leaves["w0"]])
    with pytest.raises(ValueError, match=r"UpdateRule.chunk_size must be an integer >= 1"):
        rule.replace(chunk_size=0)
    with pytest.raises(ValueError, match=r"q, k, v must share one shape \(N, T, d\)"):
        op(inputs._replace(k=inputs.k[:, :4]), state, rule)
    with pytest.raises(ValueError, match=r"inputs.lr must have shape \(N, T\)"):
        op(inputs._replace(lr=inputs.lr[:, :4]), state, rule)
    with pytest.raises(ValueError, match=r"inputs.log_momentum is required by this rule"):
        op(inputs._replace(log_momentum=None), state, rule)
    with pytest.raises(ValueError, match=r"inputs.log_retention must be None for this rule"):
        op(inputs, state, rule.replace(forget=False))
    with pytest.raises(ValueError, match=r"state.offset must be in \[0, chunk_size=2\)"):
        op(inputs, state._replace(offset=2), rule)
    with pytest.raises(ValueError, match=r"state weights \(2, 4, 4\) do not fit inputs with N=1"):
        op(MemoryInputs(*(t[:1] for t in inputs[:6])), state, rule)
    with pytest.raises(TypeError, match=r"inputs must be a MemoryInputs"):
        op(tuple(inputs), state, rule)
