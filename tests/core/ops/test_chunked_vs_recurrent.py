"""The chunk-parallel operator equals the token-by-token reference: values, state and gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from titans_memory.core.ops import MemoryOpState, chunked_memory, fresh_op_state, recurrent_memory

DT = torch.float64
N, D, HIDDEN = 2, 4, 8
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _shapes(depth: int) -> list[tuple[int, int]]:
    return [(D, D)] if depth == 1 else [(D, HIDDEN), (HIDDEN, D)]


def _inputs(T: int, depth: int, momentum: bool, forget: bool, seed: int = 0):
    """Leaf tensors: q, k, v, lr, log_retention, log_momentum, initial weights (all requires_grad)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=DT) * scale + shift).requires_grad_()

    # pre-normalisation q, k (the operators expect unit keys: DESIGN section 2)
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


def _op_args(leaves: dict, momentum: bool, forget: bool):
    q = F.normalize(leaves["q"], dim=-1)
    k = F.normalize(leaves["k"], dim=-1)
    lr = 0.03 * torch.sigmoid(leaves["lr"])
    log_ret = (
        F.logsigmoid(leaves["ret"]) if forget else None
    )  # log(1 - alpha), alpha = sigmoid(-ret)
    log_mom = F.logsigmoid(leaves["mom"]) if momentum else None
    return q, k, leaves["v"], lr, log_ret, log_mom


def _functional(y: torch.Tensor, state: MemoryOpState, seed: int = 123) -> torch.Tensor:
    """A random linear functional of everything the operator returns."""
    g = torch.Generator().manual_seed(seed)
    total = (torch.randn(y.shape, generator=g, dtype=DT) * y).sum()
    for t in (*state.weights, *state.momentum, *state.anchor):
        total = total + (torch.randn(t.shape, generator=g, dtype=DT) * t).sum()
    return total


