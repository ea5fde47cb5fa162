"""The MIRAS design space (arXiv 2504.13173): every preset is exact, and the special cases are
the rules they are named after.

* module level, every preset: chunked == recurrent reference (values, state, gradients), causal,
  batch-independent, streaming in uneven pieces; trains end to end;
* operator level: linear attention, DeltaNet, Gated DeltaNet and TTT-Linear equal their closed
  forms written out token by token here (and flash-linear-attention's reference functions, when
  that package imports);
* the parts: Huber switches branch exactly at delta, lp with p = 2 is l2, Memora stays on the
  scaled simplex, Moneta keeps its q-norm, the elastic-net soft threshold.

Conventions (see core/presets.py): row-vector memory ``y = h @ W`` with ``W`` of shape
``(N, d_in, d_out)``, so the papers' ``M k`` is ``k @ W`` and ``v k^T`` is ``k^T v`` here; the l2
bias is ``||M(k) - v||^2``, so DeltaNet's ``beta`` is ``2 theta``.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from titans_memory.core import PRESETS, MemoryConfig, MemoryState, NeuralMemory, UpdateRule, preset
from titans_memory.core.objectives import DotProductBias, HuberBias, L2Bias, LpBias
from titans_memory.core.ops import BACKENDS, MemoryInputs, MemoryOpState, fresh_op_state
from titans_memory.core.retention import make_retention, soft_threshold
from titans_memory.tasks.recall import operator_setup, outlier_burst, recall_vs_age, write_memory

DT = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}
NAMES = list(PRESETS)
OPS = list(BACKENDS)

# every preset, plus the one retention no preset uses (elastic net), on Titans' other choices
CASES: dict[str, tuple[str, dict]] = {name: (name, {}) for name in NAMES}
CASES["titans+elastic_net"] = ("titans", {"retention": "elastic_net", "retention_strength": 1e-3})


def _memory(case: str, chunk_size: int, seed: int = 0, **extra) -> NeuralMemory:
    """A small float64 NeuralMemory of a preset (dim 8, 2 heads of 4, MLP hidden 8)."""
    name, overrides = CASES[case]
    cfg = preset(name, dim=8, heads=2, expansion=2.0, chunk_size=chunk_size, **{**overrides, **extra})
    torch.manual_seed(seed)
    mem = NeuralMemory(cfg).to(DT)
    with torch.no_grad():  # gates that really vary from token to token (the init keeps them flat)
        if mem.to_gates is not None:
            mem.to_gates.weight.mul_(5.0)
    return mem


def _x(batch: int = 2, T: int = 20, dim: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, T, dim, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _state_tensors(state: MemoryState) -> list[torch.Tensor]:
    return [*state.weights, *state.momentum, *state.anchor]


# ------------------------------------------------------------------------------------------
# Module level, every preset
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 3, 8])
@pytest.mark.parametrize("case", list(CASES))
def test_chunked_equals_recurrent_with_gradients(case: str, chunk_size: int, random_functional, assert_states_close) -> None:
    mem = _memory(case, chunk_size)
    params = dict(mem.named_parameters())
    runs = {}
    for backend in ("chunked", "recurrent"):
        x = _x().requires_grad_()
        y, state = mem(x, backend=backend)
        grads = torch.autograd.grad(
            random_functional([y, *_state_tensors(state)]), [x, *params.values()], allow_unused=True, materialize_grads=True
        )
        runs[backend] = (y, state, grads)
    (y_c, s_c, g_c), (y_r, s_r, g_r) = runs["chunked"], runs["recurrent"]
    assert torch.isfinite(y_r).all(), f"{case}: the reference diverged; the comparison would be empty"
    torch.testing.assert_close(y_c, y_r, **TOL)
    assert_states_close(s_c, s_r, **TOL)
    for name, gc, gr in zip(["input", *params], g_c, g_r, strict=True):
        torch.testing.assert_close(gc, gr, **TOL, msg=lambda m, n=name: f"{case}: grad of {n}: {m}")
    assert any(g.abs().sum() > 0 for g in g_r[1:]), "no parameter got a gradient at all"


@pytest.mark.parametrize("case", list(CASES))
def test_causal_and_batch_independent(case: str) -> None:
    mem = _memory(case, chunk_size=8)
    x = _x(batch=3, T=21)
    with torch.no_grad():
        y, _ = mem(x)
        later = x.clone()
        later[:, 11:] += 3.0 * torch.randn_like(later[:, 11:])  # t0 = 11: inside a chunk
        y_later, _ = mem(later)
        other = x.clone()
        other[1] = torch.randn_like(other[1])  # change stream 1 only
        y_other, _ = mem(other)
    torch.testing.assert_close(y_later[:, :11], y[:, :11], rtol=0, atol=1e-12)
    assert not torch.allclose(y_later[:, 11:], y[:, 11:]), "the perturbation changed nothing"
    torch.testing.assert_close(y_other[[0, 2]], y[[0, 2]], rtol=0, atol=1e-12)
    assert not torch.allclose(y_other[1], y[1])


@pytest.mark.parametrize("backend", ["chunked", "recurrent"])
@pytest.mark.parametrize("case", list(CASES))
def test_streaming_in_uneven_pieces(case: str, backend: str, assert_states_close) -> None:
    mem = _memory(case, chunk_size=8)
    x = _x(T=37)
    with torch.no_grad():
        y_full, s_full = mem(x, backend=backend)
        pieces, state, start = [], None, 0
        for size in (5, 1, 1, 20, 10):
            y, state = mem(x[:, start : start + size], state, backend=backend)
            pieces.append(y)
            start += size
    torch.testing.assert_close(torch.cat(pieces, dim=1), y_full, **TOL)
    assert_states_close(state, s_full, **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_trains(name: str) -> None:
    """A few Adam steps lower a small loss; every parameter gets a finite gradient."""
    torch.manual_seed(0)
    mem = NeuralMemory(preset(name, dim=8, heads=2, expansion=2.0, chunk_size=4))
    x = torch.randn(2, 16, 8)
    target = torch.randn(2, 16, 8)
    opt = torch.optim.Adam(mem.parameters(), lr=1e-2)
    losses = []
    for step in range(4):
        opt.zero_grad()
        loss = F.mse_loss(mem(x)[0], target)
        loss.backward()
        if step == 0:
            for pname, p in mem.named_parameters():
                assert p.grad is not None, f"{name}: {pname} got no gradient"
                assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        losses.append(loss.item())
        opt.step()
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"{name}: loss did not go down: {losses}"


# ------------------------------------------------------------------------------------------
# Presets are the settings their names promise
# ------------------------------------------------------------------------------------------
def test_special_case_presets_have_their_settings() -> None:
    d = preset("deltanet")
    assert (d.depth, d.objective, d.momentum, d.forget, d.decayed_gradient) == (1, "l2", False, False, False)
    assert d.retention == "decay" and d.max_lr <= 0.5  # beta = 2 theta stays in (0, 1]
    g = preset("gated_deltanet")
    assert (g.depth, g.objective, g.momentum, g.forget, g.decayed_gradient) == (1, "l2", False, True, True)
    la = preset("linear_attention")
    assert (la.depth, la.objective, la.momentum, la.forget) == (1, "dot", False, False)
    assert la.lr_gate is False and la.lr_init == 1.0  # theta = 1, constant
    assert NeuralMemory(preset("linear_attention", dim=8, heads=2)).to_gates is None  # no gate at all
    for name, depth in (("ttt_linear", 1), ("ttt_mlp", 2)):
        t = preset(name)
        assert (t.depth, t.objective, t.momentum, t.forget) == (depth, "l2", False, False)
        assert t.chunk_size > 1  # the mini-batch is the rule
    m = preset("moneta")
    assert (m.objective, m.p, m.retention, m.q) == ("lp", 3.0, "lq", 4.0)
    assert preset("yaad").objective == "huber"
    assert preset("memora").retention == "kl"
    tt = preset("titans")
    assert (tt.depth, tt.objective, tt.momentum, tt.forget, tt.retention) == (2, "l2", True, True, "decay")


# ------------------------------------------------------------------------------------------
# Operator level: the closed forms, token by token
# ------------------------------------------------------------------------------------------
N, T, D = 3, 11, 5


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit queries and keys, values, and a random start memory W0 (N, D, D)."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(N, T, D, generator=g, dtype=DT), dim=-1)
    k = F.normalize(torch.randn(N, T, D, generator=g, dtype=DT), dim=-1)
    v = torch.randn(N, T, D, generator=g, dtype=DT)
    w0 = 0.3 * torch.randn(N, D, D, generator=g, dtype=DT)
    return q, k, v, w0


def _outer(k_t: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """``k_t^T e_t`` for rows ``(N, D)``: the papers' ``e k^T`` in the row convention."""
    return k_t.unsqueeze(-1) * e_t.unsqueeze(-2)


