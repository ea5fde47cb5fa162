"""HOPE's memories (Nested Learning, arXiv 2512.24695): reference == chunk-parallel, the paper's reductions.

Every comparison is in float64 at 1e-10: outputs, final state and the gradients of a random
functional of both with respect to the input and every parameter.
"""

from __future__ import annotations

import random

import pytest
import torch

from titans_memory.core.architectures import ResidualMLPMemory
from titans_memory.core.config import MemoryConfig
from titans_memory.core.hope import (
    ContinuumMemory,
    ContinuumState,
    HopeConfig,
    HopeState,
    SelfModifyingMemory,
    SelfModifyingState,
    _decay_write,
    _l2_normalize,
)
from titans_memory.core.objectives import L2Bias
from titans_memory.core.ops.common import MemoryInputs, fresh_op_state
from titans_memory.core.ops.recurrent import recurrent_memory
from titans_memory.core.rule import UpdateRule

TOL = {"rtol": 1e-10, "atol": 1e-10}
DIM, HEADS = 8, 2


def _smt(seed: int = 0, **changes) -> SelfModifyingMemory:
    torch.manual_seed(seed)
    # gates far from their defaults so that every term of eq. 88 weighs in
    cfg = HopeConfig(**{"lr_init": 0.4, "retention_init": 0.8, **changes})
    return SelfModifyingMemory(DIM, HEADS, cfg).double()


def _cms(seed: int = 0, **changes) -> ContinuumMemory:
    torch.manual_seed(seed)
    cfg = HopeConfig(**{"cms_lr": 0.5, **changes})
    module = ContinuumMemory(DIM, cfg).double()
    with torch.no_grad():  # data-dependent rates, not a constant
        module.lr_weight.normal_()
    return module


def _x(batch: int, length: int, seed: int = 1, grad: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, DIM, generator=g, dtype=torch.float64).requires_grad_(grad)


def _state_tensors(state) -> list[torch.Tensor]:
    if isinstance(state, SelfModifyingState):
        return [*state.start, *state.current]
    return [*state.weights, *state.pending]


def _assert_runs_equal(module, a, b, x, random_functional) -> None:
    (ya, sa), (yb, sb) = a, b
    torch.testing.assert_close(ya, yb, **TOL)
    assert sa.position == sb.position
    for ta, tb in zip(_state_tensors(sa), _state_tensors(sb), strict=True):
        torch.testing.assert_close(ta, tb, **TOL)
    params = [x, *module.parameters()]
    ga = torch.autograd.grad(random_functional([ya, *_state_tensors(sa)]), params, allow_unused=True, retain_graph=True)
    gb = torch.autograd.grad(random_functional([yb, *_state_tensors(sb)]), params, allow_unused=True, retain_graph=True)
    for p, u, w in zip(params, ga, gb, strict=True):
        if u is None or w is None:
            assert u is None and w is None and p is not x
            continue
        torch.testing.assert_close(u, w, **TOL)


def _pieces(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    sizes, left = [], length
    while left:
        n = rng.randint(1, left)
        sizes.append(n)
        left -= n
    return sizes


def _feed(fn, x, sizes, state=None):
    outs, start = [], 0
    for n in sizes:
        y, state = fn(x[:, start : start + n], state)
        outs.append(y)
        start += n
    return torch.cat(outs, dim=1), state


# ------------------------------------------------------------------------------------------------
# the self-modifying memory
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 3, 4, 16])
@pytest.mark.parametrize("dgd", [True, False])
@pytest.mark.parametrize("self_modifying", [True, False])
def test_smt_chunked_equals_reference(chunk, dgd, self_modifying, random_functional):
    module = _smt(chunk_size=chunk, dgd=dgd, self_modifying=self_modifying)
    x = _x(2, 13)
    _assert_runs_equal(module, module(x), module.forward_reference(x), x, random_functional)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smt_random_splits_equal_one_reference_call(seed, random_functional):
    module = _smt(seed, chunk_size=4)
    x = _x(2, 17, seed=seed + 5)
    whole = module.forward_reference(x)
    pieces = _feed(module, x, _pieces(17, seed))
    _assert_runs_equal(module, pieces, whole, x, random_functional)
    tokenwise = _feed(module, x, [1] * 17)
    _assert_runs_equal(module, tokenwise, whole, x, random_functional)