def _run(op, leaves, momentum, forget, chunk_size, activation, state=None):
    q, k, v, lr, log_ret, log_mom = _op_args(leaves, momentum, forget)
    if state is None:
        state = fresh_op_state([leaves[name] for name in sorted(leaves) if name.startswith("w")])
    y, final = op(
        q, k, v, lr, log_ret, log_mom, state, chunk_size=chunk_size, activation=activation
    )
    grads = torch.autograd.grad(
        _functional(y, final), list(leaves.values()), allow_unused=True, materialize_grads=True
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


@pytest.mark.parametrize(("chunk_size", "T", "depth", "momentum", "forget"), GRID)
def test_chunked_equals_recurrent(chunk_size, T, depth, momentum, forget):
    leaves = _inputs(T, depth, momentum, forget)
    activation = "gelu"
    rec = _run(recurrent_memory, leaves, momentum, forget, chunk_size, activation)
    chk = _run(chunked_memory, leaves, momentum, forget, chunk_size, activation)
    _assert_same(rec, chk)
    assert rec[1].offset == T % chunk_size
    # the memory did move, and gradients reach every input
    assert (rec[1].weights[-1] - leaves[f"w{depth - 1}"]).abs().max() > 1e-3
    for name in ("q", "k", "v", "lr", "w0"):
        assert chk[2][name].abs().max() > 0, name


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_chunked_equals_recurrent_other_activations(activation):
    leaves = _inputs(37, 2, True, True, seed=3)
    _assert_same(
        _run(recurrent_memory, leaves, True, True, 8, activation),
        _run(chunked_memory, leaves, True, True, 8, activation),
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


@pytest.mark.parametrize(
    ("chunk_size", "offset", "T", "depth", "momentum", "forget"),
    [
        (16, 5, 3, 2, True, True),  # stays inside the chunk
        (16, 5, 11, 2, True, True),  # ends exactly on the boundary
        (16, 5, 40, 2, True, True),  # finishes the chunk, then whole and partial chunks
        (16, 15, 1, 1, True, False),
        (4, 3, 30, 1, False, True),
        (4, 1, 30, 2, False, False),
        (64, 63, 100, 2, True, True),
        (2, 1, 7, 1, True, True),
    ],
)
def test_chunked_equals_recurrent_from_mid_chunk_state(
    chunk_size, offset, T, depth, momentum, forget
):
    leaves = _inputs(T, depth, momentum, forget, seed=11)
    state = _mid_chunk_state(leaves, depth, offset)
    rec = _run(recurrent_memory, leaves, momentum, forget, chunk_size, "gelu", state)
    chk = _run(chunked_memory, leaves, momentum, forget, chunk_size, "gelu", state)
    _assert_same(rec, chk)
    assert rec[1].offset == (offset + T) % chunk_size
    # the anchor matters: gradients reach it (it is where the first chunk's gradients are taken)
    assert chk[2]["anchor0"].abs().max() > 0
    if momentum:
        assert chk[2]["s0"].abs().max() > 0  # the carried momentum enters the update


def test_empty_sequence_returns_the_state():
    leaves = _inputs(0, 2, True, True)
    q, k, v, lr, log_ret, log_mom = _op_args(leaves, True, True)
    state = _mid_chunk_state(leaves, 2, offset=3)
    for op in (recurrent_memory, chunked_memory):
        y, final = op(q, k, v, lr, log_ret, log_mom, state, chunk_size=8)
        assert y.shape == (N, 0, D)
        assert final.offset == 3
        for a, b in zip(
            (*final.weights, *final.momentum, *final.anchor),
            (*state.weights, *state.momentum, *state.anchor),
            strict=True,
        ):
            assert torch.equal(a, b)


def test_chunked_under_no_grad_equals_with_grad_and_leaves_inputs_alone():
    """The inference path overwrites buffers in place: results must not change, inputs must not be touched."""
    for momentum in (True, False):
        leaves = _inputs(70, 2, momentum, True, seed=2)
        state = _mid_chunk_state(leaves, 2, offset=6)
        before = [t.detach().clone() for t in (*state.weights, *state.momentum, *state.anchor)]
        args = _op_args(leaves, momentum, True)
        y, final = chunked_memory(*args, state, chunk_size=16)
        with torch.no_grad():
            args_ng = [None if a is None else a.detach() for a in args]
            state_ng = MemoryOpState(
                *(tuple(t.detach() for t in ts) for ts in state[:3]), state.offset
            )
            y_ng, final_ng = chunked_memory(*args_ng, state_ng, chunk_size=16)
        torch.testing.assert_close(y_ng, y.detach(), rtol=1e-12, atol=1e-12)
        for a, b in zip(
            (*final_ng.weights, *final_ng.momentum, *final_ng.anchor),
            (*final.weights, *final.momentum, *final.anchor),
            strict=True,
        ):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
        after = [t.detach() for t in (*state.weights, *state.momentum, *state.anchor)]
        for a, b in zip(before, after, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("op", [recurrent_memory, chunked_memory])
def test_bad_arguments(op):
    leaves = _inputs(5, 1, True, True)
    q, k, v, lr, log_ret, log_mom = _op_args(leaves, True, True)
    state = fresh_op_state([leaves["w0"]])
    with pytest.raises(ValueError, match="chunk_size"):
        op(q, k, v, lr, log_ret, log_mom, state, chunk_size=0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        op(q, k[:, :4], v, lr, log_ret, log_mom, state, chunk_size=2)
    with pytest.raises(ValueError, match="lr"):
        op(q, k, v, lr[:, :4], log_ret, log_mom, state, chunk_size=2)
    with pytest.raises(ValueError, match="offset"):
        op(q, k, v, lr, log_ret, log_mom, state._replace(offset=2), chunk_size=2)
    with pytest.raises(ValueError, match="state weights"):
        op(q[:1], k[:1], v[:1], lr[:1], log_ret[:1], log_mom[:1], state, chunk_size=2)