def _read(q_t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (q_t.unsqueeze(-2) @ w).squeeze(-2)


def _matrix_op(op, q, k, v, lr, w0, *, chunk_size, objective="l2", log_retention=None,
               decayed_gradient=False, bias_param=None, lr_gate=True):
    """One call of operator ``op`` on a matrix memory (no momentum; forgets iff log_retention)."""
    cfg = MemoryConfig(dim=q.shape[-1], depth=1, momentum=False, forget=log_retention is not None,
                       objective=objective, decayed_gradient=decayed_gradient, chunk_size=chunk_size,
                       max_step_norm=None)  # the closed forms are the rules without the step bound
    inputs = MemoryInputs(q, k, v, lr, log_retention, None, bias_param)
    return BACKENDS[op](inputs, fresh_op_state([w0]), UpdateRule.from_config(cfg))


@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize("op", OPS)
def test_linear_attention_closed_form(op: str, chunk_size: int) -> None:
    """``M_t = M_{t-1} + v_t k_t^T`` (row convention: ``W += k^T v``); theta = 1, dot-product bias.
    The error never looks at the memory, so any chunk size gives the same rule."""
    q, k, v, w0 = _qkv()
    lr = torch.ones(N, T, dtype=DT)
    y, state = _matrix_op(op, q, k, v, lr, w0, chunk_size=chunk_size, objective="dot")
    w, ref = w0.clone(), []
    for t in range(T):
        w = w + _outer(k[:, t], v[:, t])
        ref.append(_read(q[:, t], w))
    torch.testing.assert_close(y, torch.stack(ref, 1), **TOL)
    torch.testing.assert_close(state.weights[0], w, **TOL)


@pytest.mark.parametrize("op", OPS)
def test_deltanet_closed_form(op: str) -> None:
    """``M_t = M_{t-1} - beta_t (M_{t-1} k_t - v_t) k_t^T`` with ``beta = 2 theta``."""
    q, k, v, w0 = _qkv(1)
    theta = 0.5 * torch.rand(N, T, generator=torch.Generator().manual_seed(2), dtype=DT)
    y, state = _matrix_op(op, q, k, v, theta, w0, chunk_size=1)
    w, ref = w0.clone(), []
    for t in range(T):
        beta = 2 * theta[:, t, None, None]
        w = w - beta * _outer(k[:, t], _read(k[:, t], w) - v[:, t])
        ref.append(_read(q[:, t], w))
    torch.testing.assert_close(y, torch.stack(ref, 1), **TOL)
    torch.testing.assert_close(state.weights[0], w, **TOL)


@pytest.mark.parametrize("op", OPS)
def test_gated_deltanet_closed_form(op: str) -> None:
    """``M_t = a_t M_{t-1} - beta_t (a_t M_{t-1} k_t - v_t) k_t^T``, ``a_t = exp(log_retention_t)``."""
    q, k, v, w0 = _qkv(3)
    g = torch.Generator().manual_seed(4)
    theta = 0.5 * torch.rand(N, T, generator=g, dtype=DT)
    log_a = torch.log(0.5 + 0.5 * torch.rand(N, T, generator=g, dtype=DT))  # a in (0.5, 1)
    y, state = _matrix_op(op, q, k, v, theta, w0, chunk_size=1, log_retention=log_a, decayed_gradient=True)
    w, ref = w0.clone(), []
    for t in range(T):
        a, beta = log_a[:, t, None, None].exp(), 2 * theta[:, t, None, None]
        w = a * w - beta * _outer(k[:, t], _read(k[:, t], a * w) - v[:, t])
        ref.append(_read(q[:, t], w))
    torch.testing.assert_close(y, torch.stack(ref, 1), **TOL)
    torch.testing.assert_close(state.weights[0], w, **TOL)


@pytest.mark.parametrize("op", OPS)
def test_ttt_linear_minibatch_closed_form(op: str) -> None:
    """TTT-Linear with mini-batch b: every gradient in a batch at the batch-start weights W_b,
    ``W_t = W_{t-1} - beta_t k_t^T (k_t W_b - v_t)``, each token read with its own W_t."""
    b = 4  # T = 11: two full batches and a partial one
    q, k, v, w0 = _qkv(5)
    theta = 0.1 * torch.rand(N, T, generator=torch.Generator().manual_seed(6), dtype=DT)
    y, state = _matrix_op(op, q, k, v, theta, w0, chunk_size=b)
    w, ref = w0.clone(), []
    for t in range(T):
        if t % b == 0:
            w_batch = w.clone()
        w = w - 2 * theta[:, t, None, None] * _outer(k[:, t], _read(k[:, t], w_batch) - v[:, t])
        ref.append(_read(q[:, t], w))
    torch.testing.assert_close(y, torch.stack(ref, 1), **TOL)
    torch.testing.assert_close(state.weights[0], w, **TOL)
    torch.testing.assert_close(state.anchor[0], w_batch, **TOL)  # the partial batch's start
    assert state.offset == T % b


# --- flash-linear-attention's pure-PyTorch references (optional) ----------------------------
def _import_fla(module: str):
    """fla's naive reference module, or skip (absent, or its import fails on this machine)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.skip("flash-linear-attention (fla-core) is not installed")
    except Exception as err:  # e.g. a Triton set-up failure on a CPU-only machine
        pytest.skip(f"{module} does not import here: {err!r}")


def _fla_inputs(seed: int = 8):
    """(B, H, T, D) layout for fla, plus our (N = B H, T, D) views."""
    B, H = 2, 2
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, H, T, D, generator=g, dtype=DT), dim=-1)
    k = F.normalize(torch.randn(B, H, T, D, generator=g, dtype=DT), dim=-1)
    v = torch.randn(B, H, T, D, generator=g, dtype=DT)
    beta = torch.rand(B, H, T, generator=g, dtype=DT)  # DeltaNet's beta in (0, 1)
    log_a = torch.log(0.5 + 0.5 * torch.rand(B, H, T, generator=g, dtype=DT))
    s0 = 0.3 * torch.randn(B, H, D, D, generator=g, dtype=DT)
    return q, k, v, beta, log_a, s0


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *t.shape[2:])


FLA_TOL = {"rtol": 1e-5, "atol": 1e-5}  # fla's references compute in float32


@pytest.mark.parametrize("op", OPS)
def test_deltanet_matches_fla_reference(op: str) -> None:
    naive = _import_fla("fla.ops.delta_rule.naive")
    q, k, v, beta, _, s0 = _fla_inputs()
    # fla scales queries by D^-0.5 inside: undo it so both read M_t(q_t)
    o_ref, s_ref = naive.delta_rule_recurrence(q * D**0.5, k, v, beta, initial_state=s0.clone())
    y, state = _matrix_op(op, _flat(q), _flat(k), _flat(v), _flat(beta) / 2, _flat(s0), chunk_size=1)
    torch.testing.assert_close(y, _flat(o_ref).to(DT), **FLA_TOL)
    torch.testing.assert_close(state.weights[0], _flat(s_ref).to(DT), **FLA_TOL)


@pytest.mark.parametrize("reference", ["naive_recurrent_gated_delta_rule", "naive_chunk_gated_delta_rule"])
@pytest.mark.parametrize("op", OPS)
def test_gated_deltanet_matches_fla_reference(op: str, reference: str) -> None:
    naive = _import_fla("fla.ops.gated_delta_rule.naive")
    q, k, v, beta, log_a, s0 = _fla_inputs(9)
    bthd = lambda t: t.transpose(1, 2)  # noqa: E731  fla's (B, T, H, ...) layout
    fn = getattr(naive, reference)
    o_ref, s_ref = fn(bthd(q), bthd(k), bthd(v), beta=bthd(beta), g=bthd(log_a), scale=1.0,
                      initial_state=s0.clone(), output_final_state=True)
    y, state = _matrix_op(op, _flat(q), _flat(k), _flat(v), _flat(beta) / 2, _flat(s0), chunk_size=1,
                          log_retention=_flat(log_a), decayed_gradient=True)
    torch.testing.assert_close(y, _flat(bthd(o_ref)).to(DT), **FLA_TOL)
    torch.testing.assert_close(state.weights[0], _flat(s_ref).to(DT), **FLA_TOL)


# ------------------------------------------------------------------------------------------
# The parts: attentional biases and retentions
# ------------------------------------------------------------------------------------------
def test_huber_switches_branch_exactly_at_delta() -> None:
    bias, delta, d = HuberBias(), 0.7, 6
    direction = F.normalize(torch.tensor([[0.3, -1.2, 0.5, 2.0, -0.1, 0.8]], dtype=DT), dim=-1)
    target = torch.randn(1, d, dtype=DT)
    param = torch.full((1, 1), delta, dtype=DT)
    for scale, inside in ((1 - 1e-9, True), (1 + 1e-9, False)):
        r = direction * delta * scale
        err = bias.error(target + r, target, param)
        expect = 2 * r if inside else delta * torch.sign(r)
        torch.testing.assert_close(err, expect, rtol=1e-12, atol=1e-12)
    # exactly at delta (a norm that is exact in floating point): still the l2 branch (<=)
    r = torch.zeros(1, d, dtype=DT)
    r[0, 2] = -delta
    torch.testing.assert_close(bias.error(target + r, target, param), 2 * r, rtol=0, atol=0)


@pytest.mark.parametrize("op", OPS)
def test_huber_branch_in_the_memory_update(op: str) -> None:
    """One write into a zero matrix memory: ``W_1 = -theta k^T e`` with the branch's error e."""
    delta, theta = 0.7, 0.1
    k = F.normalize(torch.tensor([[[1.0, 2.0, -1.0, 0.5]]], dtype=DT), dim=-1)
    direction = F.normalize(torch.tensor([[[0.2, -1.0, 0.4, 0.9]]], dtype=DT), dim=-1)
    for scale, inside in ((1 - 1e-9, True), (1 + 1e-9, False)):
        v = direction * delta * scale  # M_0 = 0, so the residual is r = -v
        _, state = _matrix_op(op, k, k, v, torch.full((1, 1), theta, dtype=DT), torch.zeros(1, 4, 4, dtype=DT),
                              chunk_size=1, objective="huber", bias_param=torch.full((1, 1), delta, dtype=DT))
        e = 2 * (-v[0]) if inside else delta * torch.sign(-v[0])
        torch.testing.assert_close(state.weights[0], -theta * _outer(k[0], e), rtol=1e-12, atol=1e-14)


def test_bias_errors_are_the_derivatives_of_their_losses() -> None:
    g = torch.Generator().manual_seed(11)
    pred = torch.randn(3, 7, 5, generator=g, dtype=DT).requires_grad_()
    target = torch.randn(3, 7, 5, generator=g, dtype=DT)
    # thresholds far from every residual norm, some below and some above, so both branches run
    param = torch.where(torch.rand(3, 7, 1, generator=g, dtype=DT) < 0.5, 0.05, 50.0).to(DT)
    for bias in (L2Bias(), LpBias(p=3.0), LpBias(p=1.5), HuberBias(), DotProductBias()):
        (grad,) = torch.autograd.grad(bias.loss(pred, target, param).sum(), pred)
        torch.testing.assert_close(bias.error(pred, target, param), grad, **TOL, msg=bias.name)


def test_lp_with_p_2_is_l2_exactly() -> None:
    g = torch.Generator().manual_seed(12)
    pred, target = torch.randn(2, 9, 4, generator=g, dtype=DT), torch.randn(2, 9, 4, generator=g, dtype=DT)
    assert torch.equal(LpBias(p=2.0).error(pred, target), L2Bias().error(pred, target))
    # and the whole module: an lp(p=2) memory is bit for bit the l2 one with the same weights
    lp = _memory("titans", 4, objective="lp", p=2.0)
    l2 = _memory("titans", 4)
    l2.load_state_dict(lp.state_dict())
    x = _x()
    with torch.no_grad():
        for backend in ("chunked", "recurrent"):
            assert torch.equal(lp(x, backend=backend)[0], l2(x, backend=backend)[0]), backend


def _stream_chunk_ends(mem: NeuralMemory, x: torch.Tensor, backend: str) -> list[MemoryState]:
    """States at every chunk end, feeding one chunk per call (plus the fresh state)."""
    c = mem.config.chunk_size
    states, state = [mem.init_state(x.shape[0], dtype=x.dtype)], None
    with torch.no_grad():
        for start in range(0, x.shape[1], c):
            _, state = mem(x[:, start : start + c], state, backend=backend)
            states.append(state)
    return states


@pytest.mark.parametrize("backend", ["chunked", "recurrent"])
@pytest.mark.parametrize("lr", [None, 0.9])
def test_memora_stays_on_the_scaled_simplex(backend: str, lr: float | None) -> None:
    # lr = 0.9: steps large enough to push entries below zero, so the clamp inside the map works too
    extra = {} if lr is None else {"max_lr": 1.0, "lr_init": lr}
    mem = _memory("memora", 4, **extra)
    for i, state in enumerate(_stream_chunk_ends(mem, 3 * _x(T=20), backend)):
        for layer, w in enumerate(state.weights):
            c = float(w.shape[-1])  # the simplex scale c = d_out
            assert (w >= 0).all(), f"chunk end {i}, layer {layer}: negative weights"
            sums = w.sum((-2, -1))
            torch.testing.assert_close(sums, torch.full_like(sums, c), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["chunked", "recurrent"])
def test_moneta_keeps_its_q_norm(backend: str) -> None:
    mem = _memory("moneta", 4)
    q = mem.config.q
    for i, state in enumerate(_stream_chunk_ends(mem, 3 * _x(T=20), backend)):
        for layer, w in enumerate(state.weights):
            norm = w.abs().pow(q).sum((-2, -1)).pow(1 / q)  # (batch, heads)
            radius = mem.retention_constants[layer].to(DT).expand_as(norm)
            torch.testing.assert_close(norm, radius, rtol=1e-12, atol=0, msg=f"chunk end {i}, layer {layer}")
    # and the radius is not a trivial fixed point: an unconstrained run drifts away from it
    free = _memory("moneta", 4, retention="decay")
    w_free = _stream_chunk_ends(free, 3 * _x(T=20), backend)[-1].weights[0]
    assert not torch.allclose(w_free.abs().pow(q).sum((-2, -1)).pow(1 / q),
                              mem.retention_constants[0].to(DT).expand(2, -1), rtol=1e-6)


def test_elastic_net_soft_threshold() -> None:
    w = torch.tensor([-2.0, -0.5, -0.3, -0.1, 0.0, 0.05, 0.3, 0.31, 1.5], dtype=DT)
    expect = torch.tensor([-1.7, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 1.2], dtype=DT)
    torch.testing.assert_close(soft_threshold(w, 0.3), expect, rtol=0, atol=1e-15)
    # it is the proximal map of lam ||.||_1: optimality of 0.5 ||x - w||^2 + lam ||x||_1
    lam = 0.4
    w = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(13), dtype=DT)
    x = soft_threshold(w, lam)
    nz = x != 0
    torch.testing.assert_close((w - x)[nz], lam * torch.sign(x[nz]), rtol=0, atol=1e-15)
    assert (w[~nz].abs() <= lam).all()
    # and the config's retention is that map with lambda = retention_strength
    cfg = preset("titans", retention="elastic_net", retention_strength=lam)
    (out,) = make_retention(cfg).apply([w], None)
    assert torch.equal(out, x)