def test_smt_chunk_one_is_the_token_rule():
    """chunk_size = 1: every element of token t comes from the memories after token t - 1 (eq. 88)."""
    module = _smt(chunk_size=1)
    x = _x(1, 6, grad=False)
    y, _ = module(x)
    state = None
    for t in range(6):  # one token per call, each call starting from the weights the last left
        y_t, state = module(x[:, t : t + 1], state)
        assert state.start == state.current  # no chunk is ever pending
        torch.testing.assert_close(y_t, y[:, t : t + 1], **TOL)


def test_dgd_step_is_the_proximal_argmin_of_eq_56():
    """One DGD step (retention 1) solves ``min_W 1/2 ||a W + delta'||^2 + 1/(2 eta) ||W - W_t||^2``.

    The paper writes eq. 57 for unit-norm inputs (eta' = eta / (1 + eta)); the general
    Sherman-Morrison step eta' = eta / (1 + eta ||a||^2) is the exact minimiser for any norm.
    Here ``delta'`` is the layer's output gradient: the linear term's target is ``u = -delta``.
    """
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    a = torch.randn(2, 1, 5, generator=g, dtype=torch.float64) * 2.0  # not unit norm
    delta = torch.randn(2, 1, 4, generator=g, dtype=torch.float64)
    eta = torch.tensor([[0.3], [1.7]], dtype=torch.float64)
    new = _decay_write(w0, a, delta, eta, torch.zeros_like(eta), dgd=True)
    # eq. 56 in row convention: W = argmin 1/2 ||a W - u||^2 + 1/(2 eta) ||W - W_0||^2, u = -delta
    # normal equations: (a^T a + I / eta) W = a^T u + W_0 / eta
    lhs = a.transpose(1, 2) @ a + torch.eye(5, dtype=torch.float64) / eta[:, :, None]
    rhs = a.transpose(1, 2) @ (-delta) + w0 / eta[:, :, None]
    torch.testing.assert_close(new, torch.linalg.solve(lhs, rhs), **TOL)


@pytest.mark.parametrize("chunk", [1, 4])
def test_frozen_inner_memories_make_a_titans_memory(chunk):
    """Self-modification off and plain GD: the memory is Titans' (momentum off, forget 1 - alpha).

    ``M_k, M_v, M_eta, M_alpha`` frozen at their learned weights are static projections; the
    written memory then follows Titans eq. 13 with eta = 0 (no momentum), theta_t = eta_t / 2 (the
    library's l2 bias is ``||.||^2``, the gradient in the paper's eq. 93 that of ``1/2 ||.||^2``), alpha_t = 1 - retention,
    gradients at the chunk-start weights (Titans sec. 3.2), and the read ``y_t`` is the memory as
    its chunk started (a retrieval without a write). The library's reference operator checks it.
    """
    module = _smt(chunk_size=chunk, self_modifying=False, dgd=False)
    x = _x(2, 11, grad=False)
    y, state = module(x)
    T = x.shape[1]
    u, q = module._heads(x, module.w_u), module._heads(x, module.w_q)
    init = module._named(module.init_state(2).start)
    k, v, eta, log_ret, _ = module._elements(init, u, q)  # the frozen memories: the same at every chunk
    titans = MemoryConfig(  # the library's Titans memory: l2 bias, decay, momentum off, no step bound
        dim=module.dim, heads=HEADS, depth=2, expansion=module.hidden / module.head_dim, activation="silu",
        chunk_size=chunk, momentum=False, forget=True, max_step_norm=None,
    )
    rule = UpdateRule.from_config(titans)
    arch = rule.architecture
    assert isinstance(arch, ResidualMLPMemory) and isinstance(rule.bias, L2Bias) and not rule.momentum
    op_state = fresh_op_state(init["memory"])
    reads = []
    for s in range(0, T, chunk):  # chunk by chunk: the weights at each chunk start give the reads
        e = min(T, s + chunk)
        reads.append(arch.forward(list(op_state.weights), _l2_normalize(q[:, s:e])))
        inputs = MemoryInputs(None, k[:, s:e], v[:, s:e], eta[:, s:e] / 2, log_ret[:, s:e])
        _, op_state = recurrent_memory(inputs, op_state, rule)
    titans_y = module._merge(torch.cat(reads, dim=1), 2)
    torch.testing.assert_close(y, titans_y, **TOL)
    mem = module._named(state.current)["memory"]
    for ours, theirs in zip(mem, op_state.weights, strict=True):
        torch.testing.assert_close(ours, theirs, **TOL)
    frozen = module._named(state.current)
    for name in ("k", "v", "eta", "alpha"):
        for w, w0 in zip(frozen[name], init[name], strict=True):
            torch.testing.assert_close(w, w0, rtol=0, atol=0)


def test_self_modification_writes_every_inner_memory():
    module = _smt(chunk_size=2)
    _, state = module(_x(1, 4, grad=False))
    init, now = module._named(module.init_state(1).start), module._named(state.current)
    for name in ("k", "v", "eta", "alpha", "memory"):
        assert all((a - b).abs().max() > 1e-6 for a, b in zip(now[name], init[name], strict=True)), name


def test_smt_is_causal_and_batch_independent():
    module = _smt(chunk_size=4)
    x = _x(3, 12, grad=False)
    y, _ = module(x)
    x2 = x.clone()
    x2[:, 7] += 1.0
    x2[1] += 0.5  # another stream changed entirely
    y2, _ = module(x2)
    torch.testing.assert_close(y2[:, :7][[0, 2]], y[:, :7][[0, 2]], rtol=0, atol=0)
    assert (y2[0, 7:] - y[0, 7:]).abs().max() > 1e-6
    torch.testing.assert_close(module(x[[2]])[0], y[[2]], **TOL)


# ------------------------------------------------------------------------------------------------
# the continuum memory system
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunks", [(1,), (3,), (2, 5), (1, 4, 16), (3, 4, 7)])
def test_cms_chunked_equals_reference(chunks, random_functional):
    module = _cms(cms_chunks=chunks)
    x = _x(2, 15)
    _assert_runs_equal(module, module(x), module.forward_reference(x), x, random_functional)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cms_random_splits_equal_one_reference_call(seed, random_functional):
    module = _cms(seed, cms_chunks=(2, 3, 8))
    x = _x(2, 19, seed=seed + 3)
    whole = module.forward_reference(x)
    _assert_runs_equal(module, _feed(module, x, _pieces(19, seed)), whole, x, random_functional)
    _assert_runs_equal(module, _feed(module, x, [1] * 19), whole, x, random_functional)


def test_cms_that_never_updates_is_a_plain_mlp_stack():
    module = _cms(cms_lr=0.0, cms_chunks=(1, 2, 4))
    x = _x(2, 9, grad=False)
    y, state = module(x)
    h = x
    for w1, w2 in zip(module.w1, module.w2, strict=True):
        h = h + torch.nn.functional.silu(h @ w1) @ w2  # MLP(x) = x + W_2 act(W_1 x), eq. 89's form
    torch.testing.assert_close(y, h, **TOL)
    for w, w0 in zip(state.weights, module.init_state(2).weights, strict=True):
        torch.testing.assert_close(w, w0, rtol=0, atol=0)


def test_cms_level_updates_only_at_its_chunk_ends():
    """Eq. 71: level l's weights change after tokens C_l, 2 C_l, ... and nowhere else; a token
    reads the weights of the chunks that ended before it."""
    module = _cms(cms_chunks=(2, 3))
    x = _x(1, 7, grad=False)
    state, seen = None, []
    for t in range(7):
        _, state = module(x[:, t : t + 1], state)
        seen.append(state.weights)
    for level, C in enumerate((2, 3)):
        for t in range(1, 7):
            changed = (seen[t][2 * level] - seen[t - 1][2 * level]).abs().max() > 0
            assert bool(changed) == ((t + 1) % C == 0), (level, t)
    # the output of token 3 is the chain with level 1 after one write (after token 2) and level 2
    # still at its initial weights (its first chunk ends after token 3)
    h = x[:, 3:4]
    y3 = module(x[:, 3:4], _feed(module, x, [3])[1])[0]
    w = seen[2]
    h = h + torch.nn.functional.silu(h @ w[0]) @ w[1]
    h = h + torch.nn.functional.silu(h @ w[2]) @ w[3]
    torch.testing.assert_close(y3, h, **TOL)


def test_cms_is_causal_and_batch_independent():
    module = _cms(cms_chunks=(2, 4))
    x = _x(3, 10, grad=False)
    y, _ = module(x)
    x2 = x.clone()
    x2[:, 5] -= 1.0
    x2[0] *= 2.0
    y2, _ = module(x2)
    torch.testing.assert_close(y2[1:, :5], y[1:, :5], rtol=0, atol=0)
    assert (y2[1, 5:] - y[1, 5:]).abs().max() > 1e-6
    torch.testing.assert_close(module(x[[1]])[0], y[[1]], **TOL)