# ------------------------------------------------------------------------------------------
# The comparison tasks (titans_memory.tasks.recall) built on these operators
# ------------------------------------------------------------------------------------------
def test_recall_tasks_are_deterministic_and_sane() -> None:
    a = recall_vs_age("deltanet", pairs=12, head_dim=8, trials=4, seed=3)
    b = recall_vs_age("deltanet", pairs=12, head_dim=8, trials=4, seed=3)
    assert torch.equal(torch.from_numpy(a.cosine), torch.from_numpy(b.cosine))
    assert a.cosine.shape == (12,) and a.cosine[0] > 0.5  # DeltaNet recalls its last pair
    burst = outlier_burst("yaad", before=6, burst=2, after=2, head_dim=8, trials=4)
    assert all(math.isfinite(v) for v in (burst.before, burst.after_clean, burst.after_burst))
    # writing never mutates the state it starts from (the burst task reuses one state twice)
    setup = operator_setup("titans", head_dim=8)
    state: MemoryOpState = setup.fresh_state(2)
    before = [t.clone() for t in (*state.weights, *state.momentum)]
    write_memory(setup, state, F.normalize(torch.randn(2, 5, 8, dtype=DT), dim=-1), torch.randn(2, 5, 8, dtype=DT))
    assert all(torch.equal(x, y) for x, y in zip(before, (*state.weights, *state.momentum), strict=True))