# ------------------------------------------------------------------------------------------------
# state and config
# ------------------------------------------------------------------------------------------------
def test_state_saves_and_loads(tmp_path):
    smt, cms = _smt(chunk_size=3), _cms(cms_chunks=(2, 5))
    x = _x(2, 12, grad=False)
    _, s1 = smt(x[:, :7])
    _, c1 = cms(x[:, :7])
    path = tmp_path / "hope.safetensors"
    HopeState(s1, c1).save(path)
    loaded = HopeState.load(path)
    assert loaded.smt.position == 7 and loaded.cms.position == 7
    y_smt, _ = smt(x[:, 7:], loaded.smt)
    y_cms, _ = cms(x[:, 7:], loaded.cms)
    torch.testing.assert_close(y_smt, smt(x)[0][:, 7:], **TOL)
    torch.testing.assert_close(y_cms, cms(x)[0][:, 7:], **TOL)


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        HopeState.load(tmp_path)
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        HopeState.load(bad)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"cms_chunks": (4, 4)}, "strictly increasing"),
        ({"cms_chunks": (16, 8)}, "strictly increasing"),
        ({"cms_chunks": (0, 8)}, "a chunk of 0"),
        ({"cms_chunks": ()}, "non-empty tuple"),
        ({"cms_chunks": (2.0,)}, "tuple of integers"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"memory_expansion": 0}, "memory_expansion"),
        ({"cms_lr": -1.0}, "cms_lr"),
        ({"retention_init": 1.0}, "retention_init"),
        ({"activation": "nope"}, "activation"),
    ],
)
def test_config_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        HopeConfig(**changes)


def test_config_round_trip_and_list_chunks():
    cfg = HopeConfig(cms_chunks=[2, 8], dgd=False)
    assert cfg.cms_chunks == (2, 8)
    assert HopeConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="dgd must be a bool"):
        HopeConfig(dgd=1)


def test_bad_inputs_and_states():
    smt, cms = _smt(), _cms()
    with pytest.raises(ValueError, match="shape"):
        smt(torch.zeros(2, 3, DIM + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="streams"):
        smt(_x(3, 2, grad=False), smt.init_state(2))
    with pytest.raises(TypeError, match="ContinuumState"):
        cms(_x(1, 2, grad=False), smt.init_state(1))
    assert isinstance(cms.init_state(1), ContinuumState)


# ------------------------------------------------------------------------------------------------
# DGD in the algorithms registry (the library's matrix memory)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 3])
def test_dgd_algorithm_is_eq_93_for_a_matrix_memory(chunk):
    """``MemoryConfig(algorithm="dgd")``: M_t = (alpha_t I - eta'_t k^T k) M_{t-1} - eta'_t grad l(M_anchor; k_t, v_t)."""
    cfg = MemoryConfig(dim=8, heads=2, depth=1, algorithm="dgd", momentum=False, max_step_norm=None, chunk_size=chunk)
    rule = UpdateRule.from_config(cfg)
    g = torch.Generator().manual_seed(4)
    N, T, d = 3, 7, 4
    k = torch.nn.functional.normalize(torch.randn(N, T, d, generator=g, dtype=torch.float64), dim=-1) * 1.5
    v = torch.randn(N, T, d, generator=g, dtype=torch.float64)
    lr = torch.rand(N, T, generator=g, dtype=torch.float64)
    log_ret = torch.log(torch.rand(N, T, generator=g, dtype=torch.float64) * 0.2 + 0.8)
    w0 = torch.randn(N, d, d, generator=g, dtype=torch.float64) * 0.1
    _, state = recurrent_memory(MemoryInputs(None, k, v, lr, log_ret), fresh_op_state([w0]), rule)
    w = anchor = w0
    for t in range(T):
        if t % chunk == 0:
            anchor = w
        kt = k[:, t : t + 1]  # (N, 1, d)
        grad = kt.transpose(1, 2) @ (2.0 * (kt @ anchor - v[:, t : t + 1]))  # the library's l2: ||.||^2
        eta = lr[:, t, None, None] / (1.0 + lr[:, t, None, None] * (kt * kt).sum(-1, keepdim=True))
        decay = torch.exp(log_ret[:, t, None, None]) * torch.eye(d, dtype=torch.float64) - eta * kt.transpose(1, 2) @ kt
        w = decay @ w - eta * grad
    torch.testing.assert_close(state.weights[0], w, **TOL)


def test_dgd_algorithm_errors():
    with pytest.raises(ValueError, match="needs depth=1, momentum=False"):
        UpdateRule.from_config(MemoryConfig(dim=8, depth=2, algorithm="dgd", momentum=False))
    cfg = MemoryConfig(dim=8, depth=1, algorithm="dgd", momentum=False)
    from titans_memory.core.neural_memory import NeuralMemory

    with pytest.raises(TypeError, match="no chunk-parallel form"):
        NeuralMemory(cfg, backend="chunked")(torch.randn(1, 3, 8))