def test_lp_tanh_sign_is_the_papers_smooth_form() -> None:
    """``sharpness=a``: p tanh(a r) (r^2 + eps)^{(p-1)/2}, i.e. sign ~ tanh, |r| ~ sqrt(r^2 + eps)."""
    r = torch.tensor([-2.0, -0.3, -1e-4, 0.0, 1e-4, 0.3, 2.0], dtype=DT)
    bias = LpBias(p=3.0, sharpness=10.0)
    expected = 3.0 * torch.tanh(10.0 * r) * (r * r + 1e-6).pow(1.0)
    torch.testing.assert_close(bias.error(r, torch.zeros_like(r)), expected, rtol=0, atol=0)
    # far from 0 the tanh is saturated: the same as the exact p |r|^{p-1} sign(r)
    big = r.abs() > 1.0
    torch.testing.assert_close(
        bias.error(r, torch.zeros_like(r))[big], (3.0 * r.abs() ** 2 * torch.sign(r))[big], rtol=1e-5, atol=0
    )
    # chosen through the config, and the chunked path equals the reference with it
    mem = _memory("moneta", 4, lp_sign_sharpness=10.0)
    assert mem.rule.bias == LpBias(p=3.0, sharpness=10.0)
    x = _x()
    y_c, s_c = mem(x)
    y_r, s_r = mem(x, backend="recurrent")
    torch.testing.assert_close(y_c, y_r, **TOL)
    with pytest.raises(ValueError, match=r"LpBias.sharpness must be a finite number > 0 or None, got 0.0"):
        LpBias(sharpness=0.0)
